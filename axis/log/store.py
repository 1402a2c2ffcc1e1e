"""The evidence log's store: an append-only RFC 9162 Merkle log in SQL (SQLite by default, PostgreSQL by URL).

Tables (``axis_log_*``):

- ``leaves``  ``idx`` (0, 1, 2, … — the leaf index), ``key_hash`` (UNIQUE: the first 16 bytes of SHA-256 of
  :meth:`Event.key`, so a redelivered event is never appended twice), ``leaf`` (the canonical bytes), and
  copies of what searches filter on (``kind``, ``at``, ``sender``, ``document_id``, ``agency``; indexed);
- ``nodes``   the hash of every perfect subtree, leaf hashes included: ``id = level << 48 | index`` (the subtree of
  ``2**level`` leaves starting at leaf ``index * 2**level``), ``hash``. An append adds the leaf hashes and the
  subtrees they complete; a root or a proof reads O(log n) of them in one query and never rehashes the log;
- ``sth`` and ``certs``  the signed tree heads (the log certificate stored once per certificate);
- ``meta``    ``name``/``value`` pairs: ``archived_upto`` (see Retention).

**Retention.** ``axis log archive`` writes the oldest leaves to a sealed segment (:mod:`axis.log.segment`);
:meth:`LogStore.drop_archived` then deletes the leaves below a boundary ``upto`` that a tree head covers, and with
them every perfect-subtree hash inside ``[0, upto)`` except the few that proofs still need
(:func:`retained_below`): the subtrees of the tree of ``upto`` leaves (its RFC 9162 decomposition, at most one per
level) and the hash of leaf ``upto - 1``. Every subtree that a root of ``size >= upto`` leaves, an inclusion proof
of a leaf ``>= upto`` or a consistency proof between sizes ``>= upto`` reads is either one of those or reaches past
``upto`` (never dropped), so all of them stay computable and unchanged; a dropped leaf, or a proof that would need
a dropped hash, is a ValueError that says so. The boundary is ``meta.archived_upto``; the tree keeps its indices
and its size (an empty leaves table after a drop still has ``archived_upto`` leaves). Searches, traces and counts
see the leaves still stored.

:meth:`LogStore.append` is ONE transaction: events in the given order, each whose key is already stored keeps its
first index. A single writer appends (on PostgreSQL concurrent appends are serialized by an advisory lock; on
SQLite by ``BEGIN IMMEDIATE``); any number of readers, in this process or others (SQLite in WAL mode).

On SQLite the store runs ``sqlite3`` directly (no SQLAlchemy, no aiosqlite): appends on one connection in one
writer thread; short reads (a root, a proof: one query for all the subtrees it needs) inline on the event loop
on their own connection, as a WAL reader never waits for the writer — the thread hop cost more than the query;
:meth:`LogStore.verify`, and a read that meets a lock, on a reader thread. PostgreSQL goes through SQLAlchemy's
asyncpg engine; both run the same SQL through :class:`_Db`.

Arguments out of range (an index or a size beyond the log, a tree head that does not match it) raise
ValueError. :meth:`LogStore.verify` recomputes everything from the leaves and lists what does not match.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from axis.core import merkle
from axis.core.evidence import EVENT_TYPES, Event, SignedTreeHead, event_from_leaf, verify_sth
from axis.core.reasons import Refusal

T = TypeVar("T")

LEVEL_SHIFT = 48  # node id = level << 48 | index: 2**48 leaves, levels up to 48
KEY_HASH_BYTES = 16
#: PostgreSQL advisory lock taken by every append (serializes writers of one log).
PG_APPEND_LOCK = 0x6178697367  # "axisg"
CHUNK = 500  # values per IN (...) list
MAX_SEARCH = 10_000
MAX_PROBLEMS = 1_000  # verify() stops listing problems after this many (and says how many more)
DROP_STEP = 100_000  # drop_archived() deletes at most this many leaves per transaction (about a second on SQLite)
_KIND = {t: i for i, t in enumerate(EVENT_TYPES)}


def node_id(level: int, index: int) -> int:
    return level << LEVEL_SHIFT | index


def key_hash(event: Event) -> bytes:
    return hashlib.sha256(event.key().encode("utf-8")).digest()[:KEY_HASH_BYTES]


# ---- the schema -------------------------------------------------------------------------------------------------

_SQLITE_DDL = (
    "CREATE TABLE IF NOT EXISTS axis_log_leaves (idx INTEGER PRIMARY KEY, key_hash BLOB NOT NULL UNIQUE, "
    "leaf BLOB NOT NULL, kind INTEGER NOT NULL, at INTEGER NOT NULL, sender TEXT NOT NULL, "
    "document_id TEXT NOT NULL, agency TEXT)",
    "CREATE TABLE IF NOT EXISTS axis_log_nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS axis_log_certs (fp BLOB PRIMARY KEY, pem TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS axis_log_sth (tree_size INTEGER NOT NULL, ts INTEGER NOT NULL, "
    "root_hash BLOB NOT NULL, signature BLOB NOT NULL, cert_fp BLOB NOT NULL, PRIMARY KEY (tree_size, ts)) "
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS axis_log_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)
_PG_DDL = (
    "CREATE TABLE IF NOT EXISTS axis_log_leaves (idx BIGINT PRIMARY KEY, key_hash BYTEA NOT NULL UNIQUE, "
    "leaf BYTEA NOT NULL, kind SMALLINT NOT NULL, at BIGINT NOT NULL, sender TEXT NOT NULL, "
    "document_id TEXT NOT NULL, agency TEXT)",
    "CREATE TABLE IF NOT EXISTS axis_log_nodes (id BIGINT PRIMARY KEY, hash BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS axis_log_certs (fp BYTEA PRIMARY KEY, pem TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS axis_log_sth (tree_size BIGINT NOT NULL, ts BIGINT NOT NULL, "
    "root_hash BYTEA NOT NULL, signature BYTEA NOT NULL, cert_fp BYTEA NOT NULL, PRIMARY KEY (tree_size, ts))",
    "CREATE TABLE IF NOT EXISTS axis_log_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
)
#: secondary indexes (same SQL on both; on SQLite every index ends with the rowid, i.e. idx, implicitly)
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_axis_log_leaves_document ON axis_log_leaves (document_id, sender, idx)",
    "CREATE INDEX IF NOT EXISTS ix_axis_log_leaves_sender ON axis_log_leaves (sender, at)",
    "CREATE INDEX IF NOT EXISTS ix_axis_log_leaves_agency ON axis_log_leaves (agency, at) WHERE agency IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_axis_log_leaves_at ON axis_log_leaves (at)",
)

_INSERT_LEAF = ("INSERT INTO axis_log_leaves (idx, key_hash, leaf, kind, at, sender, document_id, agency) "
                "VALUES (:idx, :key_hash, :leaf, :kind, :at, :sender, :document_id, :agency)")
_INSERT_NODE = "INSERT INTO axis_log_nodes (id, hash) VALUES (:id, :hash)"
_LEAF_COLS = "idx, leaf"


# ---- one SQL dialect for sqlite3 and SQLAlchemy -----------------------------------------------------------------


class _Db(Protocol):
    """What the store's transactions need: named ``:params`` (a list value expands ``IN :name``)."""

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None: ...


@functools.lru_cache(maxsize=256)
def _expand(sql: str, name: str, count: int) -> str:
    """``IN :name`` -> ``IN (:name_0, …)`` for sqlite3 (SQLAlchemy's expanding parameters do this on PostgreSQL)."""
    return re.sub(rf":{name}\b", "(" + ", ".join(f":{name}_{i}" for i in range(count)) + ")", sql)


class _SqliteDb:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        flat: dict[str, Any] = {}
        for name, value in (params or {}).items():
            if isinstance(value, list | tuple):
                sql = _expand(sql, name, len(value))
                flat.update(zip([f"{name}_{i}" for i in range(len(value))], value, strict=True))
            else:
                flat[name] = value
        return self.conn.execute(sql, flat).fetchall()

    def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.executemany(sql, rows)


class _SaDb:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        params = dict(params or {})
        stmt = sa.text(sql)
        expanding: list[sa.BindParameter[Any]] = [
            sa.bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list | tuple)]
        if expanding:
            stmt = stmt.bindparams(*expanding)
        result = self.conn.execute(stmt, params)
        return [tuple(r) for r in result] if result.returns_rows else []

    def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.execute(sa.text(sql), list(rows))


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---- hashes from the nodes table --------------------------------------------------------------------------------


class _Fetched:
    def __init__(self, hashes: dict[tuple[int, int], bytes]) -> None:
        self.hashes = hashes

    def perfect(self, level: int, index: int) -> bytes:
        return self.hashes[(level, index)]


def _fetch(db: _Db, wanted: set[tuple[int, int]], size: int) -> _Fetched:
    """The hashes of ``wanted`` perfect subtrees; ValueError when one is missing (``size`` beyond the log, or a
    subtree dropped with the archived leaves)."""
    ids = [node_id(level, index) for level, index in wanted]
    found: dict[tuple[int, int], bytes] = {}
    for chunk in _chunks(ids):
        for nid, h in db.rows("SELECT id, hash FROM axis_log_nodes WHERE id IN :ids", {"ids": list(chunk)}):
            found[(nid >> LEVEL_SHIFT, nid & ((1 << LEVEL_SHIFT) - 1))] = bytes(h)
    if len(found) != len(wanted):
        upto = _archived_upto(db)
        if upto and any((index + 1) << level <= upto for level, index in wanted.difference(found)):
            raise ValueError(f"the leaves below {upto} are archived: the store no longer holds the hashes this "
                             f"needs (roots and proofs from {upto} leaves on only; see the archive segments)")
        raise ValueError(f"the log has fewer than {size} leaves")
    return _Fetched(found)


def _range_roots(db: _Db, ranges: Sequence[tuple[int, int]], size: int) -> list[bytes]:
    """The roots of leaf ranges of the tree of ``size`` leaves, from one query for their perfect subtrees
    (ValueError when the log has fewer than ``size`` leaves)."""
    wanted = merkle.perfect_subtrees(ranges)
    if size:
        wanted.add((0, size - 1))  # the last leaf of the tree exists
    if not wanted:
        return []
    src = _fetch(db, wanted, size)
    return [merkle.range_root(src, start, end) for start, end in ranges]


def _size(db: _Db) -> int:
    (top,) = db.rows("SELECT max(idx) FROM axis_log_leaves")[0]
    # no leaf left: the archived ones were dropped (the tree keeps its size) or the log is empty
    return _archived_upto(db) if top is None else int(top) + 1


def _archived_upto(db: _Db) -> int:
    rows = db.rows("SELECT value FROM axis_log_meta WHERE name = 'archived_upto'")
    return int(rows[0][0]) if rows else 0


def retained_below(upto: int) -> set[tuple[int, int]]:
    """The perfect subtrees (level, index) inside leaves ``[0, upto)`` that :meth:`LogStore.drop_archived` keeps:
    the RFC 9162 decomposition of the tree of ``upto`` leaves, and leaf ``upto - 1``'s hash (the proof of a tree of
    ``upto`` leaves reads it to know that the tree exists)."""
    if upto <= 0:
        return set()
    return {*merkle.perfect_ranges(0, upto), (0, upto - 1)}


def dropped_ranges(upto: int) -> list[tuple[int, int]]:
    """``(level, end)``: :meth:`LogStore.drop_archived` deletes the subtrees ``(level, 0)`` … ``(level, end - 1)``
    of each level — every one inside ``[0, upto)`` but :func:`retained_below`'s (the last one of a level, when
    kept)."""
    out = []
    level = 0
    while upto >> level:
        end = upto >> level
        if level == 0 or end & 1:  # (level, end - 1) is retained: leaf upto - 1, or a subtree of the decomposition
            end -= 1
        if end:
            out.append((level, end))
        level += 1
    return out


def _root(db: _Db, size: int) -> bytes:
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    return _range_roots(db, [(0, size)], size)[0] if size else merkle.EMPTY_ROOT


def _sth_row(row: tuple[Any, ...]) -> SignedTreeHead:
    size, ts, root, signature, pem = row
    return SignedTreeHead(int(size), int(ts), bytes(root).hex(), base64.b64encode(bytes(signature)).decode("ascii"),
                          str(pem))


_STH_SELECT = ("SELECT s.tree_size, s.ts, s.root_hash, s.signature, c.pem FROM axis_log_sth s "
               "JOIN axis_log_certs c ON c.fp = s.cert_fp")


# ---- URLs -------------------------------------------------------------------------------------------------------


def _sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL or bare path; None for a PostgreSQL URL."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite+pysqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    if "://" not in url:
        return url
    return None


def _pg_url(url: str) -> str:
    for plain in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    raise ValueError(f"unsupported log store URL: {url!r} (a file path, sqlite:///PATH or postgresql://...)")


# ---- the backends -----------------------------------------------------------------------------------------------


class _SqliteBackend:
    """``sqlite3`` connections, each used by one thread only: appends on the writer thread; short reads inline on
    the event loop (a WAL reader never waits for the writer: no thread hop, which cost more than the query
    itself); long reads (:meth:`LogStore.verify`), and a short read that meets a lock (a checkpoint, recovery),
    on the reader thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._conns: dict[str, sqlite3.Connection] = {}

    def _conn(self, role: str) -> sqlite3.Connection:
        conn = self._conns.get(role)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            # the loop never waits for a lock: it hands the read to the reader thread, which does
            conn.execute(f"PRAGMA busy_timeout={0 if role == 'inline' else 30000}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # the indexes on random keys (key_hash, document_id) stay in memory; checkpoints every 32 MB of WAL
            # instead of 4 (each writes back and fsyncs): together a quarter less CPU per leaf appended
            conn.execute(f"PRAGMA cache_size={-65536 if role == 'write' else -16384}")
            if role == "write":
                conn.execute("PRAGMA wal_autocheckpoint=8192")
            self._conns[role] = conn
        return conn

    def _run(self, role: str, begin: str, fn: Callable[[_Db], T]) -> T:
        conn = self._conn(role)
        conn.execute(begin)
        try:
            out = fn(_SqliteDb(conn))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    async def _submit(self, role: str, begin: str, fn: Callable[[_Db], T]) -> T:
        pool = self._pools.get(role)
        if pool is None:
            pool = self._pools[role] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"axis-log-{role}")
        return await asyncio.get_running_loop().run_in_executor(pool, self._run, role, begin, fn)

    async def write(self, fn: Callable[[_Db], T]) -> T:
        return await self._submit("write", "BEGIN IMMEDIATE", fn)

    async def read(self, fn: Callable[[_Db], T]) -> T:
        try:
            return self._run("inline", "BEGIN", fn)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        return await self._submit("read", "BEGIN", fn)

    async def read_long(self, fn: Callable[[_Db], T]) -> T:
        return await self._submit("read", "BEGIN", fn)

    async def create(self) -> None:
        def ddl(db: _Db) -> None:
            for sql in (*_SQLITE_DDL, *_INDEXES):
                db.rows(sql)

        await self.write(ddl)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        inline = self._conns.pop("inline", None)
        if inline is not None:
            inline.close()
        for role, pool in list(self._pools.items()):
            conn = self._conns.pop(role, None)
            if conn is not None:
                await loop.run_in_executor(pool, conn.close)
            pool.shutdown(wait=True)
        self._pools.clear()


class _PgBackend:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def write(self, fn: Callable[[_Db], T]) -> T:
        def locked(conn: sa.Connection) -> T:
            db = _SaDb(conn)
            db.rows("SELECT pg_advisory_xact_lock(:k)", {"k": PG_APPEND_LOCK})
            return fn(db)

        async with self.engine.begin() as conn:
            return await conn.run_sync(locked)

    async def read(self, fn: Callable[[_Db], T]) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(lambda c: fn(_SaDb(c)))

    read_long = read

    async def create(self) -> None:
        """CREATE … IF NOT EXISTS, retried: two processes creating at once race on PostgreSQL's catalog."""
        for attempt in range(6):
            try:
                async with self.engine.begin() as conn:
                    for sql in (*_PG_DDL, *_INDEXES):
                        await conn.execute(sa.text(sql))
                return
            except sa.exc.DBAPIError:
                if attempt == 5:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))

    async def close(self) -> None:
        await self.engine.dispose()


# ---- the store --------------------------------------------------------------------------------------------------


class LogStore:
    """Async handle on one evidence log. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, backend: _SqliteBackend | _PgBackend, url: str) -> None:
        self._backend = backend
        self.url = url
        self.dialect = "sqlite" if isinstance(backend, _SqliteBackend) else "postgresql"
        self._append_lock = asyncio.Lock()
        #: the writer's frontier: (size, hashes of the perfect subtrees of the tree of that size, largest first)
        self._frontier: tuple[int, list[bytes]] | None = None

    @classmethod
    async def open(cls, url: str | os.PathLike[str]) -> LogStore:
        """A file path or ``sqlite:///PATH`` (SQLite, WAL) or ``postgresql://…``; creates the tables (idempotent)."""
        text = os.fspath(url)
        path = _sqlite_path(text)
        backend: _SqliteBackend | _PgBackend
        if path is not None:
            if not path or path == ":memory:" or path.startswith("file:"):
                raise ValueError("the log store needs a database file (its readers and writer share it)")
            Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)
            backend = _SqliteBackend(path)
        else:
            backend = _PgBackend(create_async_engine(_pg_url(text), pool_size=5, max_overflow=5, pool_pre_ping=True))
        store = cls(backend, text)
        try:
            await backend.create()
        except BaseException:
            await backend.close()
            raise
        return store

    async def close(self) -> None:
        await self._backend.close()

    async def __aenter__(self) -> LogStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writing --------------------------------------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> list[int]:
        """Append ``events`` in order in ONE transaction; returns each one's leaf index (an event whose key is
        already stored, or repeated in ``events``, gets its first index and is not appended again)."""
        if not events:
            return []
        prepared = [(key_hash(e), e) for e in events]
        async with self._append_lock:
            indices, frontier = await self._backend.write(lambda db: self._append_tx(db, prepared))
            self._frontier = frontier
            return indices

    def _append_tx(self, db: _Db, prepared: list[tuple[bytes, Event]]
                   ) -> tuple[list[int], tuple[int, list[bytes]]]:
        n = _size(db)
        known: dict[bytes, int] = {}
        wanted = list({kh for kh, _ in prepared})
        for chunk in _chunks(wanted):
            for kh, idx in db.rows("SELECT key_hash, idx FROM axis_log_leaves WHERE key_hash IN :ks",
                                   {"ks": list(chunk)}):
                known[bytes(kh)] = int(idx)
        cached = self._frontier
        if cached is not None and cached[0] == n:
            frontier = list(cached[1])
        else:
            src = _fetch(db, {*merkle.perfect_ranges(0, n)}, n) if n else _Fetched({})
            frontier = [src.perfect(level, index) for level, index in merkle.perfect_ranges(0, n)] if n else []
        out: list[int] = []
        leaf_rows: list[dict[str, Any]] = []
        node_rows: list[dict[str, Any]] = []
        leaf_hash, node_hash = merkle.leaf_hash, merkle.node_hash
        for kh, event in prepared:
            idx = known.get(kh)
            if idx is not None:
                out.append(idx)
                continue
            idx = known[kh] = n
            n += 1
            out.append(idx)
            leaf = event.leaf()
            h = leaf_hash(leaf)
            leaf_rows.append({"idx": idx, "key_hash": kh, "leaf": leaf, "kind": _KIND[event.type], "at": event.at,
                              "sender": event.sender, "document_id": event.document_id, "agency": event.agency})
            node_rows.append({"id": idx, "hash": h})
            frontier.append(h)
            level, i = 0, idx
            while i & 1:  # the new leaf completes the subtrees of its trailing one bits
                right = frontier.pop()
                h = node_hash(frontier.pop(), right)
                level += 1
                i >>= 1
                frontier.append(h)
                node_rows.append({"id": node_id(level, i), "hash": h})
        db.many(_INSERT_LEAF, leaf_rows)
        db.many(_INSERT_NODE, node_rows)
        return out, (n, frontier)

    async def save_sth(self, sth: SignedTreeHead) -> None:
        """Store a signed tree head (again: nothing happens). ValueError when its size is beyond the log or its
        root is not the log's root at that size. Its signature is the signer's business (:func:`verify_sth`)."""
        pem = sth.certificate
        fp = hashlib.sha256(pem.encode("utf-8")).digest()
        signature = base64.b64decode(sth.signature, validate=True)

        def tx(db: _Db) -> None:
            n = _size(db)
            if sth.tree_size > n:
                raise ValueError(f"tree head of {sth.tree_size} leaves; the log has {n}")
            if _root(db, sth.tree_size).hex() != sth.root_hash:
                raise ValueError(f"the tree head's root is not the log's root at {sth.tree_size} leaves")
            db.rows("INSERT INTO axis_log_certs (fp, pem) VALUES (:fp, :pem) ON CONFLICT DO NOTHING",
                    {"fp": fp, "pem": pem})
            db.rows("INSERT INTO axis_log_sth (tree_size, ts, root_hash, signature, cert_fp) "
                    "VALUES (:size, :ts, :root, :sig, :fp) ON CONFLICT DO NOTHING",
                    {"size": sth.tree_size, "ts": sth.timestamp, "root": sth.root, "sig": signature, "fp": fp})

        await self._backend.write(tx)

    # -- reading --------------------------------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Leaves per event type (every type present, 0 when none): what the simulator and the demo compare with
        the axis's counters. Leaves dropped after archiving are not counted."""
        rows = await self._backend.read(lambda db: db.rows(
            "SELECT kind, count(*) FROM axis_log_leaves GROUP BY kind", {}))
        out = dict.fromkeys(EVENT_TYPES, 0)
        for kind, count in rows:
            out[EVENT_TYPES[int(kind)]] = int(count)
        return out

    async def size(self) -> int:
        return await self._backend.read(_size)

    async def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: the whole log); ValueError beyond the log."""
        def tx(db: _Db) -> bytes:
            return _root(db, _size(db) if size is None else size)

        return await self._backend.read(tx)

    async def leaf(self, index: int) -> bytes:
        """Leaf ``index``'s bytes; ValueError when the log has no such leaf or it was archived and dropped."""
        def tx(db: _Db) -> tuple[list[tuple[Any, ...]], int]:
            rows = db.rows("SELECT leaf FROM axis_log_leaves WHERE idx = :i", {"i": index})
            return rows, (0 if rows else _archived_upto(db))

        rows, upto = await self._backend.read(tx)
        if not rows:
            if 0 <= index < upto:
                raise ValueError(f"leaf {index} was archived and dropped from the store (it keeps the leaves from "
                                 f"{upto} on): read it from the archive segment that holds it")
            raise ValueError(f"no leaf {index} in the log")
        return bytes(rows[0][0])

    async def leaves_of(self, sender: str, document_id: str) -> list[tuple[int, bytes]]:
        """Every leaf of one document, in log order."""
        rows = await self._backend.read(lambda db: db.rows(
            f"SELECT {_LEAF_COLS} FROM axis_log_leaves WHERE document_id = :d AND sender = :s ORDER BY idx",
            {"d": document_id, "s": sender}))
        return [(int(i), bytes(leaf)) for i, leaf in rows]

    async def search(self, sender: str | None = None, recipient: str | None = None, document_id: str | None = None,
                     start_ms: int | None = None, end_ms: int | None = None, type: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[tuple[int, bytes]]:
        """Leaves matching every filter given, in log order, paged. ``recipient`` matches the leaves whose
        ``agency`` is that agency (``stored``, ``acked``: the recipient; ``status``: the recipient that sent
        it); ``start_ms <= at < end_ms``."""
        if type is not None and type not in _KIND:
            raise ValueError(f"unknown event type {type!r}")
        if not 0 < limit <= MAX_SEARCH or offset < 0:
            raise ValueError(f"limit must be in 1..{MAX_SEARCH} and offset at least 0")
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        for column, value in (("sender", sender), ("agency", recipient), ("document_id", document_id)):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        if start_ms is not None:
            where.append("at >= :start_ms")
            params["start_ms"] = start_ms
        if end_ms is not None:
            where.append("at < :end_ms")
            params["end_ms"] = end_ms
        if type is not None:
            where.append("kind = :kind")
            params["kind"] = _KIND[type]
        sql = (f"SELECT {_LEAF_COLS} FROM axis_log_leaves"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY idx LIMIT :limit OFFSET :offset")
        rows = await self._backend.read(lambda db: db.rows(sql, params))
        return [(int(i), bytes(leaf)) for i, leaf in rows]

    async def inclusion(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves (RFC 9162 2.1.3.1)."""
        ranges = merkle.inclusion_ranges(index, size)
        return await self._backend.read(lambda db: _range_roots(db, ranges, size))

    async def inclusions(self, indices: Sequence[int], size: int) -> list[list[bytes]]:
        """The audit paths of several leaves in the tree of ``size`` leaves, from one query (a receipt proves
        each recipient's ``stored`` leaf against the same tree head)."""
        per_leaf = [merkle.inclusion_ranges(index, size) for index in indices]
        if not per_leaf:
            return []

        def tx(db: _Db) -> list[list[bytes]]:
            roots = _range_roots(db, [r for ranges in per_leaf for r in ranges], size)
            out, at = [], 0
            for ranges in per_leaf:
                out.append(roots[at:at + len(ranges)])
                at += len(ranges)
            return out

        return await self._backend.read(tx)

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """The consistency path from the tree of ``first`` leaves to the tree of ``second`` (RFC 9162 2.1.4.1)."""
        ranges = merkle.consistency_ranges(first, second)
        if second > 0:
            # the trees exist even when the path is empty (first == second, first == 0)
            return await self._backend.read(lambda db: _range_roots(db, ranges, second))
        return []

    async def latest_sth(self) -> SignedTreeHead | None:
        rows = await self._backend.read(
            lambda db: db.rows(f"{_STH_SELECT} ORDER BY s.tree_size DESC, s.ts DESC LIMIT 1"))
        return _sth_row(rows[0]) if rows else None

    async def sth_covering(self, index: int) -> SignedTreeHead | None:
        """The earliest tree head whose tree holds leaf ``index`` (``tree_size > index``)."""
        rows = await self._backend.read(lambda db: db.rows(
            f"{_STH_SELECT} WHERE s.tree_size > :i ORDER BY s.tree_size, s.ts LIMIT 1", {"i": index}))
        return _sth_row(rows[0]) if rows else None

    # -- retention (module docstring; the segment files: axis.log.segment) ------------------------------------------

    async def archived_upto(self) -> int:
        """The archived boundary: leaves below it were dropped from the store (0: none)."""
        return await self._backend.read(_archived_upto)

    async def archive_bounds(self, before_ms: int) -> tuple[int, int, SignedTreeHead | None]:
        """What a segment of the leaves before ``before_ms`` (ms since the epoch) holds: ``(start, end, sth)`` —
        leaves ``start`` (the archived boundary) to ``end - 1``, where ``end`` is the largest size such that every
        leaf below it is before ``before_ms`` and a tree head covers it, and ``sth`` the latest tree head (the
        freshest signature; a consistency proof leads the segment's root to it). ``end == start`` and no tree
        head: nothing to archive."""
        def tx(db: _Db) -> tuple[int, int, SignedTreeHead | None]:
            start, n = _archived_upto(db), _size(db)
            (late,) = db.rows("SELECT min(idx) FROM axis_log_leaves WHERE at >= :t", {"t": before_ms})[0]
            (covered,) = db.rows("SELECT max(tree_size) FROM axis_log_sth")[0]
            end = min(n if late is None else int(late), int(covered or 0))
            if end <= start:
                return start, start, None
            rows = db.rows(f"{_STH_SELECT} ORDER BY s.tree_size DESC, s.ts DESC LIMIT 1")
            return start, end, _sth_row(rows[0])

        return await self._backend.read(tx)

    async def leaves_between(self, start: int, end: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """Up to ``limit`` leaves ``(index, leaf)`` with ``start <= index < end``, in log order (one query)."""
        rows = await self._backend.read(lambda db: db.rows(
            f"SELECT {_LEAF_COLS} FROM axis_log_leaves WHERE idx >= :a AND idx < :b ORDER BY idx LIMIT :limit",
            {"a": start, "b": end, "limit": limit}))
        return [(int(i), bytes(leaf)) for i, leaf in rows]

    async def decomposition(self, size: int) -> list[bytes]:
        """The hashes of the perfect subtrees that make the tree of ``size`` leaves (RFC 9162's decomposition,
        largest first; empty for 0): what a segment starting at leaf ``size`` needs to rebuild the roots of the
        trees it ends."""
        ranges = merkle.perfect_ranges(0, size) if size else []
        if not ranges:
            return []

        def tx(db: _Db) -> list[bytes]:
            src = _fetch(db, {*ranges, (0, size - 1)}, size)
            return [src.perfect(level, index) for level, index in ranges]

        return await self._backend.read(tx)

    async def drop_archived(self, upto: int) -> int:
        """Delete the leaves below ``upto`` (archived first: ``axis log archive``), with every
        perfect-subtree hash inside ``[0, upto)`` that no later root or proof needs (module docstring), and record
        ``upto`` as the archived boundary. Returns how many leaves were deleted (0 when ``upto`` is not above the
        boundary already). ValueError when ``upto`` is beyond the log, when no tree head covers it, or when the
        smallest tree head that does is not the log's root at its size (the store is damaged: nothing is
        dropped).

        A long range goes in steps of :data:`DROP_STEP` leaves, one transaction each (every step a valid
        boundary), so that the log writer never waits long for the write lock."""
        def check(db: _Db) -> None:
            n = _size(db)
            if upto > n:
                raise ValueError(f"cannot drop below {upto}: the log has {n} leaves")
            (covered,) = db.rows("SELECT max(tree_size) FROM axis_log_sth")[0]
            if covered is None or int(covered) < upto:
                raise ValueError(f"no signed tree head covers the first {upto} leaves: they cannot be dropped")

        await self._backend.read(check)
        total = 0
        while True:
            done = await self._backend.read(_archived_upto)
            if upto <= done:
                return total
            total += await self._drop_step(min(upto, done + DROP_STEP))

    async def _drop_step(self, upto: int) -> int:
        def tx(db: _Db) -> int:
            done = _archived_upto(db)
            if upto <= done:
                return 0
            n = _size(db)
            if upto > n:
                raise ValueError(f"cannot drop below {upto}: the log has {n} leaves")
            rows = db.rows(f"{_STH_SELECT} WHERE s.tree_size >= :k ORDER BY s.tree_size, s.ts LIMIT 1", {"k": upto})
            if not rows:
                raise ValueError(f"no signed tree head covers the first {upto} leaves: they cannot be dropped")
            sth = _sth_row(rows[0])
            if _root(db, sth.tree_size) != sth.root:
                raise ValueError(f"tree head {sth.tree_size}@{sth.timestamp} is not the log's root at its size: "
                                 "the store is damaged (run axis log verify); nothing dropped")
            _fetch(db, retained_below(upto), upto)  # what stays must be there
            (count,) = db.rows("SELECT count(*) FROM axis_log_leaves WHERE idx < :u", {"u": upto})[0]
            db.rows("DELETE FROM axis_log_leaves WHERE idx < :u", {"u": upto})
            for level, end in dropped_ranges(upto):
                db.rows("DELETE FROM axis_log_nodes WHERE id >= :a AND id < :b",
                        {"a": node_id(level, 0), "b": node_id(level, end)})
            db.rows("INSERT INTO axis_log_meta (name, value) VALUES ('archived_upto', :u) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value", {"u": upto})
            return int(count)

        async with self._append_lock:
            return await self._backend.write(tx)

    # -- checking -------------------------------------------------------------------------------------------------

    async def verify(self, ca_pems: Sequence[bytes], crl_pem: bytes | None = None) -> list[str]:
        """Recompute the log from its leaves: every leaf parses and matches its indexed columns, indices run
        0..n-1, every stored leaf hash and perfect subtree is what the leaves give (none missing, none extra),
        every tree head's signature and certificate verify (:func:`verify_sth`, now) and its root is the log's
        root at its size. Returns the problems found (empty: the log is intact).

        After :meth:`drop_archived`, indices run from the archived boundary ``a``; the subtrees kept inside
        ``[0, a)`` (:func:`retained_below`) must be there and nothing else of that range; they are checked as the
        halves of the subtrees that reach past ``a`` and through the roots of the tree heads of ``a`` leaves or
        more (a tree head covering ``a`` must exist). Tree heads of fewer leaves are checked for their signature
        only (their roots are in the archive segments)."""
        return await self._backend.read_long(lambda db: _Verifier(db, ca_pems, crl_pem).run())


class _Verifier:
    def __init__(self, db: _Db, ca_pems: Sequence[bytes], crl_pem: bytes | None) -> None:
        self.db = db
        self.ca_pems = ca_pems
        self.crl_pem = crl_pem
        self.problems: list[str] = []
        self.more = 0
        self.archived = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more += 1

    def run(self) -> list[str]:
        self.archived = _archived_upto(self.db)
        n = self.leaves()
        self.retained()
        self.levels(n)
        self.tree_heads(n)
        if self.more:
            self.problems.append(f"… and {self.more} more problems")
        return self.problems

    def leaves(self) -> int:
        """Check every leaf and its level-0 hash; returns the tree size (the highest index + 1, or the archived
        boundary when every leaf was dropped)."""
        db, expected, last, a = self.db, self.archived, -1, self.archived
        while True:
            rows = db.rows("SELECT l.idx, l.leaf, l.kind, l.at, l.sender, l.document_id, l.agency, n.hash "
                           "FROM axis_log_leaves l LEFT JOIN axis_log_nodes n ON n.id = l.idx "
                           "WHERE l.idx > :last ORDER BY l.idx LIMIT 2000", {"last": last})
            if not rows:
                break
            for idx, leaf, kind, at, sender, document_id, agency, stored in rows:
                idx, leaf = int(idx), bytes(leaf)
                if idx < a:
                    self.problem(f"leaf {idx} is below the archived boundary {a} (it should have been dropped)")
                    continue
                if idx != expected:
                    self.problem(f"leaves {expected}..{idx - 1} are missing" if idx > expected + 1
                                 else f"leaf {expected} is missing")
                expected = idx + 1
                try:
                    event = event_from_leaf(leaf)
                except Refusal as exc:
                    self.problem(f"leaf {idx} is not an event: {exc.detail}")
                else:
                    if (kind, at, sender, document_id, agency) != (
                            _KIND[event.type], event.at, event.sender, event.document_id, event.agency):
                        self.problem(f"leaf {idx}: the indexed columns do not match the leaf")
                if stored is None:
                    self.problem(f"leaf {idx} has no stored hash")
                elif bytes(stored) != merkle.leaf_hash(leaf):
                    self.problem(f"leaf {idx}: the stored hash is not the leaf's hash")
            last = int(rows[-1][0])
        (count,) = db.rows("SELECT count(*) FROM axis_log_nodes WHERE id >= :a AND id < :top",
                           {"a": a, "top": node_id(1, 0)})[0]
        (leaves,) = db.rows("SELECT count(*) FROM axis_log_leaves WHERE idx >= :a", {"a": a})[0]
        if int(count) != int(leaves):
            self.problem(f"{count} leaf hashes are stored for {leaves} leaves")
        return expected

    def retained(self) -> None:
        """Inside the archived range, exactly the subtrees :func:`retained_below` names are stored."""
        a = self.archived
        if not a:
            return
        kept = retained_below(a)
        ids = [node_id(level, index) for level, index in kept]
        found = {int(r[0]) for chunk in _chunks(ids)
                 for r in self.db.rows("SELECT id FROM axis_log_nodes WHERE id IN :ids", {"ids": list(chunk)})}
        for level, index in sorted(kept):
            if node_id(level, index) not in found:
                self.problem(f"subtree ({level}, {index}), kept for the archived leaves below {a}, has no stored hash")
        level = 0
        while a >> level:
            (count,) = self.db.rows("SELECT count(*) FROM axis_log_nodes WHERE id >= :lo AND id < :hi",
                                    {"lo": node_id(level, 0), "hi": node_id(level, a >> level)})[0]
            extra = int(count) - sum(1 for lv, _ in kept if lv == level)
            if extra > 0:
                self.problem(f"{extra} hashes of archived subtrees at level {level} are still stored")
            level += 1

    def levels(self, n: int) -> None:
        """Each perfect subtree of level L is the node hash of its two halves (stored at level L - 1)."""
        db = self.db
        level = 1
        while True:
            count = n >> level
            lo, hi = node_id(level, 0), node_id(level + 1, 0)
            (extra,) = db.rows("SELECT count(*) FROM axis_log_nodes WHERE id >= :a AND id < :b",
                               {"a": lo + count, "b": hi})[0]
            if int(extra):
                self.problem(f"{extra} hashes stored at level {level} beyond the {count} subtrees of the log")
            if count == 0:
                (beyond,) = db.rows("SELECT count(*) FROM axis_log_nodes WHERE id >= :b", {"b": hi})[0]
                if int(beyond):
                    self.problem(f"{beyond} hashes stored above level {level}")
                return
            # the subtrees inside the archived range were dropped (the kept ones: retained())
            for start in range(self.archived >> level, count, 2000):
                stop = min(count, start + 2000)
                below = dict(db.rows("SELECT id, hash FROM axis_log_nodes WHERE id >= :a AND id < :b",
                                     {"a": node_id(level - 1, 2 * start), "b": node_id(level - 1, 2 * stop)}))
                here = dict(db.rows("SELECT id, hash FROM axis_log_nodes WHERE id >= :a AND id < :b",
                                    {"a": node_id(level, start), "b": node_id(level, stop)}))
                for i in range(start, stop):
                    stored = here.get(node_id(level, i))
                    left, right = below.get(node_id(level - 1, 2 * i)), below.get(node_id(level - 1, 2 * i + 1))
                    if stored is None:
                        self.problem(f"subtree ({level}, {i}) has no stored hash")
                    elif left is not None and right is not None and \
                            bytes(stored) != merkle.node_hash(bytes(left), bytes(right)):
                        self.problem(f"subtree ({level}, {i}): the stored hash is not its halves' hash")
            level += 1

    def tree_heads(self, n: int) -> None:
        db, last, covering = self.db, (-1, -1), False
        while True:
            rows = db.rows(f"{_STH_SELECT} WHERE s.tree_size > :size OR (s.tree_size = :size AND s.ts > :ts) "
                           "ORDER BY s.tree_size, s.ts LIMIT 500", {"size": last[0], "ts": last[1]})
            if not rows:
                if self.archived and not covering:
                    self.problem(f"no tree head covers the archived boundary {self.archived}")
                return
            for row in rows:
                sth = _sth_row(row)
                name = f"tree head {sth.tree_size}@{sth.timestamp}"
                try:
                    verify_sth(sth, self.ca_pems, self.crl_pem)
                except Refusal as exc:
                    self.problem(f"{name}: {exc.detail}")
                if sth.tree_size > n:
                    self.problem(f"{name}: the log has only {n} leaves")
                    continue
                if sth.tree_size < self.archived:
                    continue  # its root is in the archive segments, not here
                covering = True
                try:
                    root = _root(db, sth.tree_size)
                except (ValueError, KeyError):
                    self.problem(f"{name}: its root cannot be computed (hashes missing)")
                    continue
                if root != sth.root:
                    self.problem(f"{name}: its root is not the log's root at {sth.tree_size} leaves")
            last = (int(rows[-1][0]), int(rows[-1][1]))
