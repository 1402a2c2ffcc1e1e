"""How a router settles what it decided, after the documents are out: the statuses it forwards, the evidence, the
counts and the acks of several batches together (:class:`Settler`).

A batch's deliveries of documents (and its refusals, dead letters, bounces) are published and confirmed as soon as
it is decided: they are what agencies wait for. What remains of the batch waits in the settler for up to
:data:`SETTLE_LINGER_SECONDS` and is then done for every batch that waited, in order:

1. the statuses bound for each server (:func:`axis.router.core.is_status_delivery`), packed per server
   (:func:`axis.router.core.coalesce`), and one evidence message for all their events, confirmed together;
2. one counting transaction;
3. one ack (``multiple``: the batches were taken in delivery order, so every unsettled delivery up to the last one
   belongs to them; a message the router sent back to the queue was nacked before its batch got here).

The order is the one a single batch always had — published, logged and counted before the ack — so a crash anywhere
loses nothing: what was not acked is delivered again, decided again and published again; the inbox stores one copy
of a document delivered twice, a sender's server one row of a status delivered twice, the log one leaf of an event
published twice, and counts are idempotent.

Why wait: at low and moderate load a batch is one or two messages, and each paid its own forward of statuses to the
sender's server, its own evidence message (each a quorum-queue message RabbitMQ persists, and work for the
consumer), its own counting transaction and its own ack. At 10 documents/s on the reference machine the evidence
messages alone were 2.7 of the 11.7 AMQP messages a document cost, and a document cost ~7× its saturated CPU
(bench/README.md, session 8). The price: a status reaches the sender's server, and the log and the counters learn
of a document, up to :data:`SETTLE_LINGER_SECONDS` later (the log writer adds its own 50 ms); a crashed router's
messages of that window are redelivered rather than lost. No document waits. The settler settles early when its
batches hold :data:`SETTLE_MAX_EVENTS` events or half the router's prefetch in messages (so unacked messages never
starve the consumer), and on :meth:`Settler.close`.

If settling fails (the broker, the statistics store), the batches are settled again one at a time, and a batch that
still fails goes back to the queue alone (nack, requeue): one batch's trouble never costs another its delivery limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence

from axis.broker.transport import IncomingMessage, Publisher
from axis.core.wire import evidence
from axis.router.core import Outcome, coalesce, is_status_delivery
from axis.stats.counting import Counter

log = logging.getLogger("axis.router")

#: how long a decided batch waits for others to share its forwards of statuses, evidence message, counting
#: transaction and ack
SETTLE_LINGER_SECONDS = 0.25
#: settle at once when the waiting batches hold this many events (the log writer's batch)
SETTLE_MAX_EVENTS = 2000

#: a decided message and its outcome
Decided = tuple[IncomingMessage, Outcome]


class Settler:
    """Forwarded statuses, evidence, counts and acks of a router's decided batches, several batches at a time (see
    the module)."""

    def __init__(self, publisher: Publisher, counter: Counter, *, max_messages: int,
                 linger: float = SETTLE_LINGER_SECONDS, max_events: int = SETTLE_MAX_EVENTS,
                 on_settled: Callable[[Sequence[Decided]], None] | None = None) -> None:
        self.publisher = publisher
        self.counter = counter
        self.linger = linger
        self.max_events = max_events
        self.max_messages = max(1, max_messages)
        self.on_settled = on_settled
        self._batches: list[list[Decided]] = []
        self._events = 0
        self._messages = 0
        self._lock = asyncio.Lock()  # one settlement at a time, batches in order
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Messages decided and published, not yet settled."""
        return self._messages

    async def add(self, batch: list[Decided]) -> None:
        """A batch whose outgoing messages are confirmed: settle it now or within the linger."""
        if not batch:
            return
        self._batches.append(batch)
        self._messages += len(batch)
        self._events += sum(len(o.events) for _, o in batch)
        if self.linger <= 0 or self._events >= self.max_events or self._messages >= self.max_messages:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        task = asyncio.create_task(self.flush(), name="axis-router-settle")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Settle every batch waiting (in order); never raises."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batches, self._batches = self._batches, []
            self._events = self._messages = 0
            if not batches:
                return
            try:
                await self._settle([d for batch in batches for d in batch])
            except Exception:
                log.exception("router: settling %d batches failed; settling them one by one", len(batches))
                for batch in batches:
                    try:
                        await self._settle(batch)
                    except Exception:
                        log.exception("router: a batch of %d could not be settled; it goes back to the queue",
                                      len(batch))
                        await requeue(m for m, _ in batch)

    async def close(self) -> None:
        """Settle what waits (the router is stopping)."""
        await self.flush()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _settle(self, decided: list[Decided]) -> None:
        outgoing = coalesce([x for _, o in decided for x in o.outgoing if is_status_delivery(x)])
        events = [e for _, o in decided for e in o.events]
        if events:
            outgoing.append(evidence(events))
        if outgoing:
            await self.publisher.publish_all(outgoing)
        await self.counter.record(
            accepted=[a for _, o in decided for a in o.accepted],
            delivered=[d for _, o in decided for d in o.delivered],
            refused=[r for _, o in decided for r in o.refused],
        )
        try:
            if len(decided) == 1:
                await decided[0][0].ack()
            else:
                await decided[-1][0].ack(multiple=True)
        except Exception:  # the channel closed under us: the broker requeues what it had not seen acked
            log.warning("router: ack of %d messages failed; they will be redelivered", len(decided))
        if self.on_settled is not None:
            self.on_settled(decided)


async def requeue(messages: Iterable[IncomingMessage]) -> None:
    """Back to the queue, one by one (each counts towards its own delivery limit)."""
    for m in messages:
        with contextlib.suppress(Exception):
            await m.nack(requeue=True)
