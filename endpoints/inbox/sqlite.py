"""The inbox store on SQLite without an ORM or a driver thread: the default backend of
:class:`endpoints.inbox.InboxStore`.

One persistent ``sqlite3`` connection per store (WAL, ``synchronous=NORMAL``), statements executed directly in
the event loop: each write is one short transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, tens of microseconds; a
WAL commit at NORMAL is a ``write()``, no ``fsync``) — the writes of deliveries, submissions and statuses that
arrive in the same event-loop turn share one (group commit, :meth:`SqliteInboxStore._write_grouped`) — and each
read is one query. Running them inline costs far less
CPU than handing each statement to a driver thread and back (aiosqlite: two thread hops per statement, plus
SQLAlchemy's layers), and because every operation runs start to end inside one event-loop callback, operations
of this process never interleave on the connection.

The loop never waits for another process's lock: the connection's busy timeout is 0. If another process holds
the write lock (two servers sharing one database file, a migration) the operation is rolled back and re-run in
a worker thread that does wait (``busy_timeout``); while it does, the store's other operations queue behind it
(they cannot share the connection). A lock held longer than that raises :class:`endpoints.inbox.StoreBusy`
(HTTP 503 + Retry-After; a delivery is requeued) — "database is locked" is never an internal error.

Checkpoints (copying the WAL back into the database file, with an ``fsync``) are taken out of the loop too:
automatic checkpoints are off on the loop's connection and a worker thread runs one on its own connection every
few hundred write transactions or ten seconds (:class:`axis.stats.store.Checkpoints`; the WAL is truncated once
it is over 64 MiB: :func:`axis.stats.store.checkpoint`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from axis.stats.store import Checkpoints, is_busy, missing_columns
from endpoints.inbox.store import (
    ADDED_COLUMNS,
    AGENCY_TABLES,
    KINDS,
    TABLES,
    InboxStore,
    ReceivedHead,
    ReceivedRow,
    SentRow,
    StoreBusy,
    Stored,
    document_size,
    iso,
    metadata,
    uncollected_item,
)

T = TypeVar("T")

PATIENT_BUSY_MS = 30_000  # how long the worker-thread retry waits for another process's lock

_RECEIVED_COLS = ("id, agency, sender, document_id, doc_type, related_document_id, kind, subject, size, data, "
                  "received_at, acked_at, sha256, doc_code, promulgation_date")
_SENT_COLS = "id, agency, document_id, doc_type, recipients, subject, data, created_at"
_INS_RECEIVED = ("INSERT INTO axis_received (id, agency, sender, document_id, doc_type, related_document_id, kind, "
                 "subject, size, data, received_at, sha256, doc_code, promulgation_date) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING")
_SEL_RECEIVED_KEY = ("SELECT id, received_at FROM axis_received "
                     "WHERE agency = ? AND sender = ? AND document_id = ? AND doc_type = ?")
_INS_SENT = ("INSERT INTO axis_sent (id, agency, document_id, doc_type, recipients, subject, data, created_at) "
             "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING")
_INS_STATUS = ("INSERT INTO axis_status (agency, document_id, from_code, code, reason, description, timestamp, "
               "received_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING")


_STATUS_COLS = "id, document_id, from_code, code, description, timestamp, reason, received_at"


def _status_of(row: Sequence[Any]) -> dict[str, Any]:
    i, doc, f, c, d, ts, r, at = row
    return {"id": i, "document_id": doc, "from": f, "code": c, "description": d, "timestamp": ts, "reason": r,
            "received_at": iso(at)}


def _open(path: str) -> sqlite3.Connection:
    # autocommit mode (isolation_level=None): transactions are explicit BEGIN IMMEDIATE … COMMIT
    db = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False,
                         timeout=PATIENT_BUSY_MS / 1000)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in a worker thread
        db.execute("PRAGMA busy_timeout=0")  # the loop never waits for a lock (see the module docstring)
    except BaseException:
        db.close()
        raise
    return db


def _create_schema(db: sqlite3.Connection) -> None:
    """The tables and indexes of :data:`endpoints.inbox.store.metadata`, as SQLAlchemy would create them (same DDL)."""
    dialect = sqlite_dialect.dialect()
    db.execute("BEGIN IMMEDIATE")
    try:
        for table in metadata.sorted_tables:
            db.execute(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
            for index in table.indexes:
                db.execute(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
        for ddl in missing_columns(ADDED_COLUMNS, lambda name: {row[1] for row in db.execute(
                f"PRAGMA table_info({name})")}, dialect):  # a store created before these columns existed
            db.execute(ddl)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _write(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """``body`` inside one write transaction: committed, or rolled back on any error (then re-raised)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = body(db)
        db.execute("COMMIT")
        return result
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class SqliteInboxStore(InboxStore):
    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db: sqlite3.Connection | None = db
        self.path = path
        self.location = f"sqlite:///{os.path.abspath(path)}" if path and path != ":memory:" else f"memory:{id(db)}"
        self._patient = asyncio.Lock()  # held while a worker thread owns the connection (see the docstring)
        self._in_thread = False
        self.transactions = 0  # write transactions committed (group commits count once)
        self._checkpoints = Checkpoints(path) if path and path != ":memory:" else None
        self._group: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []  # see _write_grouped
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open_path(cls, path: str) -> SqliteInboxStore:
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

        def setup() -> sqlite3.Connection:
            db = _open(path)
            try:
                # several servers (in several host processes) may create it in one database at once: the write
                # lock orders them, and this worker thread may wait for it (the event loop never does)
                db.execute(f"PRAGMA busy_timeout={PATIENT_BUSY_MS}")
                _create_schema(db)
                db.execute("PRAGMA busy_timeout=0")
            except BaseException:
                db.close()
                raise
            return db

        return cls(await asyncio.to_thread(setup), path)

    async def close(self) -> None:
        """Release the connection (like an engine's dispose: a later call reconnects)."""
        if self._checkpoints is not None:
            await self._checkpoints.close()
        async with self._patient:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = _open(self.path)
            if not self.path or self.path == ":memory:":
                _create_schema(self._db)  # a new, empty in-memory database
        return self._db

    # -- running statements ------------------------------------------------------------------------------------
    async def _run(self, op: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """``op(connection)``: inline in the loop, or — if another process holds a lock — in a worker thread that
        waits for it. ``op`` must be self-contained (one whole transaction, or reads only)."""
        if not self._in_thread:
            try:
                result = op(self._connection())
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            else:
                if write:
                    self._wrote()
                return result
        async with self._patient:
            self._in_thread = True
            try:
                result = await asyncio.to_thread(self._run_patiently, op)
            finally:
                self._in_thread = False
        if write:
            self._wrote()
        return result

    async def _write_grouped(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``body`` in a write transaction shared with every grouped write that arrives in the same event-loop
        turn (group commit: deliveries that arrived together commit together, one WAL append instead of one per
        delivery). Returns once that transaction committed. If the shared transaction fails, each body is run
        again in a transaction of its own, so one bad write never fails the others."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._group.append((body, fut))
        if len(self._group) == 1:
            loop.call_soon(self._commit_group)
        return await fut

    def _commit_group(self) -> None:
        group, self._group = self._group, []
        if not self._in_thread:
            try:
                results = _write(self._connection(), lambda db: [body(db) for body, _ in group])
            except Exception:  # a lock held by another process, or one bad body: each alone, below
                pass
            else:
                self._wrote()
                for (_, fut), result in zip(group, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
                return
        task = asyncio.get_running_loop().create_task(self._commit_alone(group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit_alone(self, group: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
                            ) -> None:
        try:
            for body, fut in group:
                try:
                    result = await self._run(functools.partial(_write, body=body), write=True)
                except Exception as exc:  # handed to the waiting caller
                    if not fut.done():
                        fut.set_exception(exc)
                else:
                    if not fut.done():
                        fut.set_result(result)
        finally:  # cancelled (shutdown): no caller waits forever
            for _, fut in group:
                if not fut.done():
                    fut.cancel()

    def _run_patiently(self, op: Callable[[sqlite3.Connection], T]) -> T:
        db = self._connection()
        db.execute(f"PRAGMA busy_timeout={PATIENT_BUSY_MS}")
        try:
            return op(db)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise StoreBusy(f"the inbox database {self.path} stayed locked by another writer") from exc
            raise
        finally:
            db.execute("PRAGMA busy_timeout=0")

    def _wrote(self) -> None:
        self.transactions += 1
        if self._checkpoints is not None:
            self._checkpoints.wrote()

    # -- received ----------------------------------------------------------------------------------------------
    async def store_received(
        self, agencies: Sequence[str], *, sender: str, document_id: str, doc_type: int,
        related_document_id: str | None, subject: str, data: bytes, head: ReceivedHead | None = None,
    ) -> list[Stored]:
        now = time.time()
        kind = KINDS.get(doc_type, "edoc")
        size = document_size(data)
        kept = (head.sha256, head.doc_code, head.promulgation_date) if head is not None else (None, None, None)

        def body(db: sqlite3.Connection) -> list[Stored]:
            out: list[Stored] = []
            for agency in agencies:
                rid = uuid.uuid4().hex
                cur = db.execute(_INS_RECEIVED, (rid, agency, sender, document_id, doc_type, related_document_id,
                                                 kind, subject, size, data, now, *kept))
                if cur.rowcount == 1:
                    out.append(Stored(rid, agency, now, True))
                    continue
                old_id, old_at = db.execute(_SEL_RECEIVED_KEY, (agency, sender, document_id, doc_type)).fetchone()
                out.append(Stored(old_id, agency, old_at, False))
            return out

        return await self._write_grouped(body)

    async def inbox(self, agency: str, *, unread: bool = False, limit: int = 100, offset: int = 0
                    ) -> list[dict[str, Any]]:
        sql = ("SELECT r.id, r.document_id, r.sender, r.subject, r.received_at, r.kind, r.doc_type, "
               "r.related_document_id, (SELECT o.id FROM axis_received o WHERE o.agency = r.agency AND o.sender = "
               "r.sender AND o.document_id = r.related_document_id AND o.doc_type = 0), r.size, r.acked_at "
               "FROM axis_received r WHERE r.agency = ?" + (" AND r.acked_at IS NULL" if unread else "")
               + " ORDER BY r.received_at, r.id LIMIT ? OFFSET ?")
        rows = await self._run(lambda db: db.execute(sql, (agency, limit, offset)).fetchall())
        return [
            {"id": rid, "document_id": doc, "from": sender, "subject": subject, "received_at": iso(at),
             "kind": kind, "doc_type": doc_type, "related_document_id": related, "related_id": related_id,
             "size": size, "acked": acked is not None}
            for rid, doc, sender, subject, at, kind, doc_type, related, related_id, size, acked in rows
        ]

    async def received_row(self, agency: str, rid: str) -> ReceivedRow | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {_RECEIVED_COLS} FROM axis_received WHERE id = ? AND agency = ?", (rid, agency)).fetchone())
        return None if row is None else ReceivedRow(*row)

    async def received_documents(self, agency: str, sender: str, document_id: str) -> list[ReceivedRow]:
        rows = await self._run(lambda db: db.execute(
            f"SELECT {_RECEIVED_COLS} FROM axis_received WHERE agency = ? AND sender = ? AND document_id = ? "
            "ORDER BY doc_type", (agency, sender, document_id)).fetchall())
        return [ReceivedRow(*row) for row in rows]

    async def ack(self, agency: str, rid: str) -> bool:
        now = time.time()

        def body(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE axis_received SET acked_at = ? WHERE id = ? AND agency = ? AND acked_at IS NULL",
                             (now, rid, agency))
            if cur.rowcount:
                return True
            return db.execute("SELECT 1 FROM axis_received WHERE id = ? AND agency = ?",
                              (rid, agency)).fetchone() is not None

        return await self._run(lambda db: _write(db, body), write=True)

    async def count_received(self, agency: str | None = None) -> int:
        if agency:
            row = await self._run(lambda db: db.execute("SELECT count(*) FROM axis_received WHERE agency = ?",
                                                        (agency,)).fetchone())
        else:
            row = await self._run(lambda db: db.execute("SELECT count(*) FROM axis_received").fetchone())
        return int(row[0])

    async def uncollected(self, before: float, *, agency: str | None = None, limit: int = 100, offset: int = 0
                          ) -> list[dict[str, Any]]:
        sql = ("SELECT id, document_id, sender, agency, received_at FROM axis_received WHERE acked_at IS NULL "
               "AND received_at < ?" + (" AND agency = ?" if agency else "")
               + " ORDER BY received_at, id LIMIT ? OFFSET ?")
        args = (before, *((agency,) if agency else ()), limit, offset)
        rows = await self._run(lambda db: db.execute(sql, args).fetchall())
        return [uncollected_item(*row) for row in rows]

    # -- sent --------------------------------------------------------------------------------------------------
    async def store_sent(self, agency: str, *, document_id: str, doc_type: int, recipients: Sequence[str],
                         subject: str, data: bytes) -> tuple[str, bool]:
        rid = uuid.uuid4().hex
        params = (rid, agency, document_id, doc_type, orjson.dumps(list(recipients)).decode(), subject, data,
                  time.time())

        def body(db: sqlite3.Connection) -> tuple[str, bool]:
            if db.execute(_INS_SENT, params).rowcount == 1:
                return rid, True
            (old,) = db.execute("SELECT id FROM axis_sent WHERE agency = ? AND document_id = ? AND doc_type = ?",
                                (agency, document_id, doc_type)).fetchone()
            return old, False

        return await self._write_grouped(body)

    async def sent_row(self, agency: str, rid: str) -> SentRow | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {_SENT_COLS} FROM axis_sent WHERE id = ? AND agency = ?", (rid, agency)).fetchone())
        return None if row is None else SentRow(*row)

    async def sent_recipients(self, agency: str, document_id: str) -> list[str] | None:
        rows = await self._run(lambda db: db.execute(
            "SELECT recipients FROM axis_sent WHERE agency = ? AND document_id = ?", (agency, document_id)).fetchall())
        return [r for (recipients,) in rows for r in orjson.loads(recipients)] if rows else None

    async def sent_documents(self, agency: str, document_id: str) -> list[SentRow]:
        rows = await self._run(lambda db: db.execute(
            f"SELECT {_SENT_COLS} FROM axis_sent WHERE agency = ? AND document_id = ? ORDER BY doc_type",
            (agency, document_id)).fetchall())
        return [SentRow(*row) for row in rows]

    # -- statuses ----------------------------------------------------------------------------------------------
    async def store_status(self, agency: str, *, document_id: str, from_code: str, code: str, description: str,
                           timestamp: str, reason: str | None = None) -> bool:
        params = (agency, document_id, from_code, code, reason, description, timestamp, time.time())
        return await self._write_grouped(lambda d: d.execute(_INS_STATUS, params).rowcount == 1)

    async def statuses_for(self, agency: str, document_id: str) -> list[dict[str, Any]]:
        rows = await self._run(lambda db: db.execute(
            "SELECT from_code, code, description, timestamp, reason, received_at FROM axis_status "
            "WHERE agency = ? AND document_id = ? ORDER BY received_at, id", (agency, document_id)).fetchall())
        return [{"from": f, "code": c, "description": d, "timestamp": ts, "reason": r, "received_at": iso(at)}
                for f, c, d, ts, r, at in rows]

    async def statuses_of(self, agency: str) -> list[dict[str, Any]]:
        rows = await self._run(lambda db: db.execute(
            f"SELECT {_STATUS_COLS} FROM axis_status WHERE agency = ? ORDER BY received_at, id", (agency,)).fetchall())
        return [_status_of(row) for row in rows]

    async def status_by_id(self, agency: str, status_id: int) -> dict[str, Any] | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {_STATUS_COLS} FROM axis_status WHERE id = ? AND agency = ?", (status_id, agency)).fetchone())
        return None if row is None else _status_of(row)

    async def sent_list(self, agency: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self._run(lambda db: db.execute(
            "SELECT id, document_id, doc_type, recipients, subject, created_at FROM axis_sent WHERE agency = ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?", (agency, limit)).fetchall())
        return [{"id": i, "document_id": doc, "doc_type": t, "recipients": orjson.loads(rc), "subject": sj,
                 "created_at": at} for i, doc, t, rc, sj, at in reversed(rows)]

    # -- what agency software recorded about its items -------------------------------------------------------
    async def item_states(self, agency: str) -> dict[str, str]:
        rows = await self._run(lambda db: db.execute(
            "SELECT item, state FROM axis_item_states WHERE agency = ?", (agency,)).fetchall())
        return dict(rows)

    async def set_item_state(self, agency: str, item: str, state: str) -> None:
        params = (agency, item, state, time.time())
        await self._write_grouped(lambda d: d.execute(
            "INSERT INTO axis_item_states (agency, item, state, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT (agency, item) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            params))

    # -- moving an agency --------------------------------------------------------------------------------------
    async def rows_of(self, table: str, agency: str, limit: int) -> list[dict[str, Any]]:
        names = [c.name for c in TABLES[table].c]
        rows = await self._run(lambda db: db.execute(
            f"SELECT {', '.join(names)} FROM {table} WHERE agency = ? ORDER BY id LIMIT ?", (agency, limit)).fetchall())
        return [dict(zip(names, r, strict=True)) for r in rows]

    async def insert_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        names = [c.name for c in TABLES[table].c if c.name in rows[0]]
        sql = (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
               "ON CONFLICT DO NOTHING")
        values = [tuple(r[n] for n in names) for r in rows]
        await self._run(lambda db: _write(db, lambda d: d.executemany(sql, values)), write=True)

    async def delete_rows(self, table: str, ids: Sequence[Any]) -> None:
        TABLES[table]  # a known table only
        values = [(i,) for i in ids]
        await self._run(lambda db: _write(db, lambda d: d.executemany(f"DELETE FROM {table} WHERE id = ?", values)),
                        write=True)

    async def rename_agency(self, former: Sequence[str], code: str) -> int:
        old = [c for c in dict.fromkeys(former) if c != code]
        if not old:
            return 0
        marks = ", ".join("?" for _ in old)

        def body(d: sqlite3.Connection) -> int:
            renamed = 0
            for table in AGENCY_TABLES:  # OR IGNORE: a row already there under the new code stays, the old one goes
                renamed += d.execute(f"UPDATE OR IGNORE {table} SET agency = ? WHERE agency IN ({marks})",
                                     (code, *old)).rowcount
                d.execute(f"DELETE FROM {table} WHERE agency IN ({marks})", tuple(old))
            return renamed

        return await self._run(lambda db: _write(db, body), write=True)
