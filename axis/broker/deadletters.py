"""The broker side of dead letters: reading the queue ``axis.dead`` and keeping or removing each message in it.

A queue has no random access and no browsing that leaves it untouched: a message read and returned unacked
counts as a redelivery (quorum queues count deliveries; RabbitMQ 4 drops a message past its default limit of 20
returns), and one held unacked for long trips the consumer timeout. So :meth:`DeadLetterQueue.scan` ROTATES the
queue: it takes the messages that were in it when the scan began, in batches (a consumer whose prefetch is the
batch's size, cancelled before the batch is acked: never one message more; ``basic.get`` cost a round trip per
message), asks
``decide`` what to do with each, and

- :class:`Keep`: publishes the message again into ``axis.dead`` (through ``axis.dlx``, confirmed; the same body,
  message id and content type, the headers ``decide`` gives) and then acks the copy it took — the queue keeps
  every dead letter, in the same order, and nothing is ever only in this process's memory;
- :class:`Remove`: publishes what ``decide`` gives (a resend, a log event; confirmed) and then acks.

A crash between the publish and the ack leaves both copies (the taken one returns to the queue): one dead letter
twice, with the same stable id, which the next scan folds into one (:func:`axis.core.deadletters.unique`). A
dead letter is never lost. Messages that arrive during a scan stay behind the ones it takes, for the next scan.

The channel stays open between scans: a quorum queue settles acks asynchronously, and a channel closed right after
its acks had some of the messages it had just acked returned to the queue as duplicates (measured: 30-70 of 1,500
every other scan); a channel is closed only on an error, to give back what it took and did not ack.

One scan at a time per process (a lock); one admin app per axis does the scanning (two would each see part of
the queue during a scan, though neither loses anything). What to do is decided by the pure
:mod:`axis.core.deadletters`; this module only moves messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from axis.broker.transport import connect, make_message
from axis.core.backoff import Backoff
from axis.core.wire import EX_DLX, Q_DEAD, Outgoing

#: messages taken before their copies are published and acked together
BATCH = 200
#: how long a scan waits for a message it counted (a reader elsewhere may have taken it)
TAKE_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class DeadMessage:
    """One message of ``axis.dead`` as taken from the queue."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None
    user_id: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Keep:
    """Put the message back into ``axis.dead`` with these headers."""

    headers: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Remove:
    """Take the message out of ``axis.dead`` once these messages are published (confirmed)."""

    publish: Sequence[Outgoing] = field(default_factory=tuple)


Decide = Callable[[DeadMessage], Keep | Remove]


async def _count(channel: AbstractChannel) -> int:
    """Messages ready in ``axis.dead`` now: a passive declare on the channel itself (aio-pika's ``declare_queue``
    hands a channel's second declare of a queue the first one's result: a stale count)."""
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(Q_DEAD, passive=True)
    return int(declared.message_count or 0)


async def _take(channel: AbstractChannel, queue: aio_pika.abc.AbstractQueue, n: int) -> list[AbstractIncomingMessage]:
    """At most ``n`` messages from the head of the queue, unacked: a consumer with a prefetch of exactly ``n``
    (the broker sends it no more than that while none is acked), cancelled before anything is acked — the
    messages come without a round trip each (``basic.get`` cost one) and never one past the ``n``."""
    await channel.set_qos(prefetch_count=n)  # for the consumer made next
    inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    tag = await queue.consume(inbox.put, no_ack=False)
    batch: list[AbstractIncomingMessage] = []
    try:
        while len(batch) < n:
            batch.append(await asyncio.wait_for(inbox.get(), TAKE_WAIT))
    except TimeoutError:  # fewer ready than counted (another reader took some)
        pass
    finally:
        await queue.cancel(tag)
    while not inbox.empty():  # delivered between the timeout and the cancel: still within the prefetch
        batch.append(inbox.get_nowait())
    return batch


class DeadLetterQueue:
    """``axis.dead`` on the broker at ``url`` (a user that may read it and publish to ``axis.dlx`` and to where
    resends and log events go); ``user_id``: the AMQP user id set on what it publishes (per-component users)."""

    def __init__(self, url: str, *, user_id: str | None = None, connect_wait: float = 10.0) -> None:
        self.url = url
        self.user_id = user_id
        self.connect_wait = connect_wait
        self._conn: AbstractRobustConnection | None = None
        self._chan: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def _channel(self) -> AbstractChannel:
        """The one channel scans use, kept open between them (see :meth:`scan`)."""
        if self._conn is None or self._conn.is_closed:
            self._conn = await connect(self.url, backoff=Backoff(first=0.2, cap=2.0, deadline=self.connect_wait))
            self._chan = None
        if self._chan is None or self._chan.is_closed:
            self._chan = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
        return self._chan

    async def _drop_channel(self) -> None:
        """Close the channel: what it took and did not ack goes back to the queue."""
        chan, self._chan = self._chan, None
        if chan is not None:
            with contextlib.suppress(Exception):
                await chan.close()

    async def close(self) -> None:
        await self._drop_channel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def depth(self) -> int:
        """Messages ready in ``axis.dead`` now."""
        async with self._lock:
            channel = await self._channel()
            try:
                return await _count(channel)
            except BaseException:
                await self._drop_channel()
                raise

    async def scan(self, decide: Decide) -> int:
        """Rotate the queue once (module docstring); returns how many messages were taken."""
        async with self._lock:
            channel = await self._channel()
            try:
                queue = await channel.declare_queue(Q_DEAD, passive=True)
                todo = await _count(channel)
                exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
                taken = 0
                while taken < todo:
                    batch = await _take(channel, queue, min(BATCH, todo - taken))
                    if not batch:
                        break
                    taken += len(batch)
                    outgoing: list[Outgoing] = []
                    for m in batch:
                        dead = DeadMessage(m.body, dict(m.headers or {}), m.message_id, m.user_id, m.content_type)
                        verdict = decide(dead)
                        if isinstance(verdict, Keep):
                            outgoing.append(Outgoing(EX_DLX, "", m.body, verdict.headers,
                                                     message_id=m.message_id or "",
                                                     content_type=m.content_type or "application/octet-stream"))
                        else:
                            outgoing.extend(verdict.publish)
                    await asyncio.gather(*(self._publish(channel, exchanges, o) for o in outgoing))
                    await batch[-1].ack(multiple=True)  # every message this channel took so far is settled
                return taken
            except BaseException:
                # what was taken and not acked goes back to the queue with the channel (kept copies of it, if any
                # were published, are duplicates the next scan folds)
                await self._drop_channel()
                raise

    async def _publish(self, channel: AbstractChannel, exchanges: dict[str, aio_pika.abc.AbstractExchange],
                       out: Outgoing) -> None:
        exchange = exchanges.get(out.exchange)
        if exchange is None:
            exchange = exchanges[out.exchange] = await channel.get_exchange(out.exchange, ensure=False)
        await exchange.publish(make_message(out, self.user_id), out.routing_key, mandatory=True)
