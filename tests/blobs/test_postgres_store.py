"""axis.blobs.postgres.PostgresBlobStore on a real PostgreSQL: a crash mid-commit leaves neither a blob nor a large
object, the same bytes committed at once make one blob, a blob deleted under a reader is BlobMissing, a hold and a
collection of one blob wait for each other, two stores (two machines) share the blobs, and the configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from axis.blobs import BlobMissing, BlobStoreUnavailable, open_blobs
from axis.blobs.postgres import PostgresBlobStore, libpq_url, shared_store
from axis.config import ConfigError
from axis.config.loader import config_from_dict
from tests.blobs.test_store import put

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_store(tmp_path: Path, pg_blobs_url: str) -> Iterator[PostgresBlobStore]:
    store = PostgresBlobStore(pg_blobs_url, tmp_path / "tmp")
    yield store
    store.close()


def large_objects(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
        assert row is not None
        return int(row[0])


def test_a_crash_mid_commit_leaves_no_blob_and_no_large_object(tmp_path: Path, pg_blobs_url: str) -> None:
    # the process dies after a first megabyte went into the large object, inside the commit's transaction
    code = """
import os, sys
import axis.blobs.postgres as pg
from axis.blobs.postgres import PostgresBlobStore
store = PostgresBlobStore(sys.argv[1], sys.argv[2])
spool = store.spool()
spool.write(os.urandom(3 * 1024 * 1024))
real_open = open
class Dying:
    def __init__(self, path, mode): self.f = real_open(path, mode); self.reads = 0
    def __enter__(self): return self
    def __exit__(self, *a): self.f.close()
    def read(self, n):
        self.reads += 1
        if self.reads == 2:
            os._exit(3)
        return self.f.read(n)
pg.open = Dying
spool.commit()
"""
    spool_dir = tmp_path / "tmp"
    done = subprocess.run([sys.executable, "-c", code, pg_blobs_url, str(spool_dir)], check=False)
    assert done.returncode == 3
    store = PostgresBlobStore(pg_blobs_url, spool_dir)
    try:
        assert not any(store.blobs()) and large_objects(pg_blobs_url) == 0
        assert len(os.listdir(spool_dir)) == 1  # the spooled upload of the dead process …
        assert store.clean_temps() == 1 and os.listdir(spool_dir) == []  # … removed at the next start
    finally:
        store.close()


def test_the_same_bytes_committed_at_once_make_one_blob(tmp_path: Path, pg_blobs_url: str) -> None:
    data = os.urandom(2 * 1024 * 1024)
    stores = [PostgresBlobStore(pg_blobs_url, tmp_path / f"m{i}") for i in range(4)]
    refs = []

    def commit(store: PostgresBlobStore) -> None:
        spool = store.spool()
        spool.write(data)
        refs.append(spool.commit())
        store.close()

    threads = [threading.Thread(target=commit, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refs) == 4 and len(set(refs)) == 1
    assert stores[0].usage() == (1, len(data)) and large_objects(pg_blobs_url) == 1
    assert b"".join(stores[1].chunks(refs[0])) == data  # another machine's store reads it
    stores[0].close()
    stores[1].close()


def test_a_blob_deleted_under_a_reader_is_missing(pg_store: PostgresBlobStore, pg_blobs_url: str) -> None:
    ref = put(pg_store, os.urandom(3 * 1024 * 1024))
    pieces = pg_store.chunks(ref)
    next(pieces)
    pg_store.delete(ref.sha256)
    assert large_objects(pg_blobs_url) == 0
    with pytest.raises(BlobMissing):
        list(pieces)


def test_a_collection_waits_for_a_hold_of_the_same_blob(pg_store: PostgresBlobStore, pg_blobs_url: str) -> None:
    store = pg_store
    ref = put(store, b"<doc/>")
    result: list[bool] = []
    # another process holds the blob's lock (as hold() does while it inserts its row)
    with psycopg.connect(libpq_url(pg_blobs_url)) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (ref.sha256,))
        collector = threading.Thread(target=lambda: result.append(store.collect_one(ref.sha256, 0)))
        collector.start()
        time.sleep(0.5)
        assert result == [] and collector.is_alive()  # waiting for the lock
        other.execute("INSERT INTO axis_blob_holds (sha256, holder) VALUES (%s, 'x')", (ref.sha256,))
    collector.join(10)
    assert result == [False] and store.exists(ref)  # it saw the hold: kept


def test_one_store_per_database_in_a_process(tmp_path: Path, pg_blobs_url: str) -> None:
    a = open_blobs(tmp_path / "blobs", pg_blobs_url)
    assert a is open_blobs(tmp_path / "blobs", pg_blobs_url) is shared_store(pg_blobs_url, tmp_path / "blobs" / "tmp")
    assert isinstance(a, PostgresBlobStore) and a.tmp == tmp_path / "blobs" / "tmp"


def test_configuration(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://axis@127.0.0.1/axis"
    assert config_from_dict({"blobs": {"url": url}}, base=tmp_path, env={}).blobs.url == url
    assert config_from_dict({}, base=tmp_path, env={"AXIS_BLOBS_URL": url}).blobs.url == url
    assert config_from_dict({}, base=tmp_path, env={}).blobs.url == ""
    assert libpq_url(url) == "postgresql://axis@127.0.0.1/axis"
    with pytest.raises(ConfigError, match=r"blobs\.url must be a PostgreSQL URL"):
        config_from_dict({"blobs": {"url": "s3://bucket"}}, base=tmp_path, env={})


def _db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _admin(url: str, *statements: str) -> None:
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        for sql in statements:
            admin.execute(sql)


def cut_database(url: str, allow: bool) -> None:
    """The database refuses new connections (and its open ones are killed), or takes them again."""
    name = _db_name(url)
    if allow:
        _admin(url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    else:
        _admin(url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
               f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


def test_a_killed_connection_is_replaced(pg_store: PostgresBlobStore, pg_blobs_url: str) -> None:
    ref = put(pg_store, b"<doc/>")
    cut_database(pg_blobs_url, allow=False)  # e.g. PostgreSQL restarted under the store
    cut_database(pg_blobs_url, allow=True)
    assert pg_store.exists(ref)  # the broken connection replaced, the statement run again
    pg_store.hold(ref.sha256, "000.00.00.H41")
    assert pg_store.holders(ref.sha256) == ["000.00.00.H41"]


def test_an_unreachable_database_is_unavailable_never_missing(pg_store: PostgresBlobStore, pg_blobs_url: str
                                                             ) -> None:
    store = pg_store
    ref = put(store, b"<doc/>")
    reader = store.open(ref)
    cut_database(pg_blobs_url, allow=False)
    try:
        for call in (lambda: store.exists(ref), lambda: store.open(ref), lambda: store.hold(ref.sha256, "x"),
                     lambda: store.collect_one(ref.sha256, 0), reader.read):
            with pytest.raises(BlobStoreUnavailable) as caught:
                call()
            assert not isinstance(caught.value, BlobMissing)  # a missing blob refuses a document: an outage must not
        again = store.spool()
        again.write(b"<other/>")
        with pytest.raises(BlobStoreUnavailable):
            again.commit()
        assert os.listdir(store.tmp) == []  # the spooled upload is not left behind
    finally:
        cut_database(pg_blobs_url, allow=True)
    assert store.exists(ref) and store.holders(ref.sha256) == []


def test_a_store_that_cannot_start_says_so(tmp_path: Path) -> None:
    with pytest.raises(BlobStoreUnavailable, match="unreachable"):
        PostgresBlobStore("postgresql://postgres@127.0.0.1:1/nothing", tmp_path / "tmp")


def test_readers_hold_no_connection(pg_store: PostgresBlobStore, pg_blobs_url: str) -> None:
    """Slow downloads (each an open reader) do not take PostgreSQL's connections: reads use the thread's."""
    ref = put(pg_store, os.urandom(2 * 1024 * 1024))
    readers = [pg_store.open(ref) for _ in range(50)]
    for r in readers:
        assert len(r.read(1000)) == 1000  # each started, none finished
    with psycopg.connect(libpq_url(pg_blobs_url)) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone()
    assert row is not None and row[0] <= 2  # this thread's and the count's own
    for r in readers:
        r.close()
