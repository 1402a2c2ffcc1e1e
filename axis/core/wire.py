"""The wire vocabulary of the axis: exchange, queue and header names, message kinds, the message-to-publish value
(:class:`Outgoing`) and the pure readers and bounds of header values. No broker library here: the router core and
the endpoints' decisions speak this vocabulary; :mod:`axis.broker` puts it on RabbitMQ.

Topology (declared once by the provisioning account, :mod:`axis.broker.topology`):

- exchange ``axis.submit`` (fanout)  → quorum queue ``axis.submissions``  (endpoint servers publish here)
- exchange ``axis.deliver`` (direct) → quorum queue ``axis.server.<id>`` (:func:`server_queue`), routing key ``<id>``
- exchange ``axis.dlx`` (fanout)     → quorum queue ``axis.dead``  (refusals with ``x-axis-reason``; poison
  messages that exceeded ``x-delivery-limit`` land here too, with RabbitMQ's own ``x-death`` headers)
- exchange ``axis.evidence`` (fanout) → quorum queue ``axis.evidence`` (events of the evidence log, :func:`evidence`)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from axis.core.blobref import BlobRef, read_header
from axis.core.evidence import Event

if TYPE_CHECKING:
    from axis.core.envelope import StatusMessage

EX_SUBMIT = "axis.submit"
Q_SUBMISSIONS = "axis.submissions"
EX_DELIVER = "axis.deliver"
EX_DLX = "axis.dlx"
Q_DEAD = "axis.dead"
#: Deliveries of one message before RabbitMQ dead-letters it as poison.
DELIVERY_LIMIT = 5

# Message headers (all ours start with x-axis-).
H_KIND = "x-axis-kind"  # "document" | "status" | "status-bundle" | "document-bundle" | "refusal" | "forward"
H_SERVER = "x-axis-server"  # the endpoint server that published a submission
#: the endpoint servers of the host process that published a message (a list; endpoints.link): the router believes
#: it only from their host user (axis.broker.users.host_servers), and then an x-axis-server among them
H_HOST_SERVERS = "x-axis-host-servers"
H_RECIPIENTS = "x-axis-recipients"  # recipient agency codes on the destination server (deliveries)
H_REASON = "x-axis-reason"  # reason code of a refusal (contract section 2)
H_DETAIL = "x-axis-detail"  # human-readable detail of a refusal
H_SENDER = "x-axis-sender"  # agency code a refusal is about (when known)
H_DOCUMENT_ID = "x-axis-document-id"  # DocumentId a refusal is about (when known)
H_DOC_TYPE = "x-axis-doc-type"  # BussinessDocType of the document a status 01 confirms
H_UNKNOWN = "x-axis-unknown"  # unknown recipient codes named by a refusal

KIND_DOCUMENT = "document"
KIND_STATUS = "status"
KIND_STATUS_BUNDLE = "status-bundle"  # several statuses in one message (axis.core.bundle framing)
KIND_DOCUMENT_BUNDLE = "document-bundle"  # router → server: several deliveries in one message (axis.core.bundle)
KIND_REFUSAL = "refusal"
KIND_FORWARD = "forward"  # a delivery for an agency that moved away, handed back to the router (axis.router.forward)
H_FORWARD_KIND = "x-axis-forward-kind"  # the kind of the forwarded delivery (document | status | refusal)
H_BOUNCES = "x-axis-bounces"  # times a forward went back to its server while it and the router disagreed


def header_text(value: object) -> str:
    """An AMQP header value as text ("" when absent; bytes decoded, never raising)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def header_codes(value: object) -> list[str]:
    """Agency codes of a header (``x-axis-recipients``): an AMQP array, or a comma-separated string."""
    if isinstance(value, list | tuple):
        return [header_text(x) for x in value]
    return [c for c in header_text(value).split(",") if c]


#: Every header value the axis writes is bounded, whatever a document holds (a submission's DocumentId is any
#: length the envelope limit allows): a text value to this many UTF-8 bytes, a list to :data:`HEADER_LIST_ITEMS`
#: values. RabbitMQ carries all of a message's properties in one frame (131,072 bytes by default) and closes the
#: connection on a larger one (FRAME_ERROR) — one oversized header would take a whole batch down with it.
HEADER_TEXT_BYTES = 1024
#: The longest list a header may carry: the recipients of one delivery (``limits.max_recipients`` is at most this
#: many, so a delivery's recipient list is never cut: 1,000 codes of at most 35 characters).
HEADER_LIST_ITEMS = 1000


def bounded(value: Any) -> Any:
    """A header value as the axis writes it: text cut to :data:`HEADER_TEXT_BYTES` (on a character boundary),
    lists to :data:`HEADER_LIST_ITEMS` bounded values; numbers and booleans as they are."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if len(value) * 4 <= HEADER_TEXT_BYTES:  # fast path: fits whatever its characters
            return value
        raw = value.encode()
        return value if len(raw) <= HEADER_TEXT_BYTES else raw[:HEADER_TEXT_BYTES].decode("utf-8", "ignore")
    if isinstance(value, list | tuple):
        return [bounded(v) for v in value[:HEADER_LIST_ITEMS]]
    return value


def server_queue(server_id: str) -> str:
    return f"axis.server.{server_id}"

H_SUBMITTED_AT = "x-axis-submitted-at"  # epoch milliseconds when the endpoint server published the submission
H_SHA256 = "x-axis-sha256"  # a status: hex SHA-256 of the document's exact bytes as its recipient stored them
#: a status delivered to the server of the document's sender: the fields the router read from it (its hardened
#: parse, the schema, the model), as compact JSON, so that the server stores them without parsing the XML again
#: (statuses are unsigned: the router, whose deliveries only it can publish, is their authority either way). Only
#: set when it fits a header (:data:`HEADER_TEXT_BYTES`); a server without it parses the status itself.
H_STATUS = "x-axis-status"
#: a document travelling by reference (axis.core.blobref): ``sha256:<hex>:<size>``, the message body empty; bounded
#: like every header the axis writes (a few dozen bytes)
H_BLOB = "x-axis-blob"


def blob_of(headers: Mapping[str, Any]) -> BlobRef | None:
    """The reference a message carries instead of a document's bytes (None: the body is the document);
    Refusal(SCHEMA_INVALID) when the header is malformed."""
    value = headers.get(H_BLOB)
    return None if value is None else read_header(value)


@dataclass(frozen=True, slots=True)
class StatusFields:
    """What an endpoint server stores of a status about one of its agencies' documents (:data:`H_STATUS`)."""

    owner: str  # ResponseFor/OrganId: the agency whose document the status is about
    reporter: str  # From/OrganId: the agency that reports it
    document_id: str  # ResponseFor/DocumentId
    code: str
    description: str
    timestamp: str

    @classmethod
    def of(cls, st: StatusMessage) -> StatusFields:
        """The fields of a status message (as read from its XML, or as built)."""
        return cls(st.response_for.organ_id, st.sender.organ_id, st.response_for.document_id, st.status_code,
                   st.description, st.timestamp)

    def header(self) -> dict[str, str]:
        """``{H_STATUS: json}``, or nothing when it does not fit a header (the server then parses the status)."""
        value = orjson.dumps([self.owner, self.reporter, self.document_id, self.code, self.description,
                              self.timestamp]).decode()
        return {H_STATUS: value} if len(value.encode()) <= HEADER_TEXT_BYTES else {}


def status_fields(headers: Mapping[str, Any]) -> StatusFields | None:
    """The :data:`H_STATUS` fields of a delivered status (None when absent or not exactly six strings)."""
    value = headers.get(H_STATUS)
    if value is None:
        return None
    try:
        fields = orjson.loads(header_text(value))
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, list) or len(fields) != 6 or not all(isinstance(f, str) for f in fields):
        return None
    return StatusFields(*fields)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: body, exchange name, routing key, headers."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str = ""
    content_type: str = "application/xml"


def submission(body: bytes, server_id: str, kind: str, **headers: Any) -> Outgoing:
    """A message from endpoint server ``server_id`` to the router."""
    return Outgoing(EX_SUBMIT, "", body, {H_KIND: kind, H_SERVER: server_id, **headers})


# ---- the evidence log (contract section 5; axis.core.evidence) -------------------------------------------------

#: exchange ``axis.evidence`` (fanout) → quorum queue ``axis.evidence``, consumed by the log writer
#: (:mod:`axis.evidence.writer`): the router, the endpoint servers and the admin app publish the events they see.
EX_EVIDENCE = "axis.evidence"
Q_EVIDENCE = "axis.evidence"
CONTENT_EVENTS = "application/json"


def evidence(events: Sequence[Event]) -> Outgoing:
    """One message carrying ``events`` to the log writer: a JSON list of the events' fields (orjson serializes the
    dataclasses natively: a tenth of the cost of ``dataclasses.asdict``, the same JSON)."""
    return Outgoing(EX_EVIDENCE, "", orjson.dumps(list(events)), content_type=CONTENT_EVENTS)


def read_events(body: bytes) -> list[Event]:
    """The events of an ``axis.evidence`` message body; ValueError when it is not a JSON list of valid events."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"an evidence message is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise ValueError("an evidence message is a JSON list of events")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("an event is a JSON object")
        try:
            out.append(Event(**item))
        except TypeError as exc:  # unknown or missing fields
            raise ValueError(f"not an event: {exc}") from None
    return out
