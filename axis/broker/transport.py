"""RabbitMQ transport (aio-pika): robust connection, idempotent topology (the names of :mod:`axis.core.wire`;
identical arguments, so declaring twice is harmless), confirmed persistent publishing.

Every publish is persistent (delivery_mode 2), mandatory (an unroutable message is an error, not a silent
drop) and waits for the broker's publisher confirm. Consumers ack manually, after their work is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.connection import make_url
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from axis.broker.amqpio import AxisConnection
from axis.broker.waiting import connect_with_retry
from axis.core.backoff import Backoff
from axis.core.wire import (
    DELIVERY_LIMIT,
    EX_DELIVER,
    EX_DLX,
    EX_EVIDENCE,
    EX_SUBMIT,
    Q_DEAD,
    Q_EVIDENCE,
    Q_SUBMISSIONS,
    Outgoing,
    bounded,
    server_queue,
)

T = TypeVar("T")

#: What the rest of the axis names broker things by (only this package imports aio-pika):
IncomingMessage = AbstractIncomingMessage  # a consumed message: body, headers, ack/nack/reject
Connection = AbstractRobustConnection  # a connection that reconnects and restores its consumers
#: The broker link is down or being restored: nothing was published, the caller may retry (HTTP 503).
BROKER_ERRORS: tuple[type[Exception], ...] = (AMQPError, ChannelInvalidStateError, ConnectionError, TimeoutError)

def _queue_args(dead_letter: bool = True) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if dead_letter:
        args |= {"x-delivery-limit": DELIVERY_LIMIT, "x-dead-letter-exchange": EX_DLX}
    return args


async def connect(url: str, *, backoff: Backoff | None = None) -> AbstractRobustConnection:
    """A connection that reconnects (and re-declares its channels and consumers) after broker outages; on plain
    TCP its frames leave in one write per event-loop turn (:mod:`axis.broker.amqpio`). The first connection is
    retried too, with back-off up to a deadline (:func:`axis.broker.waiting.connect_with_retry`: a broker still
    starting, a vhost not created yet), then :class:`axis.broker.waiting.BrokerUnavailable`."""


    async def attempt() -> AbstractRobustConnection:
        # aio-pika's connect_robust, keeping hold of the connection: one whose first connect failed still runs its
        # reconnect task, and must be closed before the next attempt (else every attempt leaves one behind)
        connection = AxisConnection(make_url(url), client_properties={"connection_name": "axis"})
        try:
            await connection.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return connection

    return await connect_with_retry(attempt, url, backoff=backoff)


async def open_channel(connection: AbstractRobustConnection, *, prefetch: int = 0) -> AbstractChannel:
    """A channel with publisher confirms on and returns raised (mandatory publishes fail loudly)."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    if prefetch:
        await channel.set_qos(prefetch_count=prefetch)
    return channel


@dataclass(frozen=True, slots=True)
class Exchanges:
    submit: AbstractExchange
    deliver: AbstractExchange
    dlx: AbstractExchange
    evidence: AbstractExchange


async def declare_topology(channel: AbstractChannel, server_ids: Iterable[str] = ()) -> Exchanges:
    """Declare the exchanges, the shared queues (submissions, dead letters, evidence) and one delivery queue per
    server id (idempotent)."""
    submit = await channel.declare_exchange(EX_SUBMIT, aio_pika.ExchangeType.FANOUT, durable=True)
    deliver = await channel.declare_exchange(EX_DELIVER, aio_pika.ExchangeType.DIRECT, durable=True)
    dlx = await channel.declare_exchange(EX_DLX, aio_pika.ExchangeType.FANOUT, durable=True)
    dead = await channel.declare_queue(Q_DEAD, durable=True, arguments=_queue_args(dead_letter=False))
    await dead.bind(dlx)
    subs = await channel.declare_queue(Q_SUBMISSIONS, durable=True, arguments=_queue_args())
    await subs.bind(submit)
    evidence = await channel.declare_exchange(EX_EVIDENCE, aio_pika.ExchangeType.FANOUT, durable=True)
    events = await channel.declare_queue(Q_EVIDENCE, durable=True, arguments=_queue_args())
    await events.bind(evidence)
    for sid in server_ids:
        q = await channel.declare_queue(server_queue(sid), durable=True, arguments=_queue_args())
        await q.bind(deliver, routing_key=sid)
    return Exchanges(submit, deliver, dlx, evidence)


# Message ids: a random per-process prefix and a counter — unique like a uuid4 each, without a urandom call per
# message (uuid4 was ~1 % of the router's CPU at fan-out 2.84).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count()


def make_properties(out: Outgoing, user_id: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> aiormq.spec.Basic.Properties:
    """The AMQP properties of ``out`` — what ``make_message(out, user_id).properties`` holds (persistent, bounded
    headers, content type, a fresh message id, the user id), built directly: constructing an ``aio_pika.Message``
    only to read its properties cost ~60 µs per publish, ~2 µs this way (bench/README.md). ``extra``: headers
    added as they are (already bounded by whoever made them)."""
    headers = {k: bounded(v) for k, v in out.headers.items()}
    if extra:
        headers.update(extra)
    return aiormq.spec.Basic.Properties(
        content_type=out.content_type,
        delivery_mode=2,  # persistent
        headers=headers,
        message_id=out.message_id or f"{_ID_PREFIX}{next(_ids):016x}",
        priority=0,
        user_id=user_id,
    )


def make_message(out: Outgoing, user_id: str | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        out.body,
        headers={k: bounded(v) for k, v in out.headers.items()},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type=out.content_type,
        message_id=out.message_id or f"{_ID_PREFIX}{next(_ids):016x}",
        user_id=user_id,
    )


def _channel_bound(exchange: AbstractExchange) -> aio_pika.Exchange:
    """``exchange`` as aio-pika's Exchange, which keeps the channel it was declared on (its abstract base does not
    say so); every exchange aio-pika declares or looks up is one."""
    if not isinstance(exchange, aio_pika.Exchange):
        raise TypeError(f"not an aio-pika Exchange: {type(exchange).__name__}")
    return exchange


class Publisher:
    """Confirmed publishing on one channel; ``publish_all`` publishes concurrently and waits for every confirm.
    ``user_id`` (the connection's broker user; RabbitMQ refuses any other) is set on every message when given:
    it tells the router, unforgeably, which endpoint server published (:mod:`axis.broker.users`). ``headers`` go
    on every message as they are (a host process's list of its servers, :mod:`endpoints.link`)."""

    def __init__(self, exchanges: Exchanges, *, user_id: str | None = None,
                 headers: Mapping[str, Any] | None = None) -> None:
        self._ex = {EX_SUBMIT: _channel_bound(exchanges.submit), EX_DELIVER: _channel_bound(exchanges.deliver),
                    EX_DLX: _channel_bound(exchanges.dlx), EX_EVIDENCE: _channel_bound(exchanges.evidence)}
        self.user_id = user_id
        self.headers = {k: bounded(v) for k, v in (headers or {}).items()}

    async def publish(self, out: Outgoing) -> None:
        # aiormq directly, with wait=False: the channel lock is released once the frames are queued, not after
        # the socket drained, so concurrent publishes (publish_all) leave in one write (axis.broker.amqpio); the
        # publisher confirm (and a mandatory return, raised) is still awaited.
        channel = await self._ex[out.exchange].channel.get_underlay_channel()
        if not isinstance(channel, aiormq.Channel):  # always (narrows to the class whose basic_publish has `wait`)
            raise TypeError(f"not an aiormq Channel: {type(channel).__name__}")
        await channel.basic_publish(out.body, exchange=out.exchange, routing_key=out.routing_key,
                                    properties=make_properties(out, self.user_id, self.headers), mandatory=True,
                                    wait=False)

    async def publish_all(self, outs: Sequence[Outgoing]) -> None:
        if len(outs) == 1:
            await self.publish(outs[0])
        elif outs:
            await asyncio.gather(*(self.publish(o) for o in outs))


class Coalescer(Generic[T]):
    """Group publishing: items sent while a message is awaiting its confirm go out together in the next one.

    ``send(items)`` returns once ``flush`` (which publishes one message holding them, confirmed) has returned for
    them, or raises what it raised, so a caller may ack what the items stand for. The first items of a quiet
    period go out at once (or, with ``linger``, after waiting that long for company); under load one message carries
    everything that arrived during the previous confirm (at most ``max_items``, and with ``size`` at most
    ``max_bytes`` unless one send alone is larger; at most ``inflight`` flushes at a time).
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], *, max_items: int = 512,
                 inflight: int = 2, linger: float = 0.0, size: Callable[[T], int] | None = None,
                 max_bytes: int = 0) -> None:
        self._flush_items = flush
        self.max_items = max_items
        self.linger = linger
        self.size = size
        self.max_bytes = max_bytes
        self._pending: list[tuple[list[T], asyncio.Future[None]]] = []
        self._slots = inflight
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        self.messages = 0  # flushes so far (for tests and benchmarks)

    async def send(self, items: Sequence[T]) -> None:
        if not items:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((list(items), fut))
        if self._slots > 0:
            self._slots -= 1
            task = asyncio.get_running_loop().create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await fut

    def _take(self) -> tuple[list[T], list[asyncio.Future[None]]]:
        items: list[T] = []
        futs: list[asyncio.Future[None]] = []
        size = 0
        while self._pending:
            its = self._pending[0][0]
            more = sum(map(self.size, its)) if self.size is not None else 0
            if items and (len(items) + len(its) > self.max_items or (self.size and size + more > self.max_bytes)):
                break
            items += its
            futs.append(self._pending.pop(0)[1])
            size += more
        return items, futs

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(self.linger)  # let the items of this loop iteration (or of the linger) join
            while self._pending:
                items, futs = self._take()
                try:
                    self.messages += 1
                    await self._flush_items(items)
                except BaseException as exc:
                    for f in futs:
                        if not f.done():
                            f.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for f in futs:
                        if not f.done():
                            f.set_result(None)
        finally:
            self._slots += 1
