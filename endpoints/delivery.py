"""The endpoint server's delivery consumer: ``axis.server.<id>`` → inbox store → status 01 → ack.

Order matters (at-least-once, never lose, never double count):
1. documents are re-verified here (every recipient checks the signer's signature on the exact bytes; a host
   process remembers what it verified, by digest, for the other servers it hosts: :class:`DeliveryChecks`),
2. the inbox rows are committed (unique per recipient, sender, DocumentId, BussinessDocType),
3. a status 01 per recipient goes back through ``axis.submit`` and is confirmed — the router counts it as a
   delivery; its timestamp is the inbox row's, so a redelivery re-sends an identical status (stored once).
   The statuses of deliveries committed while a previous bundle is being confirmed travel together in one
   ``status-bundle`` message (:class:`axis.broker.transport.Coalescer`, :mod:`axis.core.bundle`), one coalescer per
   logical
   server (a bundle is authenticated as a whole, as its publishing server),
4. only then is the message acked. A crash anywhere before 4 means redelivery, which changes nothing stored.

The router packs the deliveries of one batch bound for one server into a ``document-bundle``: its items are
handled one by one exactly as single deliveries, their 01s leave together and the bundle is acked once.

Statuses and refusals (status 02 from the axis) about documents this server's agencies sent are stored for
``GET /v1/documents/{id}/status``; a ``status-bundle`` is stored item by item. An item refused here (never
expected: the router checked it) sends the whole bundle to the dead letters after the others were stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import threading
import weakref
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from axis.broker.transport import Coalescer, IncomingMessage
from axis.core import bundle, envelope, schema
from axis.core.reasons import Reason, Refusal
from axis.core.verify import CertFacts, check_time_revocation_usage
from axis.core.wire import (
    H_BOUNCES,
    H_DOC_TYPE,
    H_FORWARD_KIND,
    H_KIND,
    H_RECIPIENTS,
    KIND_DOCUMENT,
    KIND_DOCUMENT_BUNDLE,
    KIND_FORWARD,
    KIND_REFUSAL,
    KIND_STATUS,
    KIND_STATUS_BUNDLE,
    header_codes,
    header_text,
    submission,
)
from axis.core.xmlsafe import parse_untrusted
from endpoints.cpu import run_cpu_for

if TYPE_CHECKING:
    from endpoints.server import EndpointServer

log = logging.getLogger("axis.endpoint")
#: seconds before a delivery that failed for a non-refusal reason goes back to its queue
REQUEUE_PAUSE = 2.0
AXIS_FROM = "axis"  # "from" of statuses the axis itself issues (refusals)


def check_delivery(verifier: Any, body: bytes) -> envelope.DocumentMessage:
    """CPU part of a delivery (run in the CPU pool): full signature check of the exact bytes, schema, model."""
    msg = checks_for(verifier).check(body)
    if not isinstance(msg, envelope.DocumentMessage):
        raise Refusal(Reason.SCHEMA_INVALID, "a status was delivered as a document")
    return msg


class DeliveryChecks:
    """The signed-document checks of one host process, remembered by the SHA-256 of the exact bytes.

    A document fanned out to several servers of one host process reaches it once per server, and a document
    submitted through a server of this process may come back to another: the same bytes, checked against the
    same policy. Everything the check decides is a function of those bytes and the policy
    (well-formedness, profile, digest and signature value, chain, signer, schema) except the certificate's
    validity window, the CRL and the key usage at this moment: those are checked again at every delivery
    (:func:`axis.core.verify.check_time_revocation_usage`). The cache belongs to one :class:`~axis.core.verify.Verifier`
    (its trust anchors and CRLs): a reload makes a new verifier, hence an empty cache. Only successes are kept
    (a refusal is never expected here), without attachment data (the delivery stores the exact bytes), at most
    ``size`` entries. Thread-safe: large documents are checked in the CPU pool.
    """

    def __init__(self, verifier: Any, size: int = 1024) -> None:
        self.verifier = verifier
        self.size = size
        self._done: OrderedDict[bytes, tuple[envelope.Message, CertFacts | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def check(self, body: bytes) -> envelope.Message:
        """The message of a signed envelope that passes the full check (else Refusal, never remembered)."""
        key = hashlib.sha256(body).digest()
        with self._lock:
            done = self._done.get(key)
            if done is not None:
                self._done.move_to_end(key)
        if done is not None:
            msg, facts = done
            if facts is not None:  # the moment-dependent part of the certificate check, again
                check_time_revocation_usage(facts, self.verifier.policy.clock(), self.verifier.revoked)
            self.hits += 1
            return msg
        verified, facts = self.verifier.verify_with_facts(body)
        schema.validate(verified.root)
        msg = envelope.from_element(verified.root)
        kept = dataclasses.replace(msg, attachments=()) if isinstance(msg, envelope.DocumentMessage) else msg
        with self._lock:
            self._done[key] = (kept, facts)
            if len(self._done) > self.size:
                self._done.popitem(last=False)
        return msg


_checks: weakref.WeakKeyDictionary[Any, DeliveryChecks] = weakref.WeakKeyDictionary()
_checks_lock = threading.Lock()


def checks_for(verifier: Any) -> DeliveryChecks:
    """The process's :class:`DeliveryChecks` for ``verifier`` (one per verifier: a reload starts afresh)."""
    with _checks_lock:
        checks = _checks.get(verifier)
        if checks is None:
            checks = _checks[verifier] = DeliveryChecks(verifier)
        return checks


def arrival_statuses(msg: envelope.DocumentMessage, rows: list[tuple[str, float]]) -> list[bytes]:
    """Status 01 envelopes, one per (recipient, inbox row time): the row's time makes a re-send identical."""
    return [envelope.build(envelope.new_status(agency, msg, "01", "arrived",
                                               timestamp=datetime.fromtimestamp(int(at), UTC)))
            for agency, at in rows]


class DeliveryConsumer:
    def __init__(self, server: EndpointServer) -> None:
        self.s = server
        # one bundle per logical server: the router authenticates a bundle as a whole (its publishing server)
        self.statuses: Coalescer[bundle.Item] = Coalescer(self._publish_statuses, inflight=1)

    async def _publish_statuses(self, items: list[bundle.Item]) -> None:
        await self.s.publisher.publish(submission(bundle.pack(items), self.s.id, KIND_STATUS_BUNDLE))

    async def __call__(self, message: IncomingMessage) -> None:
        headers = message.headers or {}
        kind = header_text(headers.get(H_KIND))
        try:
            if kind == KIND_DOCUMENT:
                await self.statuses.send(await self._document(message.body, headers))
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
            log.error("server %s refused a delivery (message %s), dead-lettered: %s %s", self.s.id,
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
            log.exception("server %s: delivery failed; message requeued in %.0f s", self.s.id, REQUEUE_PAUSE)
            await asyncio.sleep(REQUEUE_PAUSE)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()

    async def _forward(self, body: bytes, kind: str, headers: Any, codes: list[str]) -> list[str]:
        """Hand deliveries for agencies that moved to another server (config change) back to the router, which
        re-routes them (:mod:`axis.router.forward`); returns the codes still on this server."""
        directory = self.s.config.directory
        moved: dict[str, list[str]] = {}
        rest = []
        for c in codes:
            srv = directory.server_of(c)
            if c in self.s.local_agencies or srv is None or srv.id == self.s.id:
                rest.append(c)
            else:
                moved.setdefault(srv.id, []).append(c)
        if moved:
            # Through the router (an endpoint server may publish only to axis.submit): axis.router.forward checks
            # that these agencies moved away from this server and delivers to their servers; confirmed before
            # the caller acks, so nothing is lost.
            forwarded = [c for cs in moved.values() for c in cs]
            await self.s.publisher.publish(submission(body, self.s.id, KIND_FORWARD, **{
                H_FORWARD_KIND: kind, H_RECIPIENTS: forwarded, H_BOUNCES: header_text(headers.get(H_BOUNCES)) or "0"}))
            log.info("server %s forwarded a delivery for %s (now on %s)", self.s.id, forwarded, sorted(moved))
        return rest

    async def _document(self, body: bytes, headers: Any) -> list[bundle.Item]:
        """Check, store (once per recipient), and return the status 01s to send back for one delivery."""
        codes = await self._forward(body, KIND_DOCUMENT, headers, header_codes(headers.get(H_RECIPIENTS)))
        mine = [c for c in codes if c in self.s.local_agencies]
        msg = await run_cpu_for(len(body), check_delivery, self.s.verifier, body)
        addressed = {r.organ_id for r in msg.recipients}
        mine = [c for c in mine if c in addressed]  # only agencies the signed document names
        if not mine:
            raise Refusal(Reason.UNKNOWN_RECIPIENT, f"no recipient of this document is on server {self.s.id}")
        doc_type = int(msg.business.doc_type)
        related = (msg.business.document_id or None) if doc_type else None
        rows = await self.s.store.store_received(
            mine, sender=msg.sender.organ_id, document_id=msg.document_id, doc_type=doc_type,
            related_document_id=related, subject=msg.subject, data=body)
        # small status envelopes built from the model already read: no thread hop, whatever the document's size
        arrived = arrival_statuses(msg, [(row.agency, row.received_at) for row in rows])
        items = [bundle.Item(st, {H_DOC_TYPE: doc_type}) for st in arrived]
        for row in rows:
            if row.new:
                self.s.metrics.received.labels(row.agency).inc()
        return items

    async def _status(self, body: bytes, headers: Any) -> None:
        root = parse_untrusted(body, max_bytes=self.s.config.limits.max_envelope_bytes)
        st = envelope.from_element(root)
        if not isinstance(st, envelope.StatusMessage):
            raise Refusal(Reason.SCHEMA_INVALID, "a document was delivered as a status")
        owner = st.response_for.organ_id
        if not await self._forward(body, KIND_STATUS, headers, [owner]):
            return
        if owner not in self.s.local_agencies:
            raise Refusal(Reason.UNKNOWN_RECIPIENT, f"{owner} is not on server {self.s.id}")
        reporter, document_id = st.sender.organ_id, st.response_for.document_id
        recipients = await self.s.store.sent_recipients(owner, document_id)
        if reporter not in (recipients or ()) and (recipients is not None or not self._moved(owner)):
            # a status only from an agency the document was sent to (a server's leaked credential could otherwise
            # report on any document of any agency). An agency that moved servers may have sent it from its old
            # server, whose rows move after the switch (axis.ops.livemove): without the row there is nothing to check.
            raise Refusal(Reason.FORBIDDEN, f"{reporter} is not a recipient of {owner}'s document {document_id!r}")
        await self.s.store.store_status(owner, document_id=st.response_for.document_id, from_code=st.sender.organ_id,
                                        code=st.status_code, description=st.description, timestamp=st.timestamp)
        self.s.metrics.statuses.labels(owner, st.status_code).inc()

    async def _bundle(self, body: bytes, kind: str, headers: Any) -> None:
        """Every item of a bundle the router packed and checked: documents (each item with its own delivery
        headers; their 01s then go back in one status bundle, confirmed) or statuses. The good items are stored
        even if one is refused; a refused item (never expected) makes the whole bundle go to the dead letters
        (rejected: an endpoint server may not publish to axis.dlx) after the others were stored and their 01s
        sent — both idempotent; the log names the item. Any other failure requeues the bundle whole."""
        items = bundle.unpack(body)  # bad framing: the whole message is dead-lettered
        # all at once: their inbox writes reach the store in one event-loop turn and commit together
        results = await asyncio.gather(*(self._document(item.body, item.meta) if kind == KIND_DOCUMENT_BUNDLE
                                         else self._status(item.body, headers) for item in items),
                                       return_exceptions=True)
        refused: list[tuple[int, Refusal]] = []
        arrived: list[bundle.Item] = []
        for i, result in enumerate(results):
            if isinstance(result, Refusal):
                log.error("server %s refused item %d of a %s: %s", self.s.id, i, kind, result)
                refused.append((i, result))
            elif isinstance(result, BaseException):
                raise result  # not a refusal (the store, the broker): the whole bundle is requeued
            elif result:
                arrived += result
        await self.statuses.send(arrived)  # returns once the bundle holding them is confirmed
        if refused:
            raise Refusal(refused[0][1].reason,
                          "; ".join(f"item {i}: {r.reason.value} {r.detail}" for i, r in refused)[:1000])

    def _moved(self, code: str) -> bool:
        agency = self.s.config.directory.agency(code)
        return agency is not None and bool(agency.moved_from)

    async def _submitted_here(self, owner: str, info: dict[str, Any]) -> bool:
        """True when this server submitted exactly the refused bytes (``info["sha256"]``) for its agency
        ``owner`` under that DocumentId: then the refusal is about that agency's own submission."""
        if owner not in self.s.local_agencies:
            return False
        rows = await self.s.store.sent_documents(owner, str(info.get("document_id") or ""))
        return any(hashlib.sha256(row.data).hexdigest() == info.get("sha256") for row in rows)

    async def _refusal(self, body: bytes, headers: Any) -> None:
        try:
            info = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refusal(Reason.XML_MALFORMED, "refusal body is not JSON") from None
        owner = str(info.get("sender") or "")
        reason = str(info.get("reason") or "")
        detail = str(info.get("detail") or "")
        if info.get("verified") is False and not await self._submitted_here(owner, info):
            # nobody proved who sent the refused bytes, and this server did not submit them for that agency: no
            # agency's document statuses change (one agency cannot make another's document look refused)
            log.warning("server %s: the axis refused a message published by this server, not one of its agencies' "
                        "submissions: %s %s", self.s.id, reason, detail)
            self.s.metrics.unverified_refusals.labels(reason).inc()
            return
        if not await self._forward(body, KIND_REFUSAL, headers, [owner]):
            return
        if owner not in self.s.local_agencies:
            raise Refusal(Reason.UNKNOWN_RECIPIENT, f"{owner!r} is not on server {self.s.id}")
        await self.s.store.store_status(
            owner, document_id=str(info.get("document_id") or ""), from_code=AXIS_FROM, code="02",
            description=f"{reason}: {detail}" if detail else reason,
            timestamp=str(info.get("timestamp") or envelope.format_timestamp(datetime.now(UTC))), reason=reason)
        self.s.metrics.statuses.labels(owner, "02").inc()
