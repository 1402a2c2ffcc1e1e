"""The statistics store: exact traffic counts in SQL (SQLite by default, PostgreSQL by URL).

Writers (router processes) call :meth:`StatsStore.record` with batches of rows; each call is ONE transaction of
multi-row ``INSERT ... ON CONFLICT DO NOTHING`` statements, so replays and redeliveries never count twice and
several writers on the same database add up:

- ``accepted``  one row per routed document, unique ``key`` ("sender|DocumentId|BussinessDocType");
- ``delivered`` one row per delivery stored in a recipient's inbox, unique ``(key, recipient)``;
- ``refused``   one row per refused message, unique ``message_id``.

On SQLite the writes bypass SQLAlchemy: one persistent ``sqlite3`` connection runs the whole batch (``BEGIN
IMMEDIATE``, ``INSERT … ON CONFLICT DO NOTHING`` per table, ``COMMIT``) in the event loop itself, handed to a
worker thread only when another process holds the lock (:class:`SqliteWriter`): ~10 µs of CPU per batch, where
the same transaction through SQLAlchemy and aiosqlite cost 1.0 ms and one hop to a dedicated thread 0.1–0.2 ms —
a large part of a router's cost per message at moderate load. Reads, the schema and PostgreSQL go
through the SQLAlchemy engine.

Times are stored as UTC epoch seconds plus an integer epoch-hour column, which makes per-hour and per-day
grouping portable between SQLite and PostgreSQL. Read queries live in :mod:`axis.stats.query`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable

from axis.stats.records import Accepted, Delivered, Refused

DEFAULT_SQLITE_PATH = "axis-stats.sqlite3"
"""File used when no URL is given (relative to the working directory; ``AXIS_STATS_URL`` overrides the URL)."""

metadata = sa.MetaData()

accepted_table = sa.Table(
    "axis_accepted",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("sender", sa.String, nullable=False),
    sa.Column("sender_kind", sa.String(16), nullable=False),
    sa.Column("document_id", sa.String, nullable=False),
    sa.Column("doc_type", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("n_recipients", sa.Integer, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),  # "code:kind,code:kind"
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("at", sa.Float, nullable=False),  # UTC epoch seconds
    sa.Column("hour", sa.BigInteger, nullable=False),  # UTC epoch hours
)
sa.Index("ix_axis_accepted_hour", accepted_table.c.hour)
sa.Index("ix_axis_accepted_sender_kind", accepted_table.c.sender, accepted_table.c.sender_kind)

delivered_table = sa.Table(
    "axis_delivered",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("recipient", sa.String, primary_key=True),
    sa.Column("sender", sa.String, nullable=False),
    sa.Column("sender_kind", sa.String(16), nullable=False),
    sa.Column("recipient_kind", sa.String(16), nullable=False),
    sa.Column("document_id", sa.String, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("hour", sa.BigInteger, nullable=False),
)
sa.Index("ix_axis_delivered_hour", delivered_table.c.hour)
sa.Index("ix_axis_delivered_recipient_kind", delivered_table.c.recipient, delivered_table.c.recipient_kind)
sa.Index("ix_axis_delivered_route", delivered_table.c.sender_kind, delivered_table.c.recipient_kind)

refused_table = sa.Table(
    "axis_refused",
    metadata,
    sa.Column("message_id", sa.String, primary_key=True),
    sa.Column("sender", sa.String, nullable=True),
    # the endpoint server that published a message whose sender was never proven (sender then NULL)
    sa.Column("server", sa.String, nullable=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("hour", sa.BigInteger, nullable=False),
)
sa.Index("ix_axis_refused_hour", refused_table.c.hour)


def epoch(at: datetime) -> float:
    """UTC epoch seconds; a naive datetime is taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _hour(ts: float) -> int:
    return int(ts // 3600)


def normalize_url(url: str | None) -> str:
    """Map the accepted URL spellings to SQLAlchemy async drivers (aiosqlite, asyncpg)."""
    if not url:
        url = os.environ.get("AXIS_STATS_URL") or f"sqlite+aiosqlite:///{DEFAULT_SQLITE_PATH}"
    for prefix in ("postgresql+asyncpg://", "sqlite+aiosqlite://"):
        if url.startswith(prefix):
            return url
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql+psycopg://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    if "://" not in url:  # a bare file path
        return f"sqlite+aiosqlite:///{url}"
    raise ValueError(f"unsupported statistics store URL: {url!r} (use sqlite:///PATH or postgresql://...)")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _accepted_rows(items: Iterable[Accepted]) -> list[dict[str, Any]]:
    rows = []
    for a in items:
        ts = epoch(a.at)
        rows.append(
            {
                "key": a.key,
                "sender": a.sender,
                "sender_kind": a.sender_kind,
                "document_id": a.document_id,
                "doc_type": int(a.doc_type),
                "size": int(a.size),
                "n_recipients": len(a.recipients),
                "recipients": ",".join(f"{code}:{kind}" for code, kind in a.recipients),
                "latency_ms": float(a.latency_ms),
                "at": ts,
                "hour": _hour(ts),
            }
        )
    return rows


def _delivered_rows(items: Iterable[Delivered]) -> list[dict[str, Any]]:
    rows = []
    for d in items:
        ts = epoch(d.at)
        rows.append(
            {
                "key": d.key,
                "recipient": d.recipient,
                "sender": d.sender,
                "sender_kind": d.sender_kind,
                "recipient_kind": d.recipient_kind,
                "document_id": d.document_id,
                "at": ts,
                "hour": _hour(ts),
            }
        )
    return rows


def _refused_rows(items: Iterable[Refused]) -> list[dict[str, Any]]:
    rows = []
    for r in items:
        ts = epoch(r.at)
        rows.append(
            {
                "message_id": r.message_id,
                "sender": r.sender,
                "server": r.server,
                "reason": str(r.reason),
                "size": int(r.size),
                "at": ts,
                "hour": _hour(ts),
            }
        )
    return rows


def _dedupe(rows: list[dict[str, Any]], *cols: str) -> list[dict[str, Any]]:
    """Drop repeats inside one batch (PostgreSQL refuses a multi-row upsert touching a row twice)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for row in rows:
        k = tuple(row[c] for c in cols)
        if k not in seen:
            seen.add(k)
            out.append(row)
    return out


def _insert_sql(table: sa.Table) -> str:
    cols = [c.name for c in table.columns]
    return (f"INSERT INTO {table.name} ({', '.join(cols)}) "
            f"VALUES ({', '.join(':' + c for c in cols)}) ON CONFLICT DO NOTHING")


_SQL = {t.name: _insert_sql(t) for t in (accepted_table, delivered_table, refused_table)}


#: how long a write handed to a worker thread waits for another process's lock (the event loop never waits)
PATIENT_BUSY_MS = 30_000
#: write transactions between background checkpoints …
CHECKPOINT_EVERY = 256
#: … or seconds, whichever comes first (a router writes its counts four times a second: 256 writes were a minute
#: and ~100 MB of WAL)
CHECKPOINT_SECONDS = 10.0


class Checkpoints:
    """A store's background checkpoints (:func:`checkpoint` in a worker thread, one at a time): due every
    :data:`CHECKPOINT_EVERY` write transactions or :data:`CHECKPOINT_SECONDS`, whichever comes first. Shared by
    the statistics store and the inbox store (:mod:`endpoints.inbox.sqlite`)."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self._writes = 0
        self._last = clock()
        self._task: asyncio.Future[None] | None = None

    def wrote(self) -> None:
        """One write transaction committed (on the event loop): start a checkpoint when one is due."""
        self._writes += 1
        due = self._writes >= CHECKPOINT_EVERY or self.clock() - self._last >= CHECKPOINT_SECONDS
        if due and (self._task is None or self._task.done()):
            self._writes, self._last = 0, self.clock()
            self._task = asyncio.ensure_future(asyncio.to_thread(checkpoint, self.path))

    async def close(self) -> None:
        """Wait for the checkpoint in progress, if any (its failure is the next one's to fix)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


class SqliteWriter:
    """Batched writes on one persistent sqlite3 connection, run in the event loop itself: a counting transaction
    takes ~10 µs of CPU (WAL at ``synchronous=NORMAL``: a ``write()``, no ``fsync``), where handing it to a thread
    and back cost ~90 µs (bench/README.md, session 7) — once per router settlement (the batches of up to 250 ms,
    :mod:`axis.router.settle`). The loop never waits for a lock: the busy timeout is 0, and a write that finds the
    database locked (the other router writing) is rolled back and run again in a worker thread that waits for it; writes
    arriving meanwhile queue behind it. Checkpoints (with their ``fsync``) run in a worker thread too, every
    :data:`CHECKPOINT_EVERY` writes or :data:`CHECKPOINT_SECONDS`, on a connection of their own
    (:class:`Checkpoints`). The same design as the inbox store
    (:mod:`endpoints.inbox.sqlite`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._patient: asyncio.Lock | None = None  # held while a worker thread owns the connection
        self._in_thread = False
        self._checkpoints = Checkpoints(path)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=PATIENT_BUSY_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout={PATIENT_BUSY_MS}")  # setting WAL may wait (in a thread only)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in a worker thread
                db.execute("PRAGMA busy_timeout=0")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _write(self, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in batches:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write_patiently(self, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        db = self._connect()
        db.execute(f"PRAGMA busy_timeout={PATIENT_BUSY_MS}")
        try:
            self._write(batches)
        finally:
            db.execute("PRAGMA busy_timeout=0")

    async def write(self, batches: list[tuple[str, list[dict[str, Any]]]]) -> None:
        if not self._in_thread and self._db is not None:
            try:
                self._write(batches)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            else:
                self._wrote()
                return
        if self._patient is None:
            self._patient = asyncio.Lock()
        async with self._patient:  # the first write (connecting may wait), or a lock held by another process
            self._in_thread = True
            try:
                await asyncio.to_thread(self._write_patiently, batches)
            finally:
                self._in_thread = False
        self._wrote()

    def _wrote(self) -> None:
        self._checkpoints.wrote()

    async def close(self) -> None:  # idempotent: a store may be closed by more than one owner
        await self._checkpoints.close()
        if self._patient is not None:
            async with self._patient:
                self._close()
        else:
            self._close()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


#: a write-ahead log larger than this after a PASSIVE checkpoint is checkpointed again and truncated (TRUNCATE)
WAL_RESET_BYTES = 64 * 1024 * 1024


def checkpoint(path: str, reset_bytes: int | None = None) -> None:
    """A PASSIVE checkpoint of the SQLite database at ``path`` (WAL back into the file, with its ``fsync``), on a
    connection of its own: for a worker thread, never the event loop. Busy: the next one will do it.

    SQLite starts the WAL over only when a checkpoint has copied every frame and no reader still uses it; a PASSIVE
    checkpoint in another thread, beside a connection that keeps writing, almost never catches up with it, so under
    steady traffic the WAL grew without end — 3 to 7.5 GB per inbox after 350,000 documents, its index mapped into
    every process that has the database open, every read slower (bench/README.md, session 14). So once the WAL is
    over ``reset_bytes`` (default :data:`WAL_RESET_BYTES`) a TRUNCATE checkpoint follows: it waits (up to the
    connection's 1 s busy timeout) for the writer's transaction and the readers of old frames to finish — the event
    loop's writes meanwhile are BUSY and re-run in a waiting thread, as for any lock —, copies the rest and
    truncates the WAL to nothing."""
    db = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        if os.path.getsize(f"{path}-wal") > (WAL_RESET_BYTES if reset_bytes is None else reset_bytes):
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except (sqlite3.OperationalError, FileNotFoundError):
        pass
    finally:
        db.close()


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLite's "database is locked" (another connection holds the lock), as opposed to any other error."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


#: columns added after a store may already have been created (added, nullable, when missing)
ADDED_COLUMNS = ((refused_table, "server"),)


def missing_columns(added: Iterable[tuple[sa.Table, str]], present: Callable[[str], set[str]],
                    dialect: sa.Dialect) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` (nullable, the column's type in ``dialect``) for each ``(table, column)`` of
    ``added`` that the database lacks (``present``: a table's column names): a store created before those columns
    existed. Shared by the statistics store and both inbox stores."""
    return [f"ALTER TABLE {table.name} ADD COLUMN {column} {table.c[column].type.compile(dialect=dialect)}"
            for table, column in added if column not in present(table.name)]


def add_missing_columns(conn: sa.Connection, added: Iterable[tuple[sa.Table, str]]) -> None:
    """:func:`missing_columns` on a SQLAlchemy connection, executed."""
    inspector = sa.inspect(conn)
    for ddl in missing_columns(added, lambda name: {c["name"] for c in inspector.get_columns(name)}, conn.dialect):
        conn.execute(sa.text(ddl))


class StatsStore:
    """Async handle on the statistics store. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._writer: SqliteWriter | None = None
        if self.dialect == "sqlite":
            path = engine.url.database or ""
            if path and path != ":memory:":  # an in-memory database is per connection: keep it on the engine
                self._writer = SqliteWriter(path)

    @classmethod
    async def open(cls, url: str | None = None, *, create: bool = True) -> StatsStore:
        """Connect (``None`` → the SQLite file default) and create the schema if missing (idempotent)."""
        url = normalize_url(url)
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                parent = os.path.dirname(os.path.abspath(path))
                os.makedirs(parent, exist_ok=True)
            engine = create_async_engine(url, connect_args={"timeout": 30})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        store = cls(engine, url)
        if create:
            await store.create_schema()
        return store

    async def create_schema(self) -> None:
        """CREATE TABLE/INDEX IF NOT EXISTS; safe when several processes open the store at once (a catalog race
        between them — PostgreSQL's unique pg_type row, SQLite's lock — is retried)."""
        for attempt in range(6):
            try:
                async with self.engine.begin() as conn:
                    for table in metadata.sorted_tables:
                        await conn.execute(CreateTable(table, if_not_exists=True))
                        for index in sorted(table.indexes, key=lambda i: str(i.name)):
                            await conn.execute(CreateIndex(index, if_not_exists=True))
                    await conn.run_sync(add_missing_columns, ADDED_COLUMNS)
                return
            except sa.exc.DBAPIError:
                if attempt == 5:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self.engine.dispose()

    async def __aenter__(self) -> StatsStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def record(
        self,
        *,
        accepted: Sequence[Accepted] = (),
        delivered: Sequence[Delivered] = (),
        refused: Sequence[Refused] = (),
    ) -> None:
        """Store a batch in ONE transaction; rows already present (same unique key) are ignored."""
        batches = [
            (accepted_table, _dedupe(_accepted_rows(accepted), "key"), ("key",)),
            (delivered_table, _dedupe(_delivered_rows(delivered), "key", "recipient"), ("key", "recipient")),
            (refused_table, _dedupe(_refused_rows(refused), "message_id"), ("message_id",)),
        ]
        if not any(rows for _, rows, _ in batches):
            return
        if self._writer is not None:
            await self._writer.write([(_SQL[table.name], rows) for table, rows, _ in batches if rows])
            return
        async with self.engine.begin() as conn:
            for table, rows, keys in batches:
                if rows:  # executemany: one prepared statement, cached; the driver batches the rows
                    stmt = self._insert(table).on_conflict_do_nothing(index_elements=list(keys))
                    await conn.execute(stmt, rows)
