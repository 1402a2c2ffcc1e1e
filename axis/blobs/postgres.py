"""The blob store in PostgreSQL large objects (``blobs.url``): for endpoint hosts and routers on machines that share
no filesystem, and for operators who back up one database rather than a directory.

Layout (created on first use, in the database of ``blobs.url``)::

    axis_blobs(sha256 PRIMARY KEY, oid, size, created_at)   one large object per blob, named by its SHA-256
    axis_blob_holds(sha256, holder)                         one row per reason to keep a blob

An upload is spooled to a local temporary file as with the filesystem store (``blobs.dir/tmp``: hashed as it comes,
read back for the verification, cleaned by :meth:`PostgresBlobStore.clean_temps` after a crash), then copied into a
new large object and named in ``axis_blobs`` in **one transaction**: a crash mid-commit leaves neither a row nor a
large object (large objects are transactional), so no blob is ever seen half-written. The bytes are read with
``lo_get(oid, offset, length)``, one chunk per call, so a download or a range holds one chunk in memory.

Commit, hold and collection of one blob take the same transaction-scoped advisory lock (``pg_advisory_xact_lock``
on the digest): a hold taken while a collection looks at the blob either comes first (the blob is kept) or after
(the blob is gone, and the holder's commit of the same bytes makes it again) — the filesystem store, without
locks, leaves that moment open. Ages are the database's clock, the same for every machine.

Connections: one per thread (the store is called from the event loop and from worker threads), autocommit, opened
on first use; an operation whose connection broke (PostgreSQL restarted) runs once more on a new one. A database
that cannot be reached is :class:`~axis.blobs.store.BlobStoreUnavailable` — retry later —, never
:class:`~axis.blobs.store.BlobMissing`, which refuses a document. A reader (:meth:`PostgresBlobStore.open`) has a
connection of its own for its lifetime.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from axis.blobs.store import (
    CHUNK,
    BlobMissing,
    BlobStore,
    BlobStoreUnavailable,
    FileSpool,
    Spool,
    clean_temps,
    temp_path,
    this_host,
)
from axis.core.blobref import BlobRef, hold_name, removable

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("axis.blobs")
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS axis_blobs (
    sha256 text PRIMARY KEY,
    oid oid NOT NULL,
    size bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS axis_blob_holds (
    sha256 text NOT NULL,
    holder text NOT NULL,
    PRIMARY KEY (sha256, holder)
);
"""
#: the advisory lock that serializes creating the schema (processes starting together)
_SCHEMA_LOCK = 0x61786973_626C6F62  # "axisblob"
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it: the ``+driver`` of a SQLAlchemy URL (``postgresql+asyncpg://``) dropped."""
    return re.sub(r"^postgres(?:ql)?\+[a-z0-9_]+://", "postgresql://", url)


class PostgresBlobStore(BlobStore):
    """Blobs in PostgreSQL large objects (see the module docstring); uploads spool in ``spool_dir`` (local)."""

    def __init__(self, url: str, spool_dir: Path | str) -> None:
        import psycopg  # only where this store is configured

        self._psycopg = psycopg
        self.url = libpq_url(url)
        self.tmp = Path(spool_dir)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._host = this_host()
        self._local = threading.local()

        def create(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(SCHEMA)

        self._run(create)

    # -- connections ---------------------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except self._psycopg.OperationalError as exc:
            raise BlobStoreUnavailable(f"the blob store's database is unreachable: {_first_line(exc)}") from None

    def _run(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``op`` (one transaction at most) on this thread's connection; run again once on a new connection when
        that one had broken (PostgreSQL restarted, the connection killed): safe, as ``op`` either committed nothing
        or is idempotent. :class:`BlobStoreUnavailable` when the database cannot be reached."""
        for attempt in (1, 2):
            conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
            if conn is None or conn.closed:
                conn = self._local.conn = self._connect()
            try:
                return op(conn)
            except self._psycopg.OperationalError as exc:
                if not conn.broken and not conn.closed:
                    raise  # the statement failed, not the connection: a bug or a server limit, as it is
                self._local.conn = None
                if attempt == 2:
                    raise BlobStoreUnavailable(f"the blob store's database is unavailable: {_first_line(exc)}"
                                               ) from None
        raise AssertionError("unreachable")

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._run(lambda conn: conn.execute(sql, params).fetchone())

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        """Close this thread's connection (others close with their threads, or at exit)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- uploads -------------------------------------------------------------------------------------------------
    def spool(self) -> Spool:
        return FileSpool(temp_path(self.tmp, self._host), self._import, sync=False)

    def _import(self, path: Path, ref: BlobRef) -> None:
        """The spooled file into a new large object and its row, in one transaction (kept as it is when the same
        bytes are there already); the file is removed."""

        def copy(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(_LOCK, (ref.sha256,))
                if conn.execute("SELECT 1 FROM axis_blobs WHERE sha256 = %s", (ref.sha256,)).fetchone():
                    return
                oid = conn.execute("SELECT lo_create(0)").fetchone()[0]  # type: ignore[index]
                offset = 0
                with open(path, "rb") as f:
                    while piece := f.read(CHUNK):
                        conn.execute("SELECT lo_put(%s, %s, %s)", (oid, offset, piece))
                        offset += len(piece)
                if offset != ref.size:
                    raise OSError(f"spooled upload {path.name} has {offset} bytes, not {ref.size}")
                conn.execute("INSERT INTO axis_blobs (sha256, oid, size) VALUES (%s, %s, %s)",
                             (ref.sha256, oid, ref.size))

        try:
            self._run(copy)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def clean_temps(self) -> int:
        return clean_temps(self.tmp, self._host)

    # -- reads ---------------------------------------------------------------------------------------------------
    def exists(self, ref: BlobRef) -> bool:
        row = self._one("SELECT size FROM axis_blobs WHERE sha256 = %s", (ref.sha256,))
        return row is not None and row[0] == ref.size

    def open(self, ref: BlobRef) -> BinaryIO:
        row = self._one("SELECT oid, size FROM axis_blobs WHERE sha256 = %s", (ref.sha256,))
        if row is None:
            raise BlobMissing(f"blob {ref.sha256} is not in the store")
        return io.BufferedReader(_LargeObjectReader(self, ref.sha256, row[0], row[1]), CHUNK)

    def size_of(self, sha256: str) -> int:
        row = self._one("SELECT size FROM axis_blobs WHERE sha256 = %s", (sha256,))
        if row is None:
            raise BlobMissing(f"blob {sha256} is not in the store")
        return int(row[0])

    def blobs(self, sha256: str | None = None) -> Iterator[tuple[str, float]]:
        age = "extract(epoch FROM now() - created_at)::float8"
        if sha256 is None:
            rows = self._all(f"SELECT sha256, {age} FROM axis_blobs ORDER BY sha256")
        else:
            rows = self._all(f"SELECT sha256, {age} FROM axis_blobs WHERE sha256 = %s", (sha256,))
        for name, seconds in rows:
            yield name, float(seconds)

    def usage(self) -> tuple[int, int]:
        row = self._one("SELECT count(*), coalesce(sum(size), 0) FROM axis_blobs")
        assert row is not None
        return int(row[0]), int(row[1])

    # -- holds and collection ------------------------------------------------------------------------------------
    def hold(self, sha256: str, holder: str) -> None:
        def insert(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(_LOCK, (sha256,))
                conn.execute("INSERT INTO axis_blob_holds (sha256, holder) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (sha256, hold_name(holder)))

        self._run(insert)

    def release(self, sha256: str, holder: str) -> None:
        self._run(lambda conn: conn.execute("DELETE FROM axis_blob_holds WHERE sha256 = %s AND holder = %s",
                                            (sha256, hold_name(holder))))

    def holders(self, sha256: str) -> list[str]:
        return [r[0] for r in self._all("SELECT holder FROM axis_blob_holds WHERE sha256 = %s ORDER BY holder",
                                        (sha256,))]

    def delete(self, sha256: str) -> None:
        def delete(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(_LOCK, (sha256,))
                self._delete(conn, sha256)

        self._run(delete)

    def _delete(self, conn: psycopg.Connection[Any], sha256: str) -> None:
        row = conn.execute("DELETE FROM axis_blobs WHERE sha256 = %s RETURNING oid", (sha256,)).fetchone()
        if row is not None:
            conn.execute("SELECT lo_unlink(%s)", (row[0],))
            log.info("blob %s deleted (no holder, past its retention)", sha256)

    def collect(self, retention_seconds: float) -> int:
        """:meth:`BlobStore.collect` asking the database for the candidates (unheld, old enough) only."""
        rows = self._all("SELECT b.sha256 FROM axis_blobs b WHERE b.created_at <= now() - make_interval(secs => %s) "
                         "AND NOT EXISTS (SELECT 1 FROM axis_blob_holds h WHERE h.sha256 = b.sha256)",
                         (retention_seconds,))
        return sum(self.collect_one(r[0], retention_seconds) for r in rows)

    def collect_one(self, sha256: str, retention_seconds: float) -> bool:
        """Decided and done under the blob's lock (see the module docstring)."""

        def collect(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                conn.execute(_LOCK, (sha256,))
                row = conn.execute("SELECT extract(epoch FROM now() - created_at)::float8 FROM axis_blobs "
                                   "WHERE sha256 = %s", (sha256,)).fetchone()
                if row is None:
                    return False
                holds = conn.execute("SELECT count(*) FROM axis_blob_holds WHERE sha256 = %s", (sha256,)).fetchone()
                assert holds is not None
                if not removable(holds=int(holds[0]), age_seconds=float(row[0]),
                                 retention_seconds=retention_seconds):
                    return False
                self._delete(conn, sha256)
                return True

        return self._run(collect)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_shared: dict[tuple[str, Path], PostgresBlobStore] = {}
_shared_lock = threading.Lock()


def shared_store(url: str, spool_dir: Path) -> PostgresBlobStore:
    """One store per database and spool directory in a process: an endpoint host's logical servers share its
    connections (one per thread) instead of opening their own."""
    with _shared_lock:
        store = _shared.get((url, spool_dir))
        if store is None:
            store = _shared[(url, spool_dir)] = PostgresBlobStore(url, spool_dir)
        return store


class _LargeObjectReader(io.RawIOBase):
    """A blob's large object as a readable, seekable raw file: each read one ``lo_get`` on the reading thread's
    connection of the store — no connection held between reads, so a slow download (or many) never holds
    PostgreSQL's connections; a blob deleted meanwhile is :class:`BlobMissing`."""

    def __init__(self, store: PostgresBlobStore, sha256: str, oid: int, size: int) -> None:
        super().__init__()
        self._store = store
        self._missing = store._psycopg.errors.UndefinedObject
        self.sha256, self.oid, self.size = sha256, oid, int(size)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        try:
            row = self._store._one("SELECT lo_get(%s, %s, %s)", (self.oid, self.pos, want))
        except self._missing:
            raise BlobMissing(f"blob {self.sha256} was deleted while being read") from None
        data = bytes(row[0]) if row is not None else b""
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)
