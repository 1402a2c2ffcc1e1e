"""Router batching under load: a batch waits (at most ``linger``) for more messages only when they come fast."""

from __future__ import annotations

import asyncio
import time

import pytest

from axis.router.service import Rate, fill


async def test_fill_returns_once_the_batch_is_full() -> None:
    q: asyncio.Queue[int] = asyncio.Queue()

    async def feed() -> None:
        for i in range(10):
            await asyncio.sleep(0.002)
            q.put_nowait(i)

    feeder = asyncio.create_task(feed())
    started = time.monotonic()
    await fill(q, 10, 5.0)
    assert q.qsize() == 10 and time.monotonic() - started < 1.0  # full long before the 5 s
    await feeder


async def test_fill_gives_up_at_the_deadline() -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    q.put_nowait(1)
    started = time.monotonic()
    await fill(q, 10, 0.05)
    assert 0.04 <= time.monotonic() - started < 0.5 and q.qsize() == 1


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
