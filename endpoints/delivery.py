"""The endpoint server's delivery consumer: ``axis.server.<id>`` → inbox store → status 01 → ack.

Order matters (at-least-once, never lose, never double count):
1. documents are re-verified here (every recipient checks the signer's signature on the exact bytes; a host
   process remembers what it verified, by digest, for the other servers it hosts:
   :class:`endpoints.checks.DeliveryChecks`),
2. the inbox rows are committed (unique per recipient, sender, DocumentId, BussinessDocType),
3. a status 01 per recipient goes back through ``axis.submit`` and is confirmed — the router counts it as a
   delivery; its timestamp is the inbox row's, so a redelivery re-sends an identical status (stored once).
   The statuses of deliveries committed while a previous bundle is being confirmed travel together in one
   ``status-bundle`` message (:class:`axis.broker.transport.Coalescer`, :mod:`axis.core.bundle`), one coalescer
   per logical server (a bundle is authenticated as a whole, as its publishing server) or, with a host user, one
   for all the servers of the host process (:mod:`endpoints.link`: each item names its server),
4. only then is the message acked. A crash anywhere before 4 means redelivery, which changes nothing stored.

The router packs the deliveries of one batch bound for one server into a ``document-bundle``: its items are
handled one by one exactly as single deliveries, their 01s leave together and the bundle is acked once.

Statuses and refusals (status 02 from the axis) about documents this server's agencies sent are stored for
``GET /v1/documents/{id}/status``; a ``status-bundle`` is stored item by item. A status is stored from the fields
the router read from it (``x-axis-status``, :class:`axis.core.wire.StatusFields`): statuses are unsigned, the
router parsed and checked them, and only the router can publish to this server's queue — parsing the XML a second
time here would check nothing more (it is parsed, hardened, only when a delivery lacks them). An item refused here
(never expected: the router checked it) sends the whole bundle to the dead letters after the others were stored.

Where each delivery goes (stored, forwarded, refused) is decided by :mod:`endpoints.decide`, without I/O; the
consumer gets only what it acts with: the current :class:`~endpoints.decide.LocalView`, the store, a publish
callable, the document check and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from axis.broker.transport import Coalescer, IncomingMessage
from axis.core import bundle, envelope
from axis.core.blobref import BlobRef
from axis.core.reasons import Reason, Refusal
from axis.core.wire import (
    H_BLOB,
    H_BOUNCES,
    H_DOC_TYPE,
    H_FORWARD_KIND,
    H_KIND,
    H_RECIPIENTS,
    H_SHA256,
    KIND_DOCUMENT,
    KIND_DOCUMENT_BUNDLE,
    KIND_FORWARD,
    KIND_REFUSAL,
    KIND_STATUS,
    KIND_STATUS_BUNDLE,
    Outgoing,
    StatusFields,
    blob_of,
    header_codes,
    header_text,
    status_fields,
    submission,
)
from axis.core.xmlsafe import parse_untrusted
from endpoints.bigdoc import stored_sha256
from endpoints.decide import LocalView, decide_delivery, status_refusal
from endpoints.inbox import InboxStore, ReceivedHead
from endpoints.metrics import Metrics

log = logging.getLogger("axis.endpoint")
#: seconds before a delivery that failed for a non-refusal reason goes back to its queue
REQUEUE_PAUSE = 2.0
#: how long the first status 01 of a quiet moment waits for others of this server to share its message
STATUS_LINGER_SECONDS = 0.05
AXIS_FROM = "axis"  # "from" of statuses the axis itself issues (refusals)


def read_status(body: bytes, max_bytes: int) -> StatusFields:
    """The fields of a delivered status read from its XML (hardened parse): for a delivery that does not carry
    them in ``x-axis-status`` (a status the router forwarded for an agency that moved, a router of an earlier
    version)."""
    st = envelope.from_element(parse_untrusted(body, max_bytes=max_bytes))
    if not isinstance(st, envelope.StatusMessage):
        raise Refusal(Reason.SCHEMA_INVALID, "a document was delivered as a status")
    return StatusFields.of(st)


def arrival_statuses(msg: envelope.DocumentMessage, rows: list[tuple[str, float]],
                     meta: dict[str, Any]) -> list[bundle.Item]:
    """Status 01s, one per (recipient, inbox row time) — the row's time makes a re-send identical: each the XML
    envelope and, in its meta (with ``meta``), the same fields as ``x-axis-status``, which the router routes it by
    without parsing the XML (:func:`axis.router.core.server_fields`)."""
    items = []
    for agency, at in rows:
        st = envelope.new_status(agency, msg, "01", "arrived", timestamp=datetime.fromtimestamp(int(at), UTC))
        items.append(bundle.Item(envelope.build(st), {**meta, **StatusFields.of(st).header()}))
    return items


class DeliveryConsumer:
    """Consumes ``axis.server.<id>``. ``view`` returns the server's current :class:`LocalView` (a hot reload swaps
    it); ``check`` fully checks a delivered document's exact bytes (the message and their hex SHA-256);
    ``publish`` publishes to ``axis.submit`` (confirmed) as this server."""

    def __init__(self, *, view: Callable[[], LocalView], store: InboxStore,
                 publish: Callable[[Outgoing], Awaitable[None]],
                 check: Callable[[bytes], Awaitable[tuple[envelope.DocumentMessage, str]]], metrics: Metrics,
                 check_blob: Callable[[BlobRef], Awaitable[tuple[envelope.DocumentMessage, str]]] | None = None,
                 send_statuses: Callable[[list[bundle.Item]], Awaitable[None]] | None = None) -> None:
        self.view = view
        self.store = store
        self.publish = publish
        self.check = check
        #: a document by reference (big documents, endpoints.bigdoc): the full check of the blob's bytes
        self.check_blob = check_blob
        self.metrics = metrics
        # one bundle per logical server (the router authenticates a bundle as a whole, its publishing server) —
        # unless the host's link bundles the statuses of all its servers (endpoints.link; ``send_statuses``)
        self.statuses: Coalescer[bundle.Item] = Coalescer(self._publish_statuses, inflight=1,
                                                          linger=STATUS_LINGER_SECONDS)
        #: hands status 01s to the router; returns once the message holding them is confirmed
        self.send_statuses = send_statuses or self.statuses.send

    @property
    def server_id(self) -> str:
        return self.view().server_id

    async def _publish_statuses(self, items: list[bundle.Item]) -> None:
        await self.publish(submission(bundle.pack(items), self.server_id, KIND_STATUS_BUNDLE))

    async def __call__(self, message: IncomingMessage) -> None:
        headers = message.headers or {}
        kind = header_text(headers.get(H_KIND))
        try:
            if kind == KIND_DOCUMENT:
                await self.send_statuses(await self._document(message.body, headers))
            elif kind == KIND_STATUS:
                await self._status(message.body, headers)
            elif kind in (KIND_DOCUMENT_BUNDLE, KIND_STATUS_BUNDLE):
                await self._bundle(message.body, kind, headers)
            elif kind == KIND_REFUSAL:
                await self._refusal(message.body, headers)
            else:
                raise Refusal(Reason.SCHEMA_INVALID, f"unknown delivery kind {kind!r}")
        except Refusal as refusal:
            # Never expected (the router checked): keep the evidence in the dead letters, never drop silently.
            # An endpoint server may not publish to axis.dlx (least privilege): rejecting hands the message to its
            # queue's dead-letter exchange (axis.dead, RabbitMQ's x-death header says from which queue); the
            # reason is in this log line.
            log.error("server %s refused a delivery (message %s), dead-lettered: %s %s", self.server_id,
                      message.message_id, refusal.reason.value, refusal.detail)
            try:
                await message.reject(requeue=False)
            except Exception:
                log.exception("dead-lettering failed; the message stays unacked and comes back")
            return
        except Exception:
            # Not a refusal: the broker link or the store failed for a moment. Requeue, but only after a pause: a
            # quorum queue dead-letters a message returned DELIVERY_LIMIT times, and an immediate requeue while
            # the publishing channel recovers would spend those tries in milliseconds.
            log.exception("server %s: delivery failed; message requeued in %.0f s", self.server_id, REQUEUE_PAUSE)
            await asyncio.sleep(REQUEUE_PAUSE)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()

    async def _forward(self, body: bytes, kind: str, headers: Any, codes: tuple[str, ...]) -> None:
        """Hand a delivery for agencies that moved to another server (config change) back to the router, which
        re-routes it (:mod:`axis.router.forward`) — an endpoint server may publish only to axis.submit. Confirmed
        before the caller acks, so nothing is lost."""
        if not codes:
            return
        await self.publish(submission(body, self.server_id, KIND_FORWARD, **{
            H_FORWARD_KIND: kind, H_RECIPIENTS: list(codes), H_BOUNCES: header_text(headers.get(H_BOUNCES)) or "0",
            # a big document by reference: the router routes it again from the blob (axis.router.blobs)
            **({H_BLOB: header_text(headers[H_BLOB])} if H_BLOB in headers else {})}))
        log.info("server %s forwarded a delivery for %s", self.server_id, list(codes))

    async def _document(self, body: bytes, headers: Any) -> list[bundle.Item]:
        """Check, store (once per recipient), and return the status 01s to send back for one delivery."""
        view = self.view()
        placed = decide_delivery(view, header_codes(headers.get(H_RECIPIENTS)))
        await self._forward(body, KIND_DOCUMENT, headers, placed.forward)
        if not placed.store:
            if placed.refusal is not None:
                raise placed.refusal
            return []
        ref = blob_of(headers)
        if ref is not None and self.check_blob is None:
            raise Refusal(Reason.TOO_LARGE, "a document by reference, and this server takes no big documents")
        msg, digest = await (self.check(body) if ref is None or self.check_blob is None else self.check_blob(ref))
        mine = decide_delivery(view, placed.store, {r.organ_id for r in msg.recipients})  # only whom it names
        if mine.refusal is not None:
            raise mine.refusal
        doc_type = int(msg.business.doc_type)
        related = (msg.business.document_id or None) if doc_type else None
        answers = envelope.response_for(msg)  # kept for its statuses: sending one then parses nothing
        rows = await self.store.store_received(
            mine.store, sender=msg.sender.organ_id, document_id=msg.document_id, doc_type=doc_type,
            related_document_id=related, subject=msg.subject, data=body if ref is None else ref.stored,
            head=ReceivedHead.of(digest, answers.code, answers.promulgation_date))
        for row in rows:
            if row.new:
                self.metrics.received.labels(row.agency).inc()
        # small status envelopes built from the model already read: no thread hop, whatever the document's size;
        # the digest of the exact bytes stored: the router logs it in the ``stored`` leaf (the sender's receipt)
        return arrival_statuses(msg, [(row.agency, row.received_at) for row in rows],
                                {H_DOC_TYPE: doc_type, H_SHA256: digest})

    async def _status(self, body: bytes, headers: Any) -> None:
        view = self.view()
        st = status_fields(headers) or read_status(body, view.max_bytes)
        owner, reporter, document_id = st.owner, st.reporter, st.document_id
        owner = view.directory.current_code(owner)  # a document sent before the owner's code changed
        placed = decide_delivery(view, [owner])
        await self._forward(body, KIND_STATUS, headers, placed.forward)
        if placed.refusal is not None:
            raise placed.refusal
        if not placed.store:
            return
        refusal = status_refusal(view, reporter, owner, document_id,
                                 await self.store.sent_recipients(owner, document_id))
        if refusal is not None:
            raise refusal
        await self.store.store_status(owner, document_id=document_id, from_code=reporter, code=st.code,
                                      description=st.description, timestamp=st.timestamp)
        self.metrics.statuses.labels(owner, st.code).inc()

    async def _bundle(self, body: bytes, kind: str, headers: Any) -> None:
        """Every item of a bundle the router packed and checked: documents (each item with its own delivery
        headers; their 01s then go back in one status bundle, confirmed) or statuses. The good items are stored
        even if one is refused; a refused item (never expected) makes the whole bundle go to the dead letters
        (rejected: an endpoint server may not publish to axis.dlx) after the others were stored and their 01s
        sent — both idempotent; the log names the item. Any other failure requeues the bundle whole."""
        items = bundle.unpack(body)  # bad framing: the whole message is dead-lettered
        # all at once: their inbox writes reach the store in one event-loop turn and commit together
        results = await asyncio.gather(*(self._document(item.body, item.meta) if kind == KIND_DOCUMENT_BUNDLE
                                         else self._status(item.body, item.meta) for item in items),
                                       return_exceptions=True)
        refused: list[tuple[int, Refusal]] = []
        arrived: list[bundle.Item] = []
        for i, result in enumerate(results):
            if isinstance(result, Refusal):
                log.error("server %s refused item %d of a %s: %s", self.server_id, i, kind, result)
                refused.append((i, result))
            elif isinstance(result, BaseException):
                raise result  # not a refusal (the store, the broker): the whole bundle is requeued
            elif result:
                arrived += result
        await self.send_statuses(arrived)  # returns once the bundle holding them is confirmed
        if refused:
            raise Refusal(refused[0][1].reason,
                          "; ".join(f"item {i}: {r.reason.value} {r.detail}" for i, r in refused)[:1000])

    async def _submitted_here(self, view: LocalView, owner: str, info: dict[str, Any]) -> bool:
        """True when this server submitted exactly the refused bytes (``info["sha256"]``) for its agency
        ``owner`` under that DocumentId: then the refusal is about that agency's own submission."""
        if owner not in view.agencies:
            return False
        rows = await self.store.sent_documents(owner, str(info.get("document_id") or ""))
        return any(stored_sha256(row.data) == info.get("sha256") for row in rows)

    async def _refusal(self, body: bytes, headers: Any) -> None:
        try:
            info = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refusal(Reason.XML_MALFORMED, "refusal body is not JSON") from None
        if not isinstance(info, dict):
            raise Refusal(Reason.XML_MALFORMED, "refusal body is not a JSON object")
        view = self.view()
        owner = str(info.get("sender") or "")
        reason = str(info.get("reason") or "")
        detail = str(info.get("detail") or "")
        if info.get("verified") is False and not await self._submitted_here(view, owner, info):
            # nobody proved who sent the refused bytes, and this server did not submit them for that agency: no
            # agency's document statuses change (one agency cannot make another's document look refused)
            log.warning("server %s: the axis refused a message published by this server, not one of its agencies' "
                        "submissions: %s %s", self.server_id, reason, detail)
            self.metrics.unverified_refusals.labels(reason).inc()
            return
        placed = decide_delivery(view, [owner])
        await self._forward(body, KIND_REFUSAL, headers, placed.forward)
        if placed.refusal is not None:
            raise placed.refusal
        if not placed.store:
            return
        await self.store.store_status(
            owner, document_id=str(info.get("document_id") or ""), from_code=AXIS_FROM, code="02",
            description=f"{reason}: {detail}" if detail else reason,
            timestamp=str(info.get("timestamp") or envelope.format_timestamp(datetime.now(UTC))), reason=reason)
        self.metrics.statuses.labels(owner, "02").inc()
