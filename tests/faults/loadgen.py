"""Confirmed publisher and acking consumer that survive broker faults, with an exact tally of what happened.

The publisher retries a message until the broker confirms it (at-least-once: a message whose confirm was lost
with the connection is published again). The consumer acks after recording. The tally separates duplicates
(the same message id delivered again — what at-least-once allows) from losses (confirmed, never delivered —
what must never happen).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection


async def robust(url: str, name: str) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(url, reconnect_interval=0.5, client_properties={"connection_name": name})


@dataclass
class Tally:
    confirmed: set[str] = field(default_factory=set)
    publish_retries: int = 0
    received: Counter[str] = field(default_factory=Counter)
    ack_failures: int = 0

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.received.values() if c > 1)

    @property
    def lost(self) -> set[str]:
        return self.confirmed - set(self.received)

    def summary(self) -> dict[str, int]:
        return {"confirmed": len(self.confirmed), "unique_received": len(self.received),
                "duplicates": self.duplicates, "lost": len(self.lost), "publish_retries": self.publish_retries,
                "ack_failures": self.ack_failures}


async def publish_until_confirmed(connection: AbstractRobustConnection, queue: str, ids: list[str], tally: Tally,
                                  *, window: int = 64,
                                  on_progress: Callable[[int], Awaitable[None]] | None = None) -> None:
    """Publish every id (persistent, mandatory, confirmed) to the default exchange → ``queue``."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)

    async def one(mid: str) -> None:
        nonlocal channel
        while True:
            try:
                msg = aio_pika.Message(mid.encode(), message_id=mid, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await asyncio.wait_for(channel.default_exchange.publish(msg, routing_key=queue, mandatory=True), 20)
                tally.confirmed.add(mid)
                return
            except Exception:
                tally.publish_retries += 1
                await asyncio.sleep(0.5)
                if channel.is_closed:
                    with contextlib.suppress(Exception):
                        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)

    for start in range(0, len(ids), window):
        await asyncio.gather(*(one(m) for m in ids[start:start + window]))
        if on_progress is not None:
            await on_progress(start + window)


async def consume(connection: AbstractRobustConnection, queue: str, tally: Tally, *, prefetch: int = 100) -> None:
    """Consume ``queue`` forever (robust: re-subscribes after reconnects), recording then acking."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    # declare_queue(passive=True) registers the queue with the robust channel, so its consumer is restored after
    # a reconnect; get_queue(ensure=False) does NOT (the consumer silently stops after the first reconnect)
    q = await channel.declare_queue(queue, passive=True)

    async def on_message(message: AbstractIncomingMessage) -> None:
        tally.received[message.message_id or ""] += 1
        try:
            await message.ack()
        except Exception:
            tally.ack_failures += 1

    await q.consume(on_message)


async def wait_until(check: Callable[[], bool], timeout: float, poll: float = 0.2) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(poll)
    return True
