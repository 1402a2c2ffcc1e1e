"""The router's decisions for one message, without I/O: what to publish and what to count.

``RouterCore.process(body, headers, message_id)`` returns an :class:`Outcome`; the aio-pika shell
(:mod:`axis.router.service`) publishes ``outcome.outgoing`` (confirmed), records the counts, then acks.

Documents: hardened parse and signature (one shared Verifier, one parse) → schema → directory (sender known,
signer is the sender) → one delivery per recipient server carrying the ORIGINAL bytes.
Unknown recipients do not block the others; the sender's server gets a refusal (status 02, UNKNOWN_RECIPIENT)
naming them.

Statuses: hardened parse → schema → the publishing server must host the reporting agency (``x-axis-server``,
which the service sets from the broker-validated AMQP ``user_id`` when components have their own users) →
back to the server of ``ResponseFor/OrganId``. A status 01 is the recipient server's proof that the inbox row
is committed: it is counted as ``Delivered``.

Status bundles (``status-bundle``, :mod:`axis.core.bundle`): each item is handled as the single status it stands for,
with the bundle's ``x-axis-server`` (items cannot name another; a host process's bundle names one per item, among
the servers its broker user proves: :mod:`endpoints.link`) and its own ``x-axis-doc-type`` (message id
``<bundle id>#<index>``): an item that fails is refused alone. Document bundles a server's door submitted
(``document-bundle``) likewise: each item decided as the single document it is (:meth:`RouterCore._bundle`).
:func:`coalesce` then packs the statuses, and the documents, of a whole batch bound for one server into bundles.

Refused messages go to the dead-letter exchange with ``x-axis-reason``/``x-axis-detail`` headers, and a refusal
(status 02 with the reason) goes back to whoever can be told truthfully:

- a document whose signature verified as its sender's (refused later: too many recipients, unknown recipients)
  → the sender's server, about the sender's document, counted against the sender;
- anything else (bad XML, a missing or bad signature, another agency's signature, an unknown sender): nobody
  proved who sent it, so the refusal goes to the endpoint server that published it (``x-axis-server``, the
  broker-checked publisher), marked ``"verified": false`` with the SHA-256 of the refused bytes, and is counted
  against that server, never against the sender it claims: an unsigned document re-using another agency's
  DocumentId touches neither that agency's statuses nor its counters (:mod:`endpoints.delivery` stores it as a
  status only when that server itself submitted those exact bytes).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from lxml import etree

from axis.core import bundle, envelope, schema
from axis.core.bundle import BUNDLE_BYTES, BUNDLE_DOCUMENT_BYTES
from axis.core.deadletters import H_DEAD_AT
from axis.core.directory import Directory
from axis.core.evidence import Event
from axis.core.reasons import Reason, Refusal
from axis.core.routing import (
    DEFAULT_MAX_RECIPIENTS,
    MAX_DOCUMENT_ID,
    check_document_id,
    check_limits,
    document_key,
    missing_recipients,
    route_document,
    route_status,
)
from axis.core.verify import Verifier
from axis.core.wire import (
    EX_DELIVER,
    EX_DLX,
    H_BOUNCES,
    H_DETAIL,
    H_DOC_TYPE,
    H_DOCUMENT_ID,
    H_HOST_SERVERS,
    H_KIND,
    H_REASON,
    H_RECIPIENTS,
    H_SENDER,
    H_SERVER,
    H_SHA256,
    H_STATUS,
    H_SUBMITTED_AT,
    H_UNKNOWN,
    KIND_DOCUMENT,
    KIND_DOCUMENT_BUNDLE,
    KIND_FORWARD,
    KIND_REFUSAL,
    KIND_STATUS,
    KIND_STATUS_BUNDLE,
    Outgoing,
    StatusFields,
    header_text,
    status_fields,
)
from axis.core.xmlsafe import parse_untrusted
from axis.router.forward import forward
from axis.stats.records import Accepted, Delivered, Refused


@dataclass(slots=True)
class Outcome:
    outgoing: list[Outgoing] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    reason: Reason | None = None  # set when the message was refused
    items: int = 1  # submissions the message carried (a status bundle: its statuses)
    events: list[Event] = field(default_factory=list)  # for the evidence log (published with the outgoing)


def refusal_body(reason: Reason, detail: str, *, sender: str | None, document_id: str | None,
                 unknown: tuple[str, ...] = (), verified: bool = True, sha256: str | None = None) -> bytes:
    """The JSON body of a refusal (status 02 from the axis) delivered to an endpoint server. ``verified`` False:
    ``sender`` and ``document_id`` are only what the refused bytes claim (``sha256`` is their digest)."""
    return orjson.dumps({"code": "02", "reason": reason.value, "detail": detail, "sender": sender,
                         "document_id": document_id, "unknown": list(unknown), "verified": verified,
                         "sha256": sha256, "timestamp": envelope.format_timestamp(datetime.now(UTC))})


#: a submission's ``x-axis-submitted-at`` (set by the publishing endpoint server) is believed only within this
#: window: later than the router's clock by more than the skew, or older than the cap, it is not a latency
LATENCY_SKEW_MS = 5_000
LATENCY_CAP_MS = 24 * 3600 * 1000


def _claimed(root: etree._Element | None) -> tuple[str | None, str | None]:
    """Best-effort (sender, DocumentId) from an element that failed a check — only to address the refusal."""
    if root is None:
        return None, None
    try:
        msg = envelope.from_element(root)
    except Exception:
        return None, None
    if isinstance(msg, envelope.StatusMessage):
        return msg.sender.organ_id, msg.response_for.document_id
    return msg.sender.organ_id, msg.document_id


#: what an item of a bundle may state in its meta, by the kind of its items (the rest is the bundle's)
BUNDLE_ITEM_META = {KIND_STATUS: (H_DOC_TYPE, H_SHA256, H_STATUS), KIND_DOCUMENT: (H_SUBMITTED_AT,)}


class RouterCore:
    """Stateless per message; one instance (one Verifier, one Directory) serves every message of a process."""

    def __init__(self, directory: Directory, verifier: Verifier, *, max_bytes: int,
                 max_recipients: int = DEFAULT_MAX_RECIPIENTS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.directory = directory
        self.verifier = verifier
        self.max_bytes = max_bytes
        self.max_recipients = max_recipients
        self.clock = clock

    def process(self, body: bytes, headers: Mapping[str, Any], message_id: str) -> Outcome:
        kind = header_text(headers.get(H_KIND)) or KIND_DOCUMENT
        root = None
        if kind == KIND_STATUS_BUNDLE:
            return self._bundle(body, headers, message_id, KIND_STATUS)
        if kind == KIND_DOCUMENT_BUNDLE:
            return self._bundle(body, headers, message_id, KIND_DOCUMENT)
        try:
            if kind == KIND_STATUS:
                stated = server_fields(headers)
                if stated is not None:  # a status as the server that built it states it: no XML to parse
                    return self._route_status(stated, body, headers)
                root = parse_untrusted(body, max_bytes=self.max_bytes)
                schema.validate(root)
                return self._status(root, body, headers)
            if kind == KIND_FORWARD:  # a delivery for an agency that moved, handed back (axis.router.forward)
                return Outcome(outgoing=forward(self.directory, self.verifier, self.max_bytes, body, headers))
            if kind != KIND_DOCUMENT:
                raise Refusal(Reason.SCHEMA_INVALID, f"unknown submission kind {kind!r}")
            return self._document(body, headers, message_id)
        except Refusal as refusal:
            return self._refuse(refusal, body, headers, message_id, notify=kind not in (KIND_STATUS, KIND_FORWARD),
                                root=root)

    # -- documents ---------------------------------------------------------------------------------------------
    def _document(self, body: bytes, headers: Mapping[str, Any], message_id: str) -> Outcome:
        verified = self.verifier.verify(body)  # the one parse (hardened) of the bytes, then the signature
        schema.validate(verified.root)
        msg = envelope.from_element(verified.root)  # read only from the verified bytes
        if not isinstance(msg, envelope.DocumentMessage):
            raise Refusal(Reason.SCHEMA_INVALID, "a status message was submitted as a document")
        sender = msg.sender.organ_id
        if verified.signer != sender:
            raise Refusal(Reason.SIGNER_MISMATCH, f"signed by {verified.signer}, sent as {sender}")
        if sender not in self.directory:
            raise Refusal(Reason.UNKNOWN_SENDER, f"{sender} is not in the directory")
        try:  # from here on the sender is proven: a refusal goes to it, about its document
            check_limits(msg, self.max_recipients)
            return self._route(msg, body, headers)
        except Refusal as refusal:
            return self._refuse(refusal, body, headers, message_id, notify=True,
                                proven=(sender, msg.document_id, _doc_type(msg)))

    def _route(self, msg: envelope.DocumentMessage, body: bytes, headers: Mapping[str, Any]) -> Outcome:
        sender = msg.sender.organ_id
        route = route_document(self.directory, sender, [r.organ_id for r in msg.recipients])
        doc_type = _doc_type(msg)
        now = self.clock()
        base = {H_SENDER: sender, H_DOCUMENT_ID: msg.document_id, H_DOC_TYPE: doc_type}
        out = Outcome()
        digest = hashlib.sha256(body).hexdigest()
        latency = _latency_ms(headers, now)
        now_ms = int(now.timestamp() * 1000)
        # accepted at its endpoint server (when that server said so plausibly), then routed here
        out.events += [Event("submitted", now_ms - int(latency), sender, msg.document_id, doc_type, digest,
                             server=header_text(headers.get(H_SERVER)) or None),
                       Event("routed", now_ms, sender, msg.document_id, doc_type, digest)]
        for d in route.deliveries:
            out.outgoing.append(Outgoing(EX_DELIVER, d.server.id, body,
                                         {H_KIND: KIND_DOCUMENT, H_RECIPIENTS: list(d.recipients), **base}))
        if route.unknown or route.retired:  # retired agencies are in the directory, but receive nothing more
            detail = missing_recipients(route.unknown, route.retired)
            missing = (*route.unknown, *route.retired)
            out.outgoing.append(Outgoing(
                EX_DELIVER, route.sender_server.id,
                refusal_body(Reason.UNKNOWN_RECIPIENT, detail, sender=sender, document_id=msg.document_id,
                             unknown=missing),
                {H_KIND: KIND_REFUSAL, H_REASON: Reason.UNKNOWN_RECIPIENT.value, H_DETAIL: detail,
                 H_UNKNOWN: list(missing), **base},
                content_type="application/json"))
        out.accepted.append(Accepted(
            key=document_key(sender, msg.document_id, doc_type), sender=sender, sender_kind=route.sender_server.kind,
            document_id=msg.document_id, doc_type=doc_type, size=len(body), recipients=route.known_recipients,
            latency_ms=latency, at=now))
        return out

    # -- statuses ----------------------------------------------------------------------------------------------
    def _status(self, root: etree._Element, body: bytes, headers: Mapping[str, Any]) -> Outcome:
        st = envelope.from_element(root)
        if not isinstance(st, envelope.StatusMessage):
            raise Refusal(Reason.SCHEMA_INVALID, "a document was submitted as a status")
        return self._route_status(StatusFields.of(st), body, headers)

    def _route_status(self, fields: StatusFields, body: bytes, headers: Mapping[str, Any]) -> Outcome:
        """Route a status read from its XML or taken from the ``x-axis-status`` of the server that built it
        (:func:`server_fields`): authenticated, routed, logged and counted alike."""
        reporter, original, doc_id = fields.reporter, fields.owner, fields.document_id
        route = route_status(self.directory, reporter, original, header_text(headers.get(H_SERVER)) or None)
        check_document_id(doc_id, "ResponseFor/DocumentId")
        out = Outcome()
        out.outgoing.append(Outgoing(EX_DELIVER, route.server.id, body,
                                     {H_KIND: KIND_STATUS, H_SENDER: reporter, H_DOCUMENT_ID: doc_id,
                                      **fields.header()}))
        doc_type = _int(headers.get(H_DOC_TYPE))
        at = int(self.clock().timestamp() * 1000)
        digest = _hex_digest(headers.get(H_SHA256))
        if fields.code == "01":  # the recipient's inbox committed it: stored, then the status itself
            out.events.append(Event("stored", at, original, doc_id, doc_type, digest, agency=reporter))
        out.events.append(Event("status", at, original, doc_id, doc_type, digest, agency=reporter,
                                code=fields.code))
        if fields.code == "01":
            out.delivered.append(Delivered(
                key=document_key(original, doc_id, doc_type), sender=original, sender_kind=route.server.kind,
                recipient=reporter, recipient_kind=self.directory.servers[route.reporter.server].kind,
                document_id=doc_id, at=self.clock()))
        return out

    def _bundle(self, body: bytes, headers: Mapping[str, Any], message_id: str, kind: str) -> Outcome:
        """A bundle's items, each decided exactly as the single message of ``kind`` it stands for (a status, or a
        document a server's door submitted with others: :meth:`endpoints.server.EndpointServer.submit`), message id
        ``<bundle id>#<index>``, so an item that fails is refused alone. The publishing server is the bundle's
        authenticated one — nothing in an item can change it — and an item's meta brings only what
        :data:`BUNDLE_ITEM_META` allows for its kind. A host process's bundle (``x-axis-host-servers``, which the
        service sets only for the host's own broker user: :mod:`endpoints.link`) has no server of its own: each
        item names its server, which must be one of the host's (else the item alone is refused, FORBIDDEN). A
        bundle whose framing is bad is refused whole."""
        try:
            items = bundle.unpack(body)
        except Refusal as refusal:
            return self._refuse(refusal, body, headers, message_id, notify=False)
        server = header_text(headers.get(H_SERVER))
        host = headers.get(H_HOST_SERVERS)  # set by the service only from the host's own broker user
        out = Outcome(items=len(items))
        for i, item in enumerate(items):
            item_server = server or (header_text(item.meta.get(H_SERVER)) if host else None)
            if host and not server and item_server not in host:
                one = self._refuse(Refusal(Reason.FORBIDDEN, f"a bundle item names server {item_server!r}, not one "
                                                             "of the servers its host's broker user serves"),
                                   item.body, {H_KIND: kind}, f"{message_id}#{i}", notify=False)
            else:
                one = self.process(item.body, {H_KIND: kind, H_SERVER: item_server,
                                               **{h: item.meta.get(h) for h in BUNDLE_ITEM_META[kind]}},
                                   f"{message_id}#{i}")
            out.outgoing += one.outgoing
            out.accepted += one.accepted
            out.delivered += one.delivered
            out.refused += one.refused
            out.events += one.events
        return out

    # -- refusals ----------------------------------------------------------------------------------------------
    def _refuse(self, refusal: Refusal, body: bytes, headers: Mapping[str, Any], message_id: str, *, notify: bool,
                proven: tuple[str, str, int] | None = None, root: etree._Element | None = None) -> Outcome:
        """Dead-letter the message; with ``notify``, tell its sender (``proven``: the verified sender and its
        DocumentId) or else the endpoint server that published it (what the bytes claim, marked unverified)."""
        server_id = header_text(headers.get(H_SERVER))
        sender: str | None
        document_id: str | None
        if proven is not None:
            sender, document_id, _ = proven
        else:
            if root is None:  # refused while parsing or verifying: what the bytes claim, for the dead letter only
                try:
                    root = parse_untrusted(body, max_bytes=self.max_bytes)
                except Refusal:
                    root = None
            sender, document_id = _claimed(root)
        detail = refusal.detail[:1000]
        at = self.clock()
        dead_headers = {H_REASON: refusal.reason.value, H_DETAIL: detail, H_SERVER: server_id,
                        H_KIND: header_text(headers.get(H_KIND)), H_DEAD_AT: int(at.timestamp() * 1000)}
        if sender:
            dead_headers[H_SENDER] = sender
        if document_id:
            dead_headers[H_DOCUMENT_ID] = document_id
        out = Outcome(reason=refusal.reason)
        out.outgoing.append(Outgoing(EX_DLX, "", body, dead_headers, message_id=message_id,
                                     content_type="application/octet-stream"))
        tell = (self.directory.server_of(proven[0]) if proven is not None
                else self.directory.servers.get(server_id) if server_id else None)
        if notify and tell is not None:
            out.outgoing.append(Outgoing(
                EX_DELIVER, tell.id,
                refusal_body(refusal.reason, refusal.detail, sender=sender, document_id=document_id,
                             verified=proven is not None,
                             sha256=None if proven is not None else hashlib.sha256(body).hexdigest()),
                {H_KIND: KIND_REFUSAL, H_REASON: refusal.reason.value, H_DETAIL: detail,
                 H_SENDER: sender or "", H_DOCUMENT_ID: document_id or ""},
                content_type="application/json"))
        # counted against the proven sender, else against the publishing server (never the claimed sender)
        out.refused.append(Refused(message_id=message_id, sender=sender if proven is not None else None,
                                   reason=refusal.reason.value, size=len(body), at=at,
                                   server=None if proven is not None else server_id or None))
        # the log names a sender and a document only when the signature proved them (a claim is not a fact)
        out.events.append(Event(
            "refused", int(at.timestamp() * 1000), proven[0] if proven else "",
            proven[1] if proven and len(proven[1]) <= MAX_DOCUMENT_ID else "",
            proven[2] if proven else 0, hashlib.sha256(body).hexdigest(), reason=refusal.reason.value,
            server=None if proven is not None else server_id or None, ref=message_id))
        return out


def is_status_delivery(o: Outgoing) -> bool:
    """A status on its way to the server of the agency it reports to (what :func:`coalesce` bundles per server)."""
    return o.exchange == EX_DELIVER and o.headers.get(H_KIND) == KIND_STATUS and H_BOUNCES not in o.headers


def coalesce(outgoing: list[Outgoing], *, max_items: int = 1000) -> list[Outgoing]:
    """The same messages, fewer of them: the statuses bound for one server packed into one ``status-bundle``,
    the documents bound for one server into ``document-bundle``s (each item keeps its own delivery headers as
    its meta; at most :data:`BUNDLE_BYTES` of documents each; none over :data:`BUNDLE_DOCUMENT_BYTES`), in
    order. A lone status or document stays a plain message. Everything else is returned untouched, in order,
    first — also a delivery that bounces back to its server during a live move (its ``x-axis-bounces`` header
    must travel)."""
    statuses: dict[str, list[Outgoing]] = {}
    documents: dict[str, list[Outgoing]] = {}
    rest: list[Outgoing] = []
    for o in outgoing:
        if is_status_delivery(o):
            statuses.setdefault(o.routing_key, []).append(o)
        elif o.exchange != EX_DELIVER or H_BOUNCES in o.headers:
            rest.append(o)
        elif o.headers.get(H_KIND) == KIND_DOCUMENT and len(o.body) <= BUNDLE_DOCUMENT_BYTES:
            documents.setdefault(o.routing_key, []).append(o)
        else:
            rest.append(o)
    for server_id, group in statuses.items():
        for start in range(0, len(group), max_items):
            chunk = group[start:start + max_items]
            if len(chunk) == 1:
                rest.append(chunk[0])
            else:
                # each item keeps its delivery headers (the status's fields, x-axis-status) as its meta
                packed = bundle.pack([bundle.Item(o.body, o.headers) for o in chunk])
                rest.append(Outgoing(EX_DELIVER, server_id, packed, {H_KIND: KIND_STATUS_BUNDLE},
                                     content_type="application/octet-stream"))
    for server_id, group in documents.items():
        batch: list[Outgoing] = []
        size = 0
        for nxt in [*group, None]:
            if batch and (nxt is None or size + len(nxt.body) > BUNDLE_BYTES or len(batch) == max_items):
                rest.append(batch[0] if len(batch) == 1 else Outgoing(
                    EX_DELIVER, server_id, bundle.pack([bundle.Item(b.body, b.headers) for b in batch]),
                    {H_KIND: KIND_DOCUMENT_BUNDLE}, content_type="application/octet-stream"))
                batch, size = [], 0
            if nxt is not None:
                batch.append(nxt)
                size += len(nxt.body)
    return rest


def _doc_type(msg: envelope.DocumentMessage) -> int:
    return int(msg.business.doc_type) if msg.business is not None else 0


_HEX64 = re.compile(r"[0-9a-f]{64}")
#: ``yyyy/MM/dd HH:mm:ss``, the schema's TimestampType
_TIMESTAMP = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}")
#: the longest Description a status taken from its server's fields may carry (longer ones are read from the XML)
STATED_DESCRIPTION_CHARS = 200


def server_fields(headers: Mapping[str, Any]) -> StatusFields | None:
    """The fields of a status as the endpoint server that built it states them (``x-axis-status``, next to the XML
    it built from the same values: the 01 of every delivery, and the statuses agencies send through ``POST
    /v1/documents/{id}/status``), when they are what a status may be: a code of the schema, a timestamp of the
    schema's form, a short description. The router then routes it from them without parsing the XML — as for any
    status, the publishing server must host the reporter, both agencies must be in the directory and the
    DocumentId is bounded (:meth:`RouterCore._route_status`). Statuses are unsigned, so the XML would prove nothing
    more: a server that lied in its fields could as well have built that lie in XML, and only about the agencies it
    hosts. Anything else (a status from a server of an earlier version, a long description, odd values) is None:
    parsed and validated from its XML."""
    fields = status_fields(headers)
    if (fields is None or fields.code not in envelope.STATUS_CODES or not _TIMESTAMP.fullmatch(fields.timestamp)
            or len(fields.description) > STATED_DESCRIPTION_CHARS or not fields.owner or not fields.reporter):
        return None
    return fields


def _hex_digest(value: object) -> str:
    """A SHA-256 hex digest from a header ("" when absent or not one: the log's field must be exactly that)."""
    text = header_text(value).lower()
    return text if _HEX64.fullmatch(text) else ""


def _int(value: object) -> int:
    try:
        return int(header_text(value) or 0)
    except ValueError:
        return 0


def _latency_ms(headers: Mapping[str, Any], now: datetime) -> float:
    """Milliseconds from the endpoint server's publish to now, by the router's clock; a value outside
    [-:data:`LATENCY_SKEW_MS`, :data:`LATENCY_CAP_MS`] is not believed (0: a forged or broken header must not
    poison the latency figures), a small negative one (clock skew) counts as 0."""
    try:
        submitted = float(header_text(headers.get(H_SUBMITTED_AT)) or 0)
    except ValueError:
        return 0.0
    if not submitted > 0:  # also NaN
        return 0.0
    latency = now.timestamp() * 1000 - submitted
    if not -LATENCY_SKEW_MS <= latency <= LATENCY_CAP_MS:
        return 0.0
    return max(0.0, latency)
