"""What the axis counts, as plain records: a routed document (:class:`Accepted`), a delivery stored in an inbox
(:class:`Delivered`), a refused message (:class:`Refused`). The router and the endpoint servers make them; the
statistics store (:mod:`axis.stats.store`) keeps them, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    """A document the router accepted and routed (counted once per key)."""

    key: str  # "sender|DocumentId|BussinessDocType"
    sender: str
    sender_kind: str  # "dedicated" | "shared"
    document_id: str
    doc_type: int
    size: int
    recipients: tuple[tuple[str, str], ...]  # (agency code, server kind) of the known recipients
    latency_ms: float
    at: datetime


@dataclass(frozen=True, slots=True)
class Delivered:
    """A delivery stored in a recipient's inbox (its status 01 passed the router); once per (key, recipient)."""

    key: str
    sender: str
    sender_kind: str
    recipient: str
    recipient_kind: str
    document_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Refused:
    """A message the axis refused, with its contract reason code (counted once per message_id)."""

    message_id: str
    sender: str | None  # the proven sender (None: nobody proved who sent it)
    reason: str
    size: int
    at: datetime
    server: str | None = None  # the publishing endpoint server, for a message whose sender was not proven
