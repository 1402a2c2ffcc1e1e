"""Router batching under load: a batch waits (at most ``linger``) for more messages only when they come fast."""

from __future__ import annotations

import asyncio
import time

import pytest

from axis.router.service import BatchInbox, Rate


async def test_fill_returns_once_the_batch_is_full() -> None:
    q: BatchInbox[int] = BatchInbox()

    async def feed() -> None:
        for i in range(10):
            await asyncio.sleep(0.002)
            await q.put(i)  # what aio-pika's consumer callback does

    feeder = asyncio.create_task(feed())
    started = time.monotonic()
    await q.fill(10, 5.0)
    assert q.qsize() == 10 and time.monotonic() - started < 1.0  # woken by the 10th, long before the 5 s
    await feeder


async def test_fill_gives_up_at_the_deadline() -> None:
    q: BatchInbox[int] = BatchInbox()
    q.put_nowait(1)
    started = time.monotonic()
    await q.fill(10, 0.05)
    assert 0.04 <= time.monotonic() - started < 0.5 and q.qsize() == 1


async def test_fill_sleeps_until_woken() -> None:
    # no polling: while it waits nothing runs on the loop unless an arrival fills the batch
    q: BatchInbox[int] = BatchInbox()
    waiter = asyncio.create_task(q.fill(3, 5.0))
    await asyncio.sleep(0.01)
    q.put_nowait(1)
    q.put_nowait(2)
    await asyncio.sleep(0.01)
    assert not waiter.done()  # two of three
    q.put_nowait(3)
    await asyncio.wait_for(waiter, 0.5)
    assert q.qsize() == 3
    await q.fill(2, 5.0)  # already full enough: returns at once
    q.put_nowait(4)  # nobody waits: no wake-up is left set for the next fill
    assert [q.get_nowait() for _ in range(4)] == [1, 2, 3, 4]
    started = time.monotonic()
    await q.fill(1, 0.05)
    assert time.monotonic() - started >= 0.04


def test_rate_follows_what_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    rate = Rate()
    for _ in range(10):  # 40 messages/s for 2.5 s
        now[0] += 0.25
        rate.taken(10)
    assert 35 < rate.per_second <= 40
    for _ in range(10):  # then 400/s
        now[0] += 0.25
        rate.taken(100)
    assert rate.per_second > 390


def test_a_router_with_time_to_spare_does_not_wait() -> None:
    """The wait grows with how busy the router is: none when messages come slowly or the router is idle, all of
    ``linger`` from BUSY_FOR_FULL_LINGER on (latency at moderate load, throughput under load)."""
    from axis.router.service import BUSY_FOR_FULL_LINGER, LINGER_ABOVE_PER_SECOND, linger_for

    fast = LINGER_ABOVE_PER_SECOND * 4
    assert linger_for(0.15, LINGER_ABOVE_PER_SECOND / 2, 1.0) == 0.0  # slow arrivals: never
    assert linger_for(0.0, fast, 1.0) == 0.0  # lingering off
    assert linger_for(0.15, fast, 0.0) == 0.0  # an idle router handles what it has at once
    assert linger_for(0.15, fast, BUSY_FOR_FULL_LINGER / 2) == pytest.approx(0.075)
    assert linger_for(0.15, fast, BUSY_FOR_FULL_LINGER) == linger_for(0.15, fast, 1.0) == 0.15


def test_busy_follows_the_time_spent_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    from axis.router.service import Busy

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    busy = Busy()
    for _ in range(12):  # 0.05 s of work in every 0.25 s: 20 %
        now[0] += 0.25
        busy.add(0.05)
    assert 0.19 < busy.fraction <= 0.2
    for _ in range(12):  # then saturated
        now[0] += 0.25
        busy.add(0.25)
    assert busy.fraction > 0.99
