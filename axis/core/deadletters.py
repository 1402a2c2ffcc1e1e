"""Dead letters as the administrator sees them (contract section 7), without I/O: what a message in ``axis.dead``
is, its stable id, the selection and paging of a listing, the message a resend publishes and the log event of an
action. The broker side (reading, keeping, removing messages of the queue) is :mod:`axis.broker.deadletters`;
the admin routes are :mod:`axis.admin.deadletters`.

**What lands in ``axis.dead``.** (1) Refusals by the router (:mod:`axis.router.core`): the refused bytes with
``x-axis-reason`` (a contract reason code), ``x-axis-detail``, ``x-axis-server`` (the endpoint server that
published it, as the broker authenticated it), ``x-axis-kind`` (what it was submitted as), ``x-axis-sender`` and
``x-axis-document-id`` when known, and ``x-axis-dead-at`` (ms). (2) Poison messages that RabbitMQ dead-lettered
(a queue's delivery limit, or a consumer's reject: the log writer's undecodable events): their own headers plus
RabbitMQ's ``x-death``; their ``reason`` is RabbitMQ's (``delivery_limit``, ``rejected``, …, lower case: they are
not refusals and carry no contract reason code) and ``source`` is the queue they died in.

**Stable id.** :func:`dead_letter_id`: the first 128 bits (hex) of SHA-256 over the message id and the SHA-256
of the bytes. The same message dead-lettered twice (a router that crashed after publishing a refusal and before
its ack refuses the redelivered message again) is one dead letter: both copies share the id and an action takes
them all.

**Order.** A listing is in queue order (oldest first), as :func:`select` receives the letters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from axis.core.evidence import Event
from axis.core.routing import MAX_DOCUMENT_ID
from axis.core.wire import (
    EX_DELIVER,
    EX_EVIDENCE,
    EX_SUBMIT,
    H_BLOB,
    H_DETAIL,
    H_DOC_TYPE,
    H_DOCUMENT_ID,
    H_HOST_SERVERS,
    H_KIND,
    H_REASON,
    H_SENDER,
    H_SERVER,
    H_SHA256,
    H_SUBMITTED_AT,
    KIND_DOCUMENT,
    Q_EVIDENCE,
    Q_SUBMISSIONS,
    Outgoing,
    header_text,
)

#: when the router dead-lettered a refusal (ms since the epoch); also stamped by the admin app on a poison message
#: the first time it keeps it (RabbitMQ's ``x-death`` time is in seconds, this keeps one resolution)
H_DEAD_AT = "x-axis-dead-at"
#: the AMQP ``user_id`` a poison message was published with (kept as a header: a message the admin app keeps in
#: the queue is published again under its own user, and the broker allows no other ``user_id``)
H_DEAD_USER = "x-axis-dead-user"
X_DEATH = "x-death"
ACTIONS = ("resend", "discard")
MAX_LIMIT = 1000
#: the longest agency code, server id or reason an admin leaf names (agency codes are at most 35 characters)
MAX_CODE = 64
DEFAULT_LIMIT = 100
#: an administrator's name as it goes into the log (printable, no separators a log reader could trip on)
_ADMIN_NAME = re.compile(r"[\w.@+ -]{1,64}")


def dead_letter_id(message_id: str, body: bytes) -> str:
    """The stable id of a dead letter (module docstring)."""
    digest = hashlib.sha256(body).hexdigest()
    return hashlib.sha256(f"{message_id}\n{digest}".encode()).hexdigest()[:32]


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(header_text(value))
    except ValueError:
        return None


def _death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """RabbitMQ's most recent ``x-death`` entry, or None (a refusal by the router)."""
    deaths = headers.get(X_DEATH)
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return None


def _death_ms(death: Mapping[str, Any]) -> int | None:
    when = death.get("time")
    if isinstance(when, datetime):
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
    seconds = _int(when)
    return None if seconds is None else seconds * 1000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter: what the listing shows, and what a resend or a log event needs."""

    id: str
    reason: str
    detail: str
    sender: str | None
    document_id: str | None
    server: str | None  # the endpoint server that submitted it (a refusal: as the broker authenticated it)
    at: int | None  # ms since the epoch when it was dead-lettered (None: not known yet)
    kind: str  # what it was submitted as (document, status, ...)
    source: str  # "router" (a refusal) or the queue a poison message died in
    message_id: str
    size: int
    sha256: str
    doc_type: int
    content_type: str
    user_id: str | None  # the publisher's broker user (poison messages), for the resend's server

    def item(self) -> dict[str, Any]:
        """The listing's item (contract section 7), plus what an administrator sorts by."""
        at = None if self.at is None else datetime.fromtimestamp(self.at / 1000, UTC).isoformat().replace(
            "+00:00", "Z")
        return {"id": self.id, "reason": self.reason, "detail": self.detail, "sender": self.sender,
                "document_id": self.document_id, "server": self.server, "at": at, "kind": self.kind,
                "source": self.source, "size": self.size, "sha256": self.sha256}


def read(body: bytes, headers: Mapping[str, Any], message_id: str | None, user_id: str | None = None,
         content_type: str | None = None) -> DeadLetter:
    """The dead letter a message of ``axis.dead`` is (never raising on odd headers: a dead letter is whatever
    arrived)."""
    mid = message_id or ""
    death = _death(headers)
    reason = header_text(headers.get(H_REASON))
    detail = header_text(headers.get(H_DETAIL))
    at = _int(headers.get(H_DEAD_AT))
    if reason:
        source = "router"
    elif death is not None:
        queue = header_text(death.get("queue"))
        reason = header_text(death.get("reason")) or "dead-lettered"
        count = _int(death.get("count"))
        source = queue or "?"
        detail = detail or (f"dead-lettered by RabbitMQ from {queue or 'a queue'} ({reason}"
                            + (f", {count} times" if count and count > 1 else "") + ")")
        if at is None:
            at = _death_ms(death)
    else:
        reason, source = "unknown", "?"
        detail = detail or "in axis.dead without a reason or x-death header"
    doc_type = _int(headers.get(H_DOC_TYPE))
    return DeadLetter(
        id=dead_letter_id(mid, body), reason=reason, detail=detail,
        sender=header_text(headers.get(H_SENDER)) or None,
        document_id=header_text(headers.get(H_DOCUMENT_ID)) or None,
        server=header_text(headers.get(H_SERVER)) or None, at=at,
        kind=header_text(headers.get(H_KIND)) or (KIND_DOCUMENT if source in ("router", Q_SUBMISSIONS) else ""),
        source=source, message_id=mid, size=len(body), sha256=hashlib.sha256(body).hexdigest(),
        doc_type=doc_type if doc_type is not None and 0 <= doc_type < 2**53 else 0,
        content_type=content_type or "", user_id=header_text(headers.get(H_DEAD_USER)) or user_id or None)


def kept_headers(headers: Mapping[str, Any], user_id: str | None, now_ms: int) -> dict[str, Any]:
    """The headers of a dead letter published back into the queue (kept): its own, plus when it was first seen and
    who published it (neither survives otherwise: RabbitMQ sets no time on a refusal, and only the admin app's
    own user may be a republished message's ``user_id``)."""
    out = dict(headers)
    out.setdefault(H_DEAD_AT, now_ms)
    if user_id and H_DEAD_USER not in out:
        out[H_DEAD_USER] = user_id
    return out


# -- listing ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Selection:
    """A listing's filters (each None: any) and its page."""

    reason: str | None = None
    sender: str | None = None
    server: str | None = None
    document_id: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be in 1..{MAX_LIMIT}")
        if self.offset < 0:
            raise ValueError("offset must be at least 0")

    def matches(self, letter: DeadLetter) -> bool:
        return ((self.reason is None or letter.reason == self.reason)
                and (self.sender is None or letter.sender == self.sender)
                and (self.server is None or letter.server == self.server)
                and (self.document_id is None or letter.document_id == self.document_id))


def select(letters: Iterable[DeadLetter], selection: Selection) -> dict[str, Any]:
    """``{"items": [...], "next_offset": N|null, "total": N}`` of the letters matching ``selection``, in order."""
    matching = [letter for letter in letters if selection.matches(letter)]
    page = matching[selection.offset:selection.offset + selection.limit]
    end = selection.offset + len(page)
    return {"items": [letter.item() for letter in page], "next_offset": end if end < len(matching) else None,
            "total": len(matching)}


def unique(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """One letter per id (the first copy), in order."""
    seen: dict[str, DeadLetter] = {}
    for letter in letters:
        seen.setdefault(letter.id, letter)
    return list(seen.values())


def counts_by_reason(letters: Iterable[DeadLetter]) -> dict[str, int]:
    out: dict[str, int] = {}
    for letter in letters:
        out[letter.reason] = out.get(letter.reason, 0) + 1
    return out


# -- actions ----------------------------------------------------------------------------------------------------

def check_admin(name: str | None) -> str:
    """The administrator's name for the log: ``name`` when given (letters, digits, ``. @ + - _`` and spaces, at
    most 64), else ``"admin"`` (the holder of the admin token); ValueError otherwise."""
    if name is None or name == "":
        return "admin"
    if not _ADMIN_NAME.fullmatch(name):
        raise ValueError("admin must be 1-64 letters, digits, spaces or . @ + - _")
    return name


#: headers of the original message a resend keeps (what the router reads of a submission); the rest (reason,
#: detail, x-death, what the admin app stamped) is the dead letter's, not the submission's
_SUBMISSION_HEADERS = (H_KIND, H_DOC_TYPE, H_SHA256, H_BLOB)  # H_BLOB: a big document travels by reference


def resend(letter: DeadLetter, body: bytes, headers: Mapping[str, Any], *, server: str | None, now_ms: int,
           message_id: str, host: Sequence[str] | None = None) -> Outgoing:
    """The message that puts ``letter`` back where it came from, as if just submitted: a refusal or a poison
    submission to the router (``axis.submit``, ``x-axis-server`` = ``server``, ``x-axis-host-servers`` = ``host``
    — the servers of the host process that published it, which the caller authenticated —, a new
    ``x-axis-submitted-at``); a
    poison delivery back to its server's queue; a poison evidence message back to the log writer. A new message
    id: the router logs a refusal once per message id, and a resend refused again is a new refusal."""
    if letter.source == Q_EVIDENCE:
        return Outgoing(EX_EVIDENCE, "", body, {}, message_id=message_id,
                        content_type=letter.content_type or "application/json")
    if letter.source.startswith("axis.server."):
        keep = {k: v for k, v in headers.items() if k.startswith("x-axis-") and k not in (
            H_DEAD_AT, H_DEAD_USER, H_REASON, H_DETAIL)}
        return Outgoing(EX_DELIVER, letter.source.removeprefix("axis.server."), body, keep, message_id=message_id,
                        content_type=letter.content_type or "application/xml")
    out: dict[str, Any] = {k: headers[k] for k in _SUBMISSION_HEADERS if k in headers}
    out.setdefault(H_KIND, letter.kind or KIND_DOCUMENT)
    if server:
        out[H_SERVER] = server
    if host:
        out[H_HOST_SERVERS] = list(host)
    out[H_SUBMITTED_AT] = now_ms
    return Outgoing(EX_SUBMIT, "", body, out, message_id=message_id,
                    content_type=letter.content_type or "application/xml")


def admin_event(letter: DeadLetter, action: str, admin: str, at_ms: int, ref: str) -> Event:
    """The log leaf of an administrator's action on ``letter`` (contract sections 5 and 7): type ``admin``,
    ``action``, ``admin``, the dead letter's ``sender`` and ``document_id`` (as its headers name them; "" when
    unknown or longer than a DocumentId may be), the digest of its bytes and its ``reason``."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    # what a refused message claims is bounded as the router bounds it: a log row's indexed columns stay small
    sender = letter.sender if letter.sender and len(letter.sender) <= MAX_CODE else ""
    document_id = letter.document_id if letter.document_id and len(letter.document_id) <= MAX_DOCUMENT_ID else ""
    server = letter.server if letter.server and len(letter.server) <= MAX_CODE else None
    return Event("admin", at_ms, sender, document_id, letter.doc_type, letter.sha256, server=server,
                 reason=letter.reason[:MAX_CODE], action=action, admin=admin, ref=ref)


def summary(letters: Sequence[DeadLetter]) -> dict[str, Any]:
    """Totals for the dashboard and the gauges: ``{"total", "by_reason"}``."""
    return {"total": len(letters), "by_reason": counts_by_reason(letters)}
