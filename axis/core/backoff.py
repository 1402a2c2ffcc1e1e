"""Waiting for something that is not there yet — a broker still starting, a vhost being created — with back-off
and a deadline (pure: no clock, no sleeping; the caller measures time and sleeps).

:class:`Backoff` is the policy (frozen, safe defaults): the first retry after ``first`` seconds, each next one
``factor`` times longer, never more than ``cap`` seconds apart, and nothing after ``deadline`` seconds in total.
:meth:`Backoff.next_delay` answers how long to sleep before the next attempt, given how long the caller has
waited so far — or None when the deadline has passed (the last sleep is cut so that the final attempt happens
at the deadline, not after it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """A retry schedule: ``first`` s, then ×``factor`` up to ``cap`` s, for at most ``deadline`` s in total."""

    first: float = 0.25
    factor: float = 2.0
    cap: float = 5.0
    deadline: float = 300.0

    def __post_init__(self) -> None:
        if self.first <= 0 or self.factor < 1 or self.cap < self.first or self.deadline < 0:
            raise ValueError("backoff needs first > 0, factor >= 1, cap >= first and deadline >= 0")

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1 for the first), without the deadline."""
        return min(self.cap, self.first * self.factor ** max(0, attempt - 1))

    def next_delay(self, attempt: int, waited: float) -> float | None:
        """How long to sleep after failed attempt ``attempt`` when ``waited`` seconds have passed since the first
        one; None when the deadline is reached (give up)."""
        left = self.deadline - waited
        if left <= 0:
            return None
        return min(self.delay(attempt), left)
