"""Group publishing: concurrent senders share flushes, every sender waits for its own flush, failures reach all."""

from __future__ import annotations

import asyncio

import pytest

from axis.broker.transport import Coalescer


async def test_senders_during_a_flush_share_the_next_one() -> None:
    flushed: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: list[int]) -> None:
        flushed.append(items)
        if len(flushed) == 1:
            await gate.wait()  # the first message awaits its confirm

    c: Coalescer[int] = Coalescer(flush, inflight=1)
    first = asyncio.create_task(c.send([0]))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(c.send([i, i + 100])) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    assert not first.done() and not any(t.done() for t in later)  # nobody returns before its flush
    gate.set()
    await asyncio.gather(first, *later)
    assert flushed == [[0], [1, 101, 2, 102, 3, 103, 4, 104, 5, 105]]
    assert c.messages == 2


async def test_max_items_splits_and_nothing_is_left_behind() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        await asyncio.sleep(0.001)
        flushed.append(items)

    c: Coalescer[int] = Coalescer(flush, max_items=4, inflight=2)
    await asyncio.gather(*(c.send([i, i]) for i in range(10)))
    assert sorted(x for f in flushed for x in f) == sorted([i for i in range(10)] * 2)
    assert all(len(f) <= 4 for f in flushed)


async def test_a_failed_flush_fails_its_senders_only() -> None:
    calls = 0

    async def flush(items: list[int]) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("broker gone")

    c: Coalescer[int] = Coalescer(flush, inflight=1)
    a = asyncio.create_task(c.send([1]))
    await asyncio.sleep(0.001)
    b = asyncio.create_task(c.send([2]))
    with pytest.raises(ConnectionError):
        await a
    await b  # flushed in the next message, which succeeded
    assert calls == 2


async def test_linger_lets_the_first_sender_wait_for_company() -> None:
    """With ``linger``, the first items of a quiet moment wait that long, and what comes meanwhile shares their
    message; without it, each send of a quiet moment is its own message."""
    for linger, expected in ((0.05, [[0, 1, 2]]), (0.0, [[0], [1], [2]])):
        flushed: list[list[int]] = []

        async def flush(items: list[int], flushed: list[list[int]] = flushed) -> None:
            flushed.append(items)

        c: Coalescer[int] = Coalescer(flush, inflight=1, linger=linger)
        sends = []
        for i in range(3):
            sends.append(asyncio.create_task(c.send([i])))
            await asyncio.sleep(0.01)  # each a loop turn (and 10 ms) after the previous
        await asyncio.gather(*sends)
        assert flushed == expected, linger


async def test_max_bytes_bounds_a_message_and_a_larger_send_goes_alone() -> None:
    flushed: list[list[bytes]] = []

    async def flush(items: list[bytes]) -> None:
        flushed.append(items)

    c: Coalescer[bytes] = Coalescer(flush, inflight=1, size=len, max_bytes=100)
    await asyncio.gather(*(c.send([b"x" * n]) for n in (40, 40, 40, 250, 10)))
    assert [[len(i) for i in f] for f in flushed] == [[40, 40], [40], [250], [10]]
