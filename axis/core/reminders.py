"""Reminders of uncollected documents (issue 14; contract section 7): who gets what, once — pure.

A delivery an agency has not acked ``after_seconds`` after it arrived is *waiting*. Each agency with a contact
gets one digest per channel (e-mail, webhook) listing its waiting documents. A document is reminded at most once
per channel and *period*: period 0 starts ``after_seconds`` after it arrived, period ``n`` starts
``after + n * period_seconds`` after it (the default, 24 h and 24 h: a reminder a day while it waits). The
scheduler (:mod:`axis.admin.reminders`) persists the :func:`reminder_key` of every reminder sent, so a restart
sends none twice; a digest that could not be delivered leaves its keys unsent and is tried again at the next
round.

Also here: the digest's e-mail (:func:`email_message`, plain text in Vietnamese and English; a document's id,
sender and times, never its subject or content) and webhook body (:func:`webhook_body`, JSON), the webhook's
HMAC-SHA256 signature (:func:`sign_webhook`, :func:`verify_webhook`) and the retry back-off (:func:`retry_delays`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal

import orjson

Channel = Literal["email", "webhook"]
CHANNELS: tuple[Channel, ...] = ("email", "webhook")
SIGNATURE_HEADER = "X-Axis-Signature"
TIMESTAMP_HEADER = "X-Axis-Timestamp"
EVENT_HEADER = "X-Axis-Event"
EVENT = "axis.uncollected"


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    """When documents count as waiting and how often they are reminded (``reminders`` in config.yaml)."""

    after_seconds: float = 24 * 3600.0  # ``reminders.after``: waiting this long → reminded
    period_seconds: float = 24 * 3600.0  # ``reminders.period``: at most one reminder per document per period
    max_items: int = 200  # ``reminders.max_items``: documents listed in one digest (the others counted)

    def __post_init__(self) -> None:
        if not (self.after_seconds >= 0 and self.period_seconds > 0 and self.max_items >= 1):
            raise ValueError("reminders: after must be >= 0, period > 0 and max_items >= 1")


@dataclass(frozen=True, slots=True)
class Contact:
    """Where an agency's reminders go: e-mail addresses and/or a webhook URL."""

    email: tuple[str, ...] = ()
    webhook: str | None = None

    def channels(self) -> tuple[Channel, ...]:
        return tuple(c for c in CHANNELS if (self.email if c == "email" else self.webhook))


@dataclass(frozen=True, slots=True)
class Waiting:
    """A delivery not acked yet: inbox ``id`` on ``server``, for ``recipient``."""

    id: str
    document_id: str
    sender: str
    recipient: str
    received_at: float  # epoch seconds
    server: str = ""


@dataclass(frozen=True, slots=True)
class Digest:
    """One message to one agency over one channel: the documents listed and the keys it settles."""

    agency: str
    channel: Channel
    items: tuple[Waiting, ...]  # oldest first, at most policy.max_items
    total: int  # waiting documents in this digest's keys (items plus those not listed)
    keys: tuple[str, ...]  # one per document: recorded once the digest was delivered


def period_of(received_at: float, now: float, policy: ReminderPolicy) -> int | None:
    """The reminder period a document received at ``received_at`` is in at ``now`` (None: not waiting yet)."""
    age = now - received_at
    if age < policy.after_seconds:
        return None
    return math.floor((age - policy.after_seconds) / policy.period_seconds)


def reminder_key(item: Waiting, period: int, channel: Channel) -> str:
    """What is remembered of a reminder sent: the delivery (server, inbox id, recipient), period and channel."""
    return f"{item.server}|{item.id}|{item.recipient}|{period}|{channel}"


def due_keys(waiting: Iterable[Waiting], now: float, policy: ReminderPolicy, contacts: Mapping[str, Contact]
             ) -> list[str]:
    """The keys of every reminder due at ``now`` (sent or not): what to look up in the sent log before planning."""
    out = []
    for item in waiting:
        period = period_of(item.received_at, now, policy)
        contact = contacts.get(item.recipient)
        if period is not None and contact is not None:
            out += [reminder_key(item, period, channel) for channel in contact.channels()]
    return out


def plan(waiting: Iterable[Waiting], now: float, policy: ReminderPolicy, contacts: Mapping[str, Contact],
         sent: Container[str]) -> list[Digest]:
    """The digests to send at ``now``: per agency with a contact and per channel, its waiting documents whose
    reminder for the current period was not ``sent`` yet. Agencies without a contact get none (the uncollected
    list still shows their documents). Sorted by agency, then channel; items oldest first."""
    due: dict[tuple[str, Channel], list[tuple[Waiting, str]]] = {}
    for item in waiting:
        period = period_of(item.received_at, now, policy)
        contact = contacts.get(item.recipient)
        if period is None or contact is None:
            continue
        for channel in contact.channels():
            key = reminder_key(item, period, channel)
            if key not in sent:
                due.setdefault((item.recipient, channel), []).append((item, key))
    digests = []
    for (agency, channel), found in sorted(due.items()):
        found.sort(key=lambda pair: (pair[0].received_at, pair[0].server, pair[0].id))
        digests.append(Digest(agency, channel, tuple(i for i, _ in found[:policy.max_items]), len(found),
                              tuple(k for _, k in found)))
    return digests


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _waited(seconds: float) -> str:
    hours = int(seconds // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h {int(seconds % 3600 // 60)} min"


def email_message(digest: Digest, now: float, *, sender: str, to: Iterable[str], name: str = "",
                  axis_name: str = "axis") -> EmailMessage:
    """The digest as a plain-text e-mail (RFC 5322) from ``sender`` to ``to``."""
    msg = EmailMessage()
    count = digest.total
    msg["Subject"] = (f"[{axis_name}] {count} văn bản chưa nhận / {count} document{'s' if count != 1 else ''} "
                      f"waiting to be collected by {digest.agency}")
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = make_msgid(domain="axis.invalid")
    msg["X-Axis-Agency"] = digest.agency
    lines = [f"Kính gửi {name or digest.agency} ({digest.agency}):",
             "",
             f"Có {count} văn bản đã đến hộp thư của đơn vị trên trục liên thông nhưng chưa được nhận (xác nhận).",
             "",
             f"Agency {digest.agency}{f' ({name})' if name else ''}:",
             "",
             f"{count} document{'s' if count != 1 else ''} delivered to your inbox on the axis "
             f"{'have' if count != 1 else 'has'} not been collected (acknowledged) yet:",
             ""]
    for item in digest.items:
        lines.append(f"- {item.document_id}  from {item.sender}  received {iso(item.received_at)}  "
                     f"(waiting {_waited(now - item.received_at)})  id {item.id}")
    if count > len(digest.items):
        lines.append(f"- … and {count - len(digest.items)} more")
    lines += ["", "Collect them with your agency software (GET /v1/inbox?unread=true, then POST "
              "/v1/documents/{id}/ack).", "", f"-- {axis_name}, generated {iso(now)}"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def webhook_body(digest: Digest, now: float, policy: ReminderPolicy) -> bytes:
    """The webhook's JSON body: ``{"event", "agency", "generated_at", "after_seconds", "count", "items": [{"id",
    "document_id", "sender", "received_at", "waiting_seconds"}], "truncated"}``."""
    return orjson.dumps({
        "event": EVENT, "agency": digest.agency, "generated_at": iso(now), "after_seconds": int(policy.after_seconds),
        "count": digest.total, "truncated": digest.total > len(digest.items),
        "items": [{"id": i.id, "document_id": i.document_id, "sender": i.sender, "received_at": iso(i.received_at),
                   "waiting_seconds": int(now - i.received_at)} for i in digest.items],
    }, option=orjson.OPT_SORT_KEYS)


def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """``X-Axis-Signature``: ``sha256=`` + hex HMAC-SHA256 keyed by ``secret`` over ``<timestamp>.<body>`` (the
    timestamp is sent as ``X-Axis-Timestamp``; receivers reject old ones to stop replays)."""
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_webhook(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float,
                   tolerance: float = 300.0) -> bool:
    """What a receiver checks: the signature matches and the timestamp is within ``tolerance`` seconds of now."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign_webhook(secret, int(timestamp), body), signature)


def retry_delays(retries: int, base: float = 1.0, cap: float = 60.0) -> tuple[float, ...]:
    """The waits before each retry of a failed webhook call: ``base``, doubled each time, at most ``cap``."""
    return tuple(min(cap, base * 2 ** i) for i in range(max(0, retries)))
