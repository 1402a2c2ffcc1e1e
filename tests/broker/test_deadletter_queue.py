"""The rotation of axis.dead (axis.broker.deadletters) against the real RabbitMQ: a scan keeps every message once
and in order (its acks are settled before its channel closes: a close right after them returned acked messages
as duplicates), and a scan that fails half-way loses nothing."""

from __future__ import annotations

import asyncio
from collections import Counter

import aio_pika
import pytest

from axis.broker.deadletters import DeadLetterQueue, DeadMessage, Keep, Remove
from axis.broker.transport import declare_topology
from axis.core.wire import EX_DLX

pytestmark = pytest.mark.rabbitmq


async def fill(url: str, n: int) -> None:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        await declare_topology(channel, [])
        dlx = await channel.get_exchange(EX_DLX)
        await asyncio.gather(*(dlx.publish(aio_pika.Message(b"a" * 3000 + b"%d" % i, message_id=f"m{i}"), "")
                               for i in range(n)))
    finally:
        await conn.close()


async def test_a_scan_keeps_every_message_once_and_in_order(vhost_url: str) -> None:
    await fill(vhost_url, 1500)
    queue = DeadLetterQueue(vhost_url)
    try:
        orders: list[list[str | None]] = []
        for _ in range(3):
            seen: list[str | None] = []

            def keep(m: DeadMessage, seen: list[str | None] = seen) -> Keep:
                seen.append(m.message_id)
                # never a redelivery: nothing was returned to the queue (quorum queues count returns)
                assert "x-delivery-count" not in m.headers
                return Keep(m.headers)

            assert await queue.scan(keep) == 1500
            assert await queue.depth() == 1500
            assert sorted(seen, key=lambda s: int(str(s)[1:])) == [f"m{i}" for i in range(1500)]
            assert max(Counter(seen).values()) == 1
            orders.append(seen)
        assert orders[0] == orders[1] == orders[2]  # a rotation keeps the queue's order
    finally:
        await queue.close()


async def test_a_scan_that_fails_half_way_loses_nothing(vhost_url: str) -> None:
    await fill(vhost_url, 300)
    queue = DeadLetterQueue(vhost_url)
    try:
        calls = 0

        def broken(m: DeadMessage) -> Keep:
            nonlocal calls
            calls += 1
            if calls == 250:  # in the second batch: the first 200 were kept, these go back with the channel
                raise RuntimeError("a bug half-way")
            return Keep(m.headers)

        with pytest.raises(RuntimeError):
            await queue.scan(broken)
        ids: Counter[str | None] = Counter()

        def dedupe(m: DeadMessage) -> Keep | Remove:
            ids[m.message_id] += 1
            return Remove() if ids[m.message_id] > 1 else Keep(m.headers)

        await queue.scan(dedupe)
        assert set(ids) == {f"m{i}" for i in range(300)}  # every one still there
        assert await queue.depth() == 300  # and once each, after the duplicates' removal
    finally:
        await queue.close()
