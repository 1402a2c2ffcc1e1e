"""The endpoint server's store: received documents (inboxes), sent documents, and statuses about sent ones.

This module is the interface and the schema; :func:`endpoints.inbox.open_inbox` picks the backend by URL:
SQLite (``sqlite:///`` or ``sqlite+aiosqlite:///``, the default) → :mod:`endpoints.inbox.sqlite`, one
``sqlite3`` connection driven from the event loop; anything else (PostgreSQL) → :mod:`endpoints.inbox.sql`,
SQLAlchemy async Core. Both keep the same semantics. Idempotency lives here: a received document is one row per
(recipient agency, sender, DocumentId, BussinessDocType) — a redelivery or a re-submission finds the existing
row and changes nothing; statuses are unique per (document, reporter, code, timestamp) so a re-sent status 01
is stored once.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from axis.core.blobref import read_stored

metadata = sa.MetaData()

received = sa.Table(
    "axis_received",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("agency", sa.String(64), nullable=False),
    sa.Column("sender", sa.String(64), nullable=False),
    sa.Column("document_id", sa.String(512), nullable=False),
    sa.Column("doc_type", sa.Integer, nullable=False),
    sa.Column("related_document_id", sa.String(512), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.Text, nullable=False, default=""),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("acked_at", sa.Float, nullable=True),
    # what a status about the document needs, kept at its delivery (ReceivedHead): sending a status then reads no
    # XML. Added after the first release: NULL in rows stored before, whose head is read from the bytes instead
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("doc_code", sa.String(512), nullable=True),
    sa.Column("promulgation_date", sa.String(64), nullable=True),
    sa.UniqueConstraint("agency", "sender", "document_id", "doc_type", name="uq_axis_received_delivery"),
)
sa.Index("ix_axis_received_inbox", received.c.agency, received.c.received_at)
#: deliveries not acked yet, by arrival: the uncollected list and its reminders (InboxStore.uncollected) read only
#: these (500,000 rows: 25 ms for a page instead of a 2.9 s scan); an ack takes the row out of the index
sa.Index("ix_axis_received_unacked", received.c.received_at, sqlite_where=received.c.acked_at.is_(None),
         postgresql_where=received.c.acked_at.is_(None))

sent = sa.Table(
    "axis_sent",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("agency", sa.String(64), nullable=False),
    sa.Column("document_id", sa.String(512), nullable=False),
    sa.Column("doc_type", sa.Integer, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False, default=""),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("agency", "document_id", "doc_type", name="uq_axis_sent_document"),
)

statuses = sa.Table(
    "axis_status",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("agency", sa.String(64), nullable=False),  # the original sender (owner of the status)
    sa.Column("document_id", sa.String(512), nullable=False),
    sa.Column("from_code", sa.String(64), nullable=False),
    sa.Column("code", sa.String(4), nullable=False),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("timestamp", sa.String(32), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.UniqueConstraint("agency", "document_id", "from_code", "code", "timestamp", name="uq_axis_status"),
)
sa.Index("ix_axis_status_doc", statuses.c.agency, statuses.c.document_id)

#: What agency software recorded about an item it was handed (a received document, or a status about a document
#: it sent): ``processing``, ``fail`` or ``done`` (the VPCP SDK's updateStatus, :mod:`endpoints.vxp`). A received
#: document's ``done`` is its ack (``acked_at``); a status's ``done`` lives only here. Keyed by (agency, item id).
#: Not moved with an agency (endpoints.migrate renumbers statuses): after a move its marks start afresh.
item_states = sa.Table(
    "axis_item_states",
    metadata,
    sa.Column("agency", sa.String(64), primary_key=True),
    sa.Column("item", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: columns added after a store may already have been created: each backend adds the missing ones (nullable) at open
ADDED_COLUMNS = ((received, "sha256"), (received, "doc_code"), (received, "promulgation_date"))

TABLES = {t.name: t for t in (received, sent, statuses)}  # what endpoints.migrate moves
#: what a code change (InboxStore.rename_agency) gives the new code: every table of the agency's rows
AGENCY_TABLES = {**TABLES, item_states.name: item_states}


def unique_key(table: sa.Table) -> tuple[str, ...]:
    """The columns besides ``agency`` of the table's unique constraint (() when it has none but its id)."""
    for c in table.constraints:
        if isinstance(c, sa.UniqueConstraint) or (isinstance(c, sa.PrimaryKeyConstraint) and "agency" in c.columns):
            return tuple(col.name for col in c.columns if col.name != "agency")
    return ()
KINDS = {0: "edoc", 1: "revocation", 2: "update", 3: "replacement"}


def document_size(data: bytes) -> int:
    """The size of the document a row's ``data`` stands for: its bytes, or the blob a big document's reference names
    (axis.core.blobref)."""
    ref = read_stored(data)
    return ref.size if ref is not None else len(data)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:") or url.startswith("sqlite+")


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///…`` / ``sqlite+aiosqlite:///…`` URL (``:memory:`` or empty for in-memory)."""
    return url.split(":///", 1)[1] if ":///" in url else ""


def normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


@dataclass(frozen=True, slots=True)
class Stored:
    """A received document row as committed (``new`` is False when it was already there)."""

    id: str
    agency: str
    received_at: float
    new: bool


@dataclass(frozen=True, slots=True)
class ReceivedHead:
    """What a status about a received document needs besides the row's sender and DocumentId, kept at its delivery
    from the checked message: the hex SHA-256 of the exact stored bytes (what the ``stored`` leaf names), and the
    ``ResponseFor`` fields ``Code`` (CodeNumber/CodeNotation) and ``PromulgationDate``."""

    sha256: str
    doc_code: str
    promulgation_date: str

    @classmethod
    def of(cls, sha256: str, doc_code: str, promulgation_date: str) -> ReceivedHead | None:
        """The head to keep, or None when a value is longer than its column: the schema does not bound CodeNumber
        and CodeNotation, and PostgreSQL would refuse the row (and with it the delivery). Such a row's statuses read
        the stored bytes, as a row stored before heads were kept."""
        if any(len(value) > limit for value, limit in zip((sha256, doc_code, promulgation_date), _HEAD_LENGTHS,
                                                           strict=True)):
            return None
        return cls(sha256, doc_code, promulgation_date)


#: the column lengths of ReceivedHead's fields, in its order (read once: ReceivedHead.of runs at every delivery)
_HEAD_LENGTHS: tuple[int, ...] = tuple(received.c[name].type.length  # type: ignore[attr-defined]
                                       for name in ("sha256", "doc_code", "promulgation_date"))


@dataclass(frozen=True, slots=True)
class ReceivedRow:
    id: str
    agency: str
    sender: str
    document_id: str
    doc_type: int
    related_document_id: str | None
    kind: str
    subject: str
    size: int
    data: bytes
    received_at: float
    acked_at: float | None
    sha256: str | None = None
    doc_code: str | None = None
    promulgation_date: str | None = None

    @property
    def head(self) -> ReceivedHead | None:
        """What was kept at delivery for its statuses; None for a row stored before it was kept."""
        if self.sha256 is None or self.doc_code is None or self.promulgation_date is None:
            return None
        return ReceivedHead(self.sha256, self.doc_code, self.promulgation_date)


@dataclass(frozen=True, slots=True)
class SentRow:
    id: str
    agency: str
    document_id: str
    doc_type: int
    recipients: str
    subject: str
    data: bytes
    created_at: float


class StoreBusy(Exception):
    """The database stayed locked by another writer for longer than the store waits (a retryable condition:
    HTTP 503 with Retry-After, a delivery is requeued) — never an internal error."""


class InboxStore(abc.ABC):
    """The store interface; both backends implement every method with the same semantics."""

    #: identifies the database (two stores with the same location share their rows)
    location: str

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- received ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def store_received(
        self, agencies: Sequence[str], *, sender: str, document_id: str, doc_type: int,
        related_document_id: str | None, subject: str, data: bytes, head: ReceivedHead | None = None,
    ) -> list[Stored]:
        """Insert the document into each agency's inbox in ONE transaction; existing rows are kept as they are
        (their id and received_at are returned, ``new`` False). ``head``: what its statuses will need."""

    @abc.abstractmethod
    async def inbox(self, agency: str, *, unread: bool = False, limit: int = 100, offset: int = 0
                    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def received_row(self, agency: str, rid: str) -> ReceivedRow | None: ...

    @abc.abstractmethod
    async def received_documents(self, agency: str, sender: str, document_id: str) -> list[ReceivedRow]:
        """``agency``'s inbox rows of ``sender``'s document ``document_id`` (one per BussinessDocType at most)."""

    @abc.abstractmethod
    async def ack(self, agency: str, rid: str) -> bool:
        """Mark the row read; False when ``rid`` is not one of ``agency``'s rows (acking twice is True)."""

    @abc.abstractmethod
    async def count_received(self, agency: str | None = None) -> int: ...

    @abc.abstractmethod
    async def uncollected(self, before: float, *, agency: str | None = None, limit: int = 100, offset: int = 0
                          ) -> list[dict[str, Any]]:
        """Deliveries not yet acked that arrived before ``before`` (epoch seconds), oldest first, every agency of
        the store (or ``agency``'s): ``{"id", "document_id", "sender", "recipient", "received_at"}`` (ISO 8601;
        ``received_ts``: epoch seconds). For the administrators' uncollected list and reminders."""

    # -- sent --------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def store_sent(self, agency: str, *, document_id: str, doc_type: int, recipients: Sequence[str],
                         subject: str, data: bytes) -> tuple[str, bool]:
        """Record a submitted document; a re-submission returns the id of the first one (and False)."""

    @abc.abstractmethod
    async def sent_row(self, agency: str, rid: str) -> SentRow | None: ...

    @abc.abstractmethod
    async def sent_documents(self, agency: str, document_id: str) -> list[SentRow]:
        """Every document ``agency`` sent with this DocumentId (one per BussinessDocType at most)."""

    @abc.abstractmethod
    async def sent_recipients(self, agency: str, document_id: str) -> list[str] | None:
        """The recipients of the documents ``agency`` sent with this DocumentId (every BussinessDocType), or None
        when it sent none: what checking a status or a revocation needs, without reading the document's bytes."""

    # -- statuses ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def store_status(self, agency: str, *, document_id: str, from_code: str, code: str, description: str,
                           timestamp: str, reason: str | None = None) -> bool:
        """True when stored, False when this exact status was already there."""

    @abc.abstractmethod
    async def statuses_for(self, agency: str, document_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def statuses_of(self, agency: str) -> list[dict[str, Any]]:
        """Every status about every document ``agency`` sent, oldest first: :func:`status_item` plus the row's
        ``id`` (an integer) and ``document_id``."""

    @abc.abstractmethod
    async def status_by_id(self, agency: str, status_id: int) -> dict[str, Any] | None:
        """One row of :meth:`statuses_of` by its ``id``; None when it is not one of ``agency``'s."""

    @abc.abstractmethod
    async def sent_list(self, agency: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The last ``limit`` documents ``agency`` sent, oldest first, without their bytes: ``id``,
        ``document_id``, ``doc_type``, ``recipients`` (a list), ``subject``, ``created_at`` (seconds since the
        epoch)."""

    # -- what agency software recorded about its items -------------------------------------------------------
    @abc.abstractmethod
    async def item_states(self, agency: str) -> dict[str, str]:
        """``{item id: state}`` of every item ``agency`` recorded a state for (:data:`item_states`)."""

    @abc.abstractmethod
    async def set_item_state(self, agency: str, item: str, state: str) -> None:
        """Record ``state`` for ``agency``'s item ``item`` (the last one wins)."""

    # -- moving an agency (endpoints.migrate) --------------------------------------------------------------
    @abc.abstractmethod
    async def rows_of(self, table: str, agency: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of ``agency`` in ``table`` (all columns), by id."""

    @abc.abstractmethod
    async def insert_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows (the columns given), keeping any that conflict with existing ones; one transaction."""

    @abc.abstractmethod
    async def delete_rows(self, table: str, ids: Sequence[Any]) -> None: ...

    # -- an agency code change (axis agency rename) -------------------------------------------------------------
    @abc.abstractmethod
    async def rename_agency(self, former: Sequence[str], code: str) -> int:
        """Give the rows of an agency's former codes its current ``code`` (every table's ``agency`` column), in one
        transaction: its inbox, sent documents and statuses follow it to its new code. A row whose key already
        exists under ``code`` (a delivery stored under both around the change) is kept once, the new code's.
        Returns the rows renamed; 0 once done (idempotent: endpoint servers run it at every start and reload)."""


def inbox_item(r: Any) -> dict[str, Any]:
    """The API's inbox entry of a row (attribute access: a SQLAlchemy row of the inbox query). ``related_id`` is
    the inbox id of the document a revocation, update or replacement acts on — only ever a document of the SAME
    sender (a document is its sender's DocumentId: another agency's document with that DocumentId is never
    linked); null when this inbox holds no such document."""
    return {"id": r.id, "document_id": r.document_id, "from": r.sender, "subject": r.subject,
            "received_at": iso(r.received_at), "kind": r.kind, "doc_type": r.doc_type,
            "related_document_id": r.related_document_id, "related_id": r.related_id, "size": r.size,
            "acked": r.acked_at is not None}


def status_item(r: Any) -> dict[str, Any]:
    return {"from": r.from_code, "code": r.code, "description": r.description, "timestamp": r.timestamp,
            "reason": r.reason, "received_at": iso(r.received_at)}


def uncollected_item(rid: str, document_id: str, sender: str, recipient: str, received_at: float) -> dict[str, Any]:
    return {"id": rid, "document_id": document_id, "sender": sender, "recipient": recipient,
            "received_at": iso(received_at), "received_ts": received_at}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
