"""bench/e2e.py's breakdown of the end-to-end latency by stage, from the evidence log's timestamps (pure)."""

from __future__ import annotations

from bench.e2e import _stage_note, stages


def test_the_p50_and_the_slowest_one_percent_by_stage() -> None:
    starts = {str(i): 0.0 for i in range(200)}
    slow = {"198", "199"}  # the slowest 1 %: held at the router
    last = {d: 0.5 if d in slow else 0.02 for d in starts}
    log = {d: {"submitted": 0.002, "routed": 0.4 if d in slow else 0.01} for d in starts}
    r = stages(starts, last, log)
    assert (r["door_p50_ms"], r["to_router_p50_ms"], r["to_inbox_p50_ms"]) == (2.0, 8.0, 10.0)
    assert (r["tail_door_ms"], r["tail_to_router_ms"], r["tail_to_inbox_ms"]) == (2.0, 398.0, 100.0)
    assert _stage_note(r, "p99") == ("the slowest 1 % by stage: door 2, to the router's decision 398, "
                                     "to the last inbox commit 100 ms")
    assert stages(starts, last, {}) == {}  # no log (another store): no breakdown
