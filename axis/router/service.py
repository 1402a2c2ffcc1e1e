"""The router process: consume ``axis.submissions``, decide (RouterCore), publish confirmed, then log, count, ack.

Several router processes may consume the same queue (competing consumers). Messages are taken in batches (how long a
batch waits to fill: :mod:`axis.router.batching`): the CPU work of a batch runs in a worker thread (the event loop
keeps heartbeats and confirms flowing), its deliveries are packed per server (:func:`axis.router.core.coalesce`), and
its documents, refusals and dead letters go out concurrently and are confirmed together. Then the batch waits in the
settler (:mod:`axis.router.settle`) with those decided after it, up to 250 ms: their statuses go to the senders'
servers (a bundle per server) and their events to the log as one message, their counts are recorded in one
transaction, and only then are their messages acked (one ack, ``multiple``). A batch with little to check
(:func:`_light`) is decided on the event loop, without the two thread switches. Any failure
after the decision (broker, store) settles the batch's messages again one by one, so a message that cannot be
published goes back to the queue alone and never takes the others with it (each redelivery counts towards a
message's delivery limit): redelivery is safe because deliveries are deduplicated at the inbox, events at the log,
and counts are idempotent. A message that keeps failing is dead-lettered by RabbitMQ after ``x-delivery-limit`` tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from axis.blobs import BlobStoreUnavailable, open_blobs
from axis.broker.topology import attach_exchanges, attach_queue
from axis.broker.transport import Connection, IncomingMessage, Publisher, connect
from axis.broker.users import ROUTER_USER, authenticated_origin, component_url, publisher_user_id
from axis.config import Config
from axis.config.verifier import make_verifier
from axis.core import bundle
from axis.core.verify import Verifier
from axis.core.wire import (
    H_BLOB,
    H_HOST_SERVERS,
    H_KIND,
    H_SERVER,
    KIND_DOCUMENT_BUNDLE,
    KIND_STATUS,
    KIND_STATUS_BUNDLE,
    Q_SUBMISSIONS,
    header_text,
)
from axis.router.batching import STATUS_GATHER_SECONDS, BatchInbox, MachineBusy, Rate, linger_for
from axis.router.blobs import BlobRouting, prefetch_for
from axis.router.core import Outcome, RouterCore, coalesce, is_status_delivery
from axis.router.settle import SETTLE_LINGER_SECONDS, Decided, Settler, requeue
from axis.stats.counting import Counter, open_counter

log = logging.getLogger("axis.router")
LIGHT_KINDS = frozenset({KIND_STATUS, KIND_STATUS_BUNDLE})
BUNDLE_KINDS = frozenset({KIND_STATUS_BUNDLE, KIND_DOCUMENT_BUNDLE})


def core_for(config: Config, verifier: Verifier) -> RouterCore:
    return RouterCore(config.directory, verifier, max_bytes=config.limits.max_envelope_bytes,
                      max_recipients=config.limits.max_recipients)


class RouterService:
    def __init__(self, config: Config, *, counter: Counter | None = None, verifier: Verifier | None = None,
                 prefetch: int = 1024, batch: int = 512, linger: float = 0.15,
                 status_gather: float = STATUS_GATHER_SECONDS,
                 settle_linger: float = SETTLE_LINGER_SECONDS) -> None:
        self.config = config
        self.core = core_for(config, verifier or make_verifier(config))
        self._counter = counter
        self._own_counter = counter is None
        self.prefetch = prefetch_for(config.limits, prefetch)  # bounded by bytes with big documents
        self.batch = batch
        self.linger = linger
        self.status_gather = status_gather
        self._rate = Rate()
        self._machine = MachineBusy()
        self._inbox: BatchInbox[IncomingMessage] = BatchInbox()
        self._conn: Connection | None = None
        self._worker: asyncio.Task[None] | None = None
        #: what a decided batch waits in (axis.router.settle): made by start()
        self.settler: Settler | None = None
        self.settle_linger = settle_linger
        self._swap = asyncio.Lock()  # held by each batch; a reload swaps the core between batches
        self.processed = 0  # submissions handled (each status of a bundle counts)
        #: submissions by reference (big documents, axis.router.blobs), when the configuration allows them
        self.blobs = (BlobRouting(open_blobs(config.blob_dir, config.blobs.url), config.limits.document_limit)
                      if config.limits.big_documents else None)

    async def start(self) -> None:
        if self._counter is None:
            self._counter = await open_counter(self.config.stats_url)
        # its own broker user (axis-router) unless broker.auth is shared; the topology is declared by `axis up`
        self._conn = await connect(component_url(self.config, ROUTER_USER))
        shared = not self.config.broker.per_component
        _, exchanges = await attach_exchanges(self._conn, declare=[s.id for s in self.config.servers] if shared
                                              else None)
        self._publisher = Publisher(exchanges, user_id=publisher_user_id(self.config, ROUTER_USER))
        # unacked messages count against the prefetch: settle before half of it waits
        self.settler = Settler(self._publisher, self._counter, max_messages=self.prefetch // 2,
                                linger=self.settle_linger, on_settled=self._settled)
        # declare_queue(passive=True), not get_queue(ensure=False): only a declared queue is restored with its
        # consumer when the robust connection reconnects (else the router silently stops consuming)
        _, queue = await attach_queue(self._conn, Q_SUBMISSIONS, prefetch=self.prefetch)
        self._worker = asyncio.create_task(self._work(), name="axis-router-worker")
        await queue.consume(self._inbox.put, no_ack=False)
        log.info("router consuming %s", Q_SUBMISSIONS)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self.settler is not None:
            await self.settler.close()
        if self._conn is not None:
            await self._conn.close()
        if self._counter is not None and self._own_counter:
            await self._counter.close()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- the work loop -----------------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            messages = [await self._inbox.get()]
            wait = linger_for(self.linger, self._rate.per_second, self._machine.fraction(), self._machine.sustained())
            if wait > 0:
                await self._inbox.fill(self.batch - 1, wait)
            elif self.status_gather > 0 and not _is_document(messages[0]):  # see axis.router.batching
                await self._inbox.fill(self.batch - 1, self.status_gather, until=_is_document)
            while len(messages) < self.batch and not self._inbox.empty():
                messages.append(self._inbox.get_nowait())
            self._rate.taken(sum(_items(m) for m in messages))
            async with self._swap:
                await self._handle(messages)

    async def reload(self, config: Config) -> None:
        """Hot reload (SIGHUP, axis.config.reload): the new directory and verifier apply from the next batch on; the
        batch in flight finishes (published and counted) with the old ones."""
        core = await asyncio.to_thread(lambda: core_for(config, make_verifier(config)))
        async with self._swap:
            self.config, self.core = config, core
        log.info("router reloaded: %d agencies, %d servers", len(config.directory), len(config.directory.servers))

    def _origin(self, m: IncomingMessage) -> dict[str, Any]:
        """The headers with ``x-axis-server`` = the authenticated publishing server (from the broker-validated
        ``user_id`` when components have their own users; absent when the publisher is not an endpoint server) and
        ``x-axis-host-servers`` = the servers a host process's broker user proves it serves (absent otherwise):
        what the publisher wrote in either is never passed on as it is."""
        headers: dict[str, Any] = dict(m.headers or {})
        claimed = headers.pop(H_SERVER, None)
        origin = authenticated_origin(self.config, m.user_id, claimed.decode() if isinstance(claimed, bytes)
                                      else None if claimed is None else str(claimed), headers.pop(H_HOST_SERVERS, None))
        if origin.server:
            headers[H_SERVER] = origin.server
        if origin.host:
            headers[H_HOST_SERVERS] = origin.host
        return headers

    def _decide(self, messages: list[IncomingMessage]) -> list[Outcome | None]:
        outcomes: list[Outcome | None] = []
        for m in messages:
            try:
                headers = self._origin(m)
                if self.blobs is not None and H_BLOB in headers:
                    outcomes.append(self.blobs.process(self.core, headers, m.message_id or f"tag-{m.delivery_tag}"))
                    continue
                outcomes.append(self.core.process(m.body, headers, m.message_id or f"tag-{m.delivery_tag}"))
            except BlobStoreUnavailable as exc:  # the blob store's database is down: redelivered, retried
                log.warning("router: message %s waits for the blob store: %s", m.message_id, exc)
                outcomes.append(None)
            except Exception:  # a bug, not a refusal: leave it to redelivery / the delivery limit
                log.exception("router: unexpected error on message %s", m.message_id)
                outcomes.append(None)
        return outcomes

    async def _handle(self, messages: list[IncomingMessage]) -> None:
        if _light(messages):  # a few ms of work at most: not worth two thread switches
            outcomes = self._decide(messages)
        else:
            outcomes = await asyncio.to_thread(self._decide, messages)
        done = [(m, o) for m, o in zip(messages, outcomes, strict=True) if o is not None]
        # nacked first: the batch's ack (``multiple``) must not cover them
        await requeue(m for m, o in zip(messages, outcomes, strict=True) if o is None)
        try:
            await self._settle(done)
        except Exception:
            # One message whose outcome cannot be published (a route the broker does not know, a bug) must not
            # take the batch with it: every redelivery counts towards each message's delivery limit, so a batch
            # failing as a whole would dead-letter other agencies' documents. Each message is settled alone.
            log.exception("router: publishing or counting a batch of %d failed; settling them one by one", len(done))
            for m, o in done:
                try:
                    await self._settle([(m, o)])
                except Exception:
                    log.exception("router: message %s could not be settled; it goes back to the queue", m.message_id)
                    await requeue([m])

    async def _settle(self, done: list[Decided]) -> None:
        """Publish the outcomes (confirmed) but the statuses; those, the evidence, counts and acks follow in the
        settler."""
        if not done:
            return
        await self._publisher.publish_all(coalesce([x for _, o in done for x in o.outgoing
                                                    if not is_status_delivery(x)]))
        assert self.settler is not None
        await self.settler.add(done)

    def _settled(self, decided: Sequence[Decided]) -> None:
        self.processed += sum(o.items for _, o in decided)  # submissions: documents and statuses
        if self.blobs is not None:
            for _, o in decided:
                self.blobs.settled(o)


LIGHT_BYTES = 64 * 1024  # statuses: ~60 µs each for ~1 KB
LIGHT_DOCUMENT_BYTES = 512 * 1024  # documents: ~0.5 ms each for 10 KB (signature check)


def _items(message: IncomingMessage) -> int:
    """The documents and statuses a message carries: a bundle's items, else one (what the router's rate counts:
    since the doors bundle their submissions, messages alone undercount the traffic)."""
    if header_text((message.headers or {}).get(H_KIND)) in BUNDLE_KINDS:
        return bundle.declared_items(message.body)
    return 1


def _is_document(message: IncomingMessage) -> bool:
    """A document (or a forward, a refusal): anything but a status or a bundle of them."""
    return header_text((message.headers or {}).get(H_KIND)) not in LIGHT_KINDS


def _light(messages: list[IncomingMessage]) -> bool:
    """Little to check (a few ms): decided on the event loop itself. Batches are handled one after the other,
    so the loop has nothing else to do meanwhile but read frames, which the socket buffers."""
    size, documents = 0, False
    for m in messages:
        if H_BLOB in (m.headers or {}):  # a big document by reference: read from the blob store
            return False
        documents = documents or _is_document(m)
        size += len(m.body)
    return size <= (LIGHT_DOCUMENT_BYTES if documents else LIGHT_BYTES)


async def run_router(config: Config) -> None:
    from axis.config.reload import install_sighup

    service = RouterService(config)
    install_sighup(config, service.reload, "router")
    await service.run_forever()
