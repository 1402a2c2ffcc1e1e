"""The endpoint server's store: received documents (inboxes), sent documents, and statuses about sent ones.

SQLAlchemy async Core: SQLite (WAL) by default, PostgreSQL by URL. Idempotency lives here: a received
document is one row per (recipient agency, sender, DocumentId, BussinessDocType) — a redelivery or a
re-submission finds the existing row and changes nothing; statuses are unique per (document, reporter, code,
timestamp) so a re-sent status 01 is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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
    sa.UniqueConstraint("agency", "sender", "document_id", "doc_type", name="uq_axis_received_delivery"),
)
sa.Index("ix_axis_received_inbox", received.c.agency, received.c.received_at)

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

KINDS = {0: "edoc", 1: "revocation", 2: "update", 3: "replacement"}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


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


class InboxStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # SQLite has one writer at a time: concurrent write transactions from the pool's connections would
        # spin in SQLite's busy handler (sleep-and-retry, hundreds of ms under load). Writers of this process
        # queue on an asyncio lock instead; readers (WAL) never wait. PostgreSQL needs no such lock.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # The hot INSERTs are built once and executed with parameters: building `.values(**literals)` per call
        # coerced every value into a bind parameter and regenerated the statement's cache key each time.
        self._ins_received = self._insert(received).on_conflict_do_nothing(
            index_elements=["agency", "sender", "document_id", "doc_type"])
        self._ins_sent = self._insert(sent).on_conflict_do_nothing(index_elements=["agency", "document_id", "doc_type"])
        self._ins_status = self._insert(statuses).on_conflict_do_nothing(
            index_elements=["agency", "document_id", "from_code", "code", "timestamp"])

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @classmethod
    async def open(cls, url: str) -> InboxStore:
        url = normalize_url(url)
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # No reset-on-return ROLLBACK: every use of a connection here ends its own transaction (engine.begin()
            # commits or rolls back, Connection.close() rolls back a read's), so the pool's extra ROLLBACK was a
            # redundant round trip through aiosqlite's thread on every statement (a measurable share of host CPU).
            engine = create_async_engine(url, connect_args={"timeout": 30}, pool_reset_on_return=None)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        store = cls(engine)
        for attempt in range(5):  # several servers may create the schema in one database at the same moment
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(metadata.create_all, checkfirst=True)
                break
            except sa.exc.DBAPIError as exc:
                if attempt == 4 or ("exist" not in str(exc).lower() and "duplicate" not in str(exc).lower()):
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    # -- received ----------------------------------------------------------------------------------------------
    async def store_received(
        self, agencies: Sequence[str], *, sender: str, document_id: str, doc_type: int,
        related_document_id: str | None, subject: str, data: bytes,
    ) -> list[Stored]:
        """Insert the document into each agency's inbox in ONE transaction; existing rows are kept as they are."""
        now = time.time()
        out: list[Stored] = []
        async with self._write() as conn:
            for agency in agencies:
                rid = uuid.uuid4().hex
                result = await conn.execute(self._ins_received, dict(
                    id=rid, agency=agency, sender=sender, document_id=document_id, doc_type=doc_type,
                    related_document_id=related_document_id, kind=KINDS.get(doc_type, "edoc"), subject=subject,
                    size=len(data), data=data, received_at=now,
                ))
                if result.rowcount == 1:
                    out.append(Stored(rid, agency, now, True))
                    continue
                row = (await conn.execute(
                    sa.select(received.c.id, received.c.received_at).where(
                        received.c.agency == agency, received.c.sender == sender,
                        received.c.document_id == document_id, received.c.doc_type == doc_type)
                )).one()
                out.append(Stored(row.id, agency, row.received_at, False))
        return out

    async def inbox(self, agency: str, *, unread: bool = False, limit: int = 100, offset: int = 0
                    ) -> list[dict[str, Any]]:
        q = sa.select(received.c.id, received.c.document_id, received.c.sender, received.c.subject,
                      received.c.received_at, received.c.kind, received.c.doc_type, received.c.related_document_id,
                      received.c.size, received.c.acked_at).where(received.c.agency == agency)
        if unread:
            q = q.where(received.c.acked_at.is_(None))
        q = q.order_by(received.c.received_at, received.c.id).limit(limit).offset(offset)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            {"id": r.id, "document_id": r.document_id, "from": r.sender, "subject": r.subject,
             "received_at": _iso(r.received_at), "kind": r.kind, "doc_type": r.doc_type,
             "related_document_id": r.related_document_id, "size": r.size, "acked": r.acked_at is not None}
            for r in rows
        ]

    async def received_row(self, agency: str, rid: str) -> Any | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(
                sa.select(received).where(received.c.id == rid, received.c.agency == agency))).one_or_none()

    async def ack(self, agency: str, rid: str) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(received).where(received.c.id == rid, received.c.agency == agency,
                                          received.c.acked_at.is_(None)).values(acked_at=time.time()))
            if result.rowcount:
                return True
            found = await conn.execute(sa.select(received.c.id).where(received.c.id == rid,
                                                                       received.c.agency == agency))
            return found.one_or_none() is not None

    async def count_received(self, agency: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(received)
        if agency:
            q = q.where(received.c.agency == agency)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    # -- sent --------------------------------------------------------------------------------------------------
    async def store_sent(self, agency: str, *, document_id: str, doc_type: int, recipients: Sequence[str],
                         subject: str, data: bytes) -> tuple[str, bool]:
        """Record a submitted document; a re-submission returns the id of the first one."""
        rid = uuid.uuid4().hex
        async with self._write() as conn:
            result = await conn.execute(self._ins_sent, dict(
                id=rid, agency=agency, document_id=document_id, doc_type=doc_type,
                recipients=orjson.dumps(list(recipients)).decode(), subject=subject, data=data, created_at=time.time(),
            ))
            if result.rowcount == 1:
                return rid, True
            row = (await conn.execute(sa.select(sent.c.id).where(
                sent.c.agency == agency, sent.c.document_id == document_id, sent.c.doc_type == doc_type))).one()
            return row.id, False

    async def sent_row(self, agency: str, rid: str) -> Any | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(
                sa.select(sent).where(sent.c.id == rid, sent.c.agency == agency))).one_or_none()

    # -- statuses ----------------------------------------------------------------------------------------------
    async def store_status(self, agency: str, *, document_id: str, from_code: str, code: str, description: str,
                           timestamp: str, reason: str | None = None) -> bool:
        async with self._write() as conn:
            result = await conn.execute(self._ins_status, dict(
                agency=agency, document_id=document_id, from_code=from_code, code=code, reason=reason,
                description=description, timestamp=timestamp, received_at=time.time(),
            ))
            return result.rowcount == 1

    async def statuses_for(self, agency: str, document_id: str) -> list[dict[str, Any]]:
        q = (sa.select(statuses).where(statuses.c.agency == agency, statuses.c.document_id == document_id)
             .order_by(statuses.c.received_at, statuses.c.id))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            {"from": r.from_code, "code": r.code, "description": r.description, "timestamp": r.timestamp,
             "reason": r.reason, "received_at": _iso(r.received_at)}
            for r in rows
        ]


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
