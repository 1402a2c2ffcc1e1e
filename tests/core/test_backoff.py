"""The retry schedule of first broker connections (axis.core.backoff)."""

from __future__ import annotations

import pytest

from axis.core.backoff import Backoff


def test_delays_grow_by_the_factor_up_to_the_cap() -> None:
    b = Backoff(first=0.25, factor=2, cap=5, deadline=1000)
    assert [b.delay(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_the_last_sleep_ends_at_the_deadline_and_then_it_gives_up() -> None:
    b = Backoff(first=1, factor=2, cap=10, deadline=10)
    assert b.next_delay(1, 0.0) == 1
    assert b.next_delay(4, 8.5) == pytest.approx(1.5)  # 8 s wanted, 1.5 s left: the final attempt at the deadline
    assert b.next_delay(5, 10.0) is None
    assert b.next_delay(1, 11.0) is None


def test_a_zero_deadline_tries_once() -> None:
    assert Backoff(deadline=0).next_delay(1, 0.0) is None


@pytest.mark.parametrize("kw", [{"first": 0}, {"factor": 0.5}, {"cap": 0.1, "first": 1}, {"deadline": -1}])
def test_nonsense_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kw)
