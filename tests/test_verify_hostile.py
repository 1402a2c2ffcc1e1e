"""The hostile corpus (axis.testing.hostile_corpus) through both verifiers: each item refused for its exact reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from axis.reasons import Reason, Refusal
from axis.testing import TestPKI, hostile_corpus, make_pki
from axis.verify import Verified
from axis.verify_reference import ReferenceVerifier

A, B = "000.00.00.G22", "000.00.00.H41"
MAX = 200_000

#: The reasons verification can give (section 2 minus the directory/auth/schema ones).
VERIFY_REASONS = set(Reason) - {Reason.SCHEMA_INVALID, Reason.UNKNOWN_SENDER, Reason.UNKNOWN_RECIPIENT,
                                Reason.UNAUTHORIZED, Reason.FORBIDDEN}


@pytest.fixture(scope="module", params=["rsa", "ec"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[TestPKI, list[tuple[str, bytes, Reason]]]:
    kit = make_pki(tmp_path_factory.mktemp("pki"), [A, B], algorithm=request.param)
    return kit, hostile_corpus(kit, max_bytes=MAX)


def _outcomes(verify: Callable[[bytes], Verified], items: list[tuple[str, bytes, Reason]]) -> dict[str, str]:
    out = {}
    for name, data, _ in items:
        try:
            verify(data)
            out[name] = "ACCEPTED"
        except Refusal as refusal:
            out[name] = refusal.reason.value
    return out


def test_corpus_covers_every_verification_reason(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    _, items = corpus
    assert {reason for _, _, reason in items} == VERIFY_REASONS
    assert len({name for name, _, _ in items}) == len(items)


def test_fast_path_refuses_each_item_for_its_reason(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    kit, items = corpus
    got = _outcomes(kit.verifier(max_bytes=MAX).verify, items)
    assert got == {name: reason.value for name, _, reason in items}


def test_reference_refuses_each_item_for_its_reason(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    kit, items = corpus
    got = _outcomes(ReferenceVerifier(kit.policy(max_bytes=MAX)).verify, items)
    assert got == {name: reason.value for name, _, reason in items}


def test_the_untampered_original_is_accepted(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    """The corpus is built from a valid envelope: guard against tests that pass because everything fails."""
    kit, _ = corpus
    data = kit.envelope(A, [B], size=4000)
    assert kit.verifier(max_bytes=MAX).verify(data).signer == A
    assert ReferenceVerifier(kit.policy(max_bytes=MAX)).verify(data).signer == A


def test_refusal_details_are_human_readable(corpus: tuple[TestPKI, list[tuple[str, bytes, Reason]]]) -> None:
    kit, items = corpus
    verifier = kit.verifier(max_bytes=MAX)
    for _, data, _ in items:
        with pytest.raises(Refusal) as exc:
            verifier.verify(data)
        assert exc.value.detail and "Traceback" not in exc.value.detail
