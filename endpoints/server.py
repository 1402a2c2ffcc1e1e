"""One logical endpoint server: its agencies, tokens, store, verifier, signing keys, publisher and consumer.

A host process may run several logical servers (each its own FastAPI app on its own port); see
:mod:`endpoints.host`. With per-component broker users (``broker.auth: users``) the servers of a host share its
link (:mod:`endpoints.link`: one connection as the host's broker user, allowed what its servers may do together,
every message naming the server it is for). A server without one opens its own AMQP connection as its own user
``axis-server-<id>`` — it can publish to ``axis.submit`` (with ``user_id`` = that user, so the router knows which
server a status comes from) and consume ``axis.server.<id>``, nothing else. In development mode (``shared``) they
share the host's connection.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axis.blobs import BlobStore, BlobStoreUnavailable, open_blobs
from axis.broker.topology import attach_exchanges, attach_queue
from axis.broker.transport import Coalescer, Connection, Publisher, connect
from axis.broker.users import component_url, publisher_user_id, server_user
from axis.config import Config, ServerConfig
from axis.core import bundle, envelope
from axis.core.blobref import BlobRef
from axis.core.ratelimit import FailureLimiter
from axis.core.wire import H_SERVER, KIND_DOCUMENT, KIND_DOCUMENT_BUNDLE, KIND_STATUS, server_queue, submission
from axis.log.store import LogStore
from axis.stats.counting import Counter, open_counter
from endpoints.auth import TokenTable
from endpoints.bigdoc import check_blob
from endpoints.checks import check_delivery
from endpoints.cpu import run_cpu_for
from endpoints.decide import LocalView
from endpoints.delivery import DeliveryConsumer
from endpoints.gate import Gate
from endpoints.inbox import InboxStore, open_inbox
from endpoints.link import HostLink, body_size, submit_bundle_bytes
from endpoints.metrics import Metrics
from endpoints.mtls import ClientAuth
from endpoints.refusals import RefusalRecorder

log = logging.getLogger("axis.endpoint")


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: Any
    cert: Any


def load_signing_keys(config: Config, server: ServerConfig) -> dict[str, SigningKey]:
    """The keys this server holds (``servers[].keys``), loaded once."""
    from axis.core.pki import load_certs, load_key

    keys: dict[str, SigningKey] = {}
    for code in server.keys:
        a = config.agency(code)
        if a is None or a.key is None or a.cert is None:
            log.warning("server %s: no key/cert paths for %s; it must submit signed documents", server.id, code)
            continue
        keys[code] = SigningKey(load_key(a.key.read_bytes()), load_certs(a.cert.read_bytes())[0])
    return keys


class EndpointServer:
    def __init__(self, config: Config, server_id: str, *, verifier: Any = None, verifier_unsigned_ok: Any = None,
                 store: InboxStore | None = None, stats: Counter | None = None) -> None:
        from axis.config.verifier import make_verifier

        self.config = config
        self.server = config.server(server_id)
        self.id = server_id
        agencies = config.agencies_on(server_id)
        self.local_agencies = frozenset(a.code for a in agencies)
        self.tokens = TokenTable(agencies)
        self.client_auth = _client_auth(config, self.server)
        lim = config.limits
        self.auth_limiter = FailureLimiter(lim.auth_failures, lim.auth_window_seconds, lim.auth_clients)
        self.verifier = verifier or make_verifier(config)
        self.verifier_unsigned_ok = verifier_unsigned_ok or make_verifier(config, require_signature=False)
        self.keys = load_signing_keys(config, self.server)
        self.metrics = Metrics()
        self.store = store
        self._own_store = store is None
        self.log: LogStore | None = None
        self.stats = stats  # the statistics store: HTTP refusals are counted there (the router never sees them)
        self._own_stats = stats is None
        self.refusals: RefusalRecorder = None  # type: ignore[assignment]
        self.publisher: Publisher = None  # type: ignore[assignment]
        #: the documents this server's door submits, shared out as document-bundles (:meth:`submit`)
        self.submissions: Coalescer[bundle.Item] = Coalescer(self._publish_documents, size=body_size,
                                                             max_bytes=submit_bundle_bytes(config))
        #: the host's shared link (endpoints.link), when it has a broker user of its own: submissions and status 01s
        #: then travel in the host's bundles
        self.link: HostLink | None = None
        self._consumer_tag: str | None = None
        self._queue: Any = None
        self._own_connection: Connection | None = None
        #: deliveries and HTTP requests hold it; :meth:`reload` swaps the configuration between them
        self.gate = Gate()
        self._view = self._make_view()
        #: big documents (endpoints.bigdoc): the blob store, when the configuration lets documents travel by reference
        self.blobs: BlobStore | None = (open_blobs(config.blob_dir, config.blobs.url) if config.limits.big_documents
                                        else None)
        self._blob_gc: asyncio.Task[None] | None = None

    @property
    def work_dir(self) -> Path:
        """The work directory: its host processes share what they checked in full (:mod:`endpoints.checked`)."""
        return self.config.work_dir

    @property
    def view(self) -> LocalView:
        """What deliveries are decided with (:mod:`endpoints.decide`); a reload replaces it whole."""
        return self._view

    def _make_view(self) -> LocalView:
        return LocalView(self.id, self.local_agencies, self.config.directory, self.config.limits.max_envelope_bytes)

    async def submit(self, body: bytes, headers: dict[str, Any]) -> None:
        """Hand a document the door checked to the router (``axis.submit``); returns once the broker confirmed it.
        The documents submitted while this server's previous submissions await their confirms (two at a time, the
        :class:`~axis.broker.transport.Coalescer`'s ``inflight``) travel together in one ``document-bundle`` (each
        item with its own headers as its meta): the router decides each item as the single document it is, so a
        bundle changes nothing but the number of messages. A bundle is never larger than one inline document may
        be (:func:`~endpoints.link.submit_bundle_bytes`), so the router's bytes in flight keep their bound; a
        document over :data:`axis.core.bundle.BUNDLE_DOCUMENT_BYTES` goes alone. With the host's link
        (:mod:`endpoints.link`) the bundle holds the submissions of every server of the host, each naming its own."""
        if len(body) > min(bundle.BUNDLE_DOCUMENT_BYTES, self.submissions.max_bytes):
            await self._publish_documents([bundle.Item(body, headers)])
        elif self.link is not None:
            await self.link.documents.send([bundle.Item(body, {**headers, H_SERVER: self.id})])
        else:
            await self.submissions.send([bundle.Item(body, headers)])

    async def _publish_documents(self, items: list[bundle.Item]) -> None:
        if len(items) == 1:
            await self.publisher.publish(submission(items[0].body, self.id, KIND_DOCUMENT, **items[0].meta))
        else:
            await self.publisher.publish(submission(bundle.pack(items), self.id, KIND_DOCUMENT_BUNDLE))

    async def send_status(self, body: bytes, headers: dict[str, Any]) -> None:
        """Hand an agency's status (built by this server) to the router; returns once the broker confirmed it. With
        the host's link, the statuses that arrive while its previous ones await their confirm travel together
        (its ``agency_statuses``, :class:`endpoints.link.HostLink`: no wait of their own)."""
        if self.link is not None:
            await self.link.agency_statuses.send([bundle.Item(body, {**headers, H_SERVER: self.id})])
        else:
            await self.publisher.publish(submission(body, self.id, KIND_STATUS, **headers))

    async def _link_statuses(self, items: list[bundle.Item]) -> None:
        assert self.link is not None
        await self.link.statuses.send([bundle.Item(i.body, {**i.meta, H_SERVER: self.id}) for i in items])

    async def check_delivery(self, body: bytes) -> tuple[envelope.DocumentMessage, str]:
        """The full check of a delivered document's exact bytes, with the current verifier (in the CPU pool when
        large): the message and the hex SHA-256 of the bytes."""
        return await run_cpu_for(len(body), check_delivery, self.verifier, body, self.work_dir)

    async def check_blob(self, ref: BlobRef) -> tuple[envelope.DocumentMessage, str]:
        """The full check of a delivered reference's bytes, read from the blob store (in a worker thread)."""
        return await asyncio.to_thread(check_blob, self, ref)

    async def _collect_blobs(self) -> None:
        """Every ``blobs.gc_interval_seconds``: delete the blobs nothing holds any more, past their retention."""
        assert self.blobs is not None
        while True:
            try:
                deleted = await asyncio.to_thread(self.blobs.collect, self.config.blobs.retention_days * 86400)
                await asyncio.to_thread(self.blobs.clean_temps)
                count, size = await asyncio.to_thread(self.blobs.usage)
                self.metrics.blobs.set(count)
                self.metrics.blob_bytes.set(size)
                if deleted:
                    log.info("server %s: %d blobs deleted", self.id, deleted)
            except BlobStoreUnavailable as exc:
                log.warning("server %s: blob collection skipped, tried again later: %s", self.id, exc)
            except Exception:
                log.exception("server %s: blob collection failed; tried again later", self.id)
            await asyncio.sleep(self.config.blobs.gc_interval_seconds)

    async def start(self, connection: Connection | None = None, *, prefetch: int = 32,
                    link: HostLink | None = None) -> None:
        """Attach to the broker and consume: through the host's ``link`` when there is one (:mod:`endpoints.link`),
        else ``connection`` (the host's shared one) when broker users are shared, else as its own user."""
        if self.store is None:
            self.store = await open_inbox(self.server.inbox_url)
        await self._follow_code_changes(self.config)
        if self.log is None:  # the evidence log, read for traces, receipts and proofs (one writer elsewhere)
            self.log = await LogStore.open(self.config.evidence.url)
        if self.stats is None:
            self.stats = await open_counter(self.config.stats_url)
        self.refusals = RefusalRecorder(self.stats)
        self.link = link
        if link is not None:
            connection, self.publisher = link.connection, link.publisher
        else:
            user = server_user(self.id)
            if self.config.broker.per_component or connection is None:
                connection = self._own_connection = await connect(component_url(self.config, user))
            shared = not self.config.broker.per_component
            _, exchanges = await attach_exchanges(connection, declare=[self.id] if shared else None)
            self.publisher = Publisher(exchanges, user_id=publisher_user_id(self.config, user))
        # passive declare (not get_queue): the robust channel restores this consumer after a reconnect
        _, self._queue = await attach_queue(connection, server_queue(self.id), prefetch=prefetch)
        consumer = DeliveryConsumer(view=lambda: self._view, store=self.store, publish=self.publisher.publish,
                                    check=self.check_delivery, metrics=self.metrics,
                                    check_blob=self.check_blob if self.blobs is not None else None,
                                    send_statuses=self._link_statuses if link is not None else None)
        if self.blobs is not None:
            await asyncio.to_thread(self.blobs.clean_temps)  # what uploads interrupted by a crash left
            self._blob_gc = asyncio.create_task(self._collect_blobs(), name=f"axis-blob-gc-{self.id}")
        self._consumer_tag = await self._queue.consume(_gated(self.gate, consumer), no_ack=False)
        log.info("server %s (%s, %d agencies) consuming %s", self.id, self.server.kind, len(self.local_agencies),
                 server_queue(self.id))

    async def reload(self, config: Config, *, verifier: Any = None, verifier_unsigned_ok: Any = None) -> None:
        """Swap to a new configuration (hot reload, axis.config.reload): agencies, tokens, signing keys, directory and,
        when given, verifiers — all at once, between deliveries and requests (:class:`endpoints.gate.Gate`). The
        server's own address and store stay (they are bound); a server gone from ``config`` raises ConfigError."""
        server = config.server(self.id)
        if (server.host, server.port, server.inbox_url) != (self.server.host, self.server.port, self.server.inbox_url):
            log.warning("server %s: a new address or inbox_url takes effect only on a restart", self.id)
        agencies = config.agencies_on(self.id)
        tokens = await asyncio.to_thread(TokenTable, agencies)
        keys = await asyncio.to_thread(load_signing_keys, config, server)
        async with self.gate.closed():
            self.config, self.server = config, server
            self.local_agencies = frozenset(a.code for a in agencies)
            self.tokens, self.keys = tokens, keys
            self.client_auth = _client_auth(config, server)
            if verifier is not None:
                self.verifier = verifier
            if verifier_unsigned_ok is not None:
                self.verifier_unsigned_ok = verifier_unsigned_ok
            self._view = self._make_view()
            await self._follow_code_changes(config)  # before the first request under the new code
        log.info("server %s reloaded: %d agencies", self.id, len(self.local_agencies))

    async def _follow_code_changes(self, config: Config) -> None:
        """An agency of this server whose code changed (``aliases``, axis agency rename) finds its rows under its new
        code: inbox, sent documents, statuses (:meth:`endpoints.inbox.InboxStore.rename_agency`; a no-op once done).
        A failure is logged and tried again at the next reload: it never stops the server or the reload."""
        if self.store is None:
            return
        for agency in config.agencies_on(self.id):
            if agency.aliases:
                try:
                    renamed = await self.store.rename_agency(agency.aliases, agency.code)
                except Exception:
                    log.exception("server %s: the rows of %s under %s could not take its code", self.id,
                                  agency.code, ", ".join(agency.aliases))
                    continue
                if renamed:
                    log.info("server %s: %d rows of %s now under its code (formerly %s)", self.id, renamed,
                             agency.code, ", ".join(agency.aliases))

    async def stop(self) -> None:
        if self._blob_gc is not None:
            self._blob_gc.cancel()
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception:  # the connection may already be gone
                log.debug("cancel failed", exc_info=True)
        if self._own_connection is not None:
            try:
                await self._own_connection.close()
            except Exception:
                log.debug("closing the connection failed", exc_info=True)
        if self.refusals is not None:
            await self.refusals.close()
        if self.store is not None and self._own_store:
            await self.store.close()
        if self.log is not None:
            await self.log.close()
        if self.stats is not None and self._own_stats:
            await self.stats.close()


def _client_auth(config: Config, server: ServerConfig) -> ClientAuth:
    """The server's mutual-TLS rule (``client_auth``; off without TLS)."""
    return ClientAuth(server.client_auth if config.tls.enabled else "off", config.pki.ca, config.pki.crl,
                      config.pki.crl_max_age)


def _gated(gate: Gate, consumer: Any) -> Any:
    async def consume(message: Any) -> None:
        async with gate.hold():
            await consumer(message)

    return consume
