"""What every blob store does (axis.blobs.BlobStore), on each kind (a directory, PostgreSQL large objects):
commits named by the digest and idempotent, nothing visible before the commit, reads and ranges, holds and
collection after the retention, usage, and the clean-up of interrupted uploads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from axis.blobs import BlobMissing, BlobStore
from axis.core.blobref import BlobRef


def put(store: BlobStore, data: bytes) -> BlobRef:
    spool = store.spool()
    spool.write(data)
    return spool.commit()


def test_spool_commit_is_named_by_its_digest(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    spool = store.spool()
    for i in range(0, len(data), 65536):
        spool.write(data[i:i + 65536])
    assert b"".join(spool.chunks()) == data
    assert not any(store.blobs())  # nothing visible before the commit
    ref = spool.commit()
    assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data))
    assert [name for name, _ in store.blobs()] == [ref.sha256]
    assert store.exists(ref) and not store.exists(BlobRef(ref.sha256, ref.size - 1))
    assert b"".join(store.chunks(ref)) == data
    assert b"".join(store.chunks(ref, 10, 19)) == data[10:20]
    mib = 1024 * 1024
    assert b"".join(store.chunks(ref, mib - 5, 2 * mib + 5)) == data[mib - 5:2 * mib + 6]  # across reads
    assert store.head(ref, 100) == data[:100]
    with store.open(ref) as f:
        f.seek(-7, os.SEEK_END)
        assert f.read() == data[-7:]
    assert put(store, data) == ref  # the same bytes twice: one blob
    assert store.usage() == (1, len(data))
    assert os.listdir(store.tmp) == []


def test_discard_leaves_nothing(store: BlobStore) -> None:
    spool = store.spool()
    spool.write(b"partial")
    spool.discard()
    assert os.listdir(store.tmp) == [] and not any(store.blobs())


def test_missing_blob(store: BlobStore) -> None:
    ref = BlobRef(hashlib.sha256(b"gone").hexdigest(), 4)
    assert not store.exists(ref)
    with pytest.raises(BlobMissing):
        store.open(ref)
    with pytest.raises(OSError):
        store.size_of(ref.sha256)


def test_holds_and_collection(store: BlobStore) -> None:
    ref = put(store, b"<doc/>")
    store.hold(ref.sha256, "submitted.s1")
    store.hold(ref.sha256, "000.00.00.H41")
    store.hold(ref.sha256, "000.00.00.H41")  # twice: one hold
    assert store.holders(ref.sha256) == ["000.00.00.H41", "submitted.s1"]
    store.release(ref.sha256, "submitted.s1")
    assert store.collect(retention_seconds=0) == 0  # a recipient has not acked yet
    assert not store.collect_one(ref.sha256, 0)
    store.release(ref.sha256, "000.00.00.H41")
    store.release(ref.sha256, "000.00.00.H41")  # twice: nothing to do
    assert store.holders(ref.sha256) == []
    assert store.collect(retention_seconds=3600) == 0  # kept for the retention
    assert store.exists(ref)
    assert store.collect(retention_seconds=0) == 1
    assert not store.exists(ref) and store.usage() == (0, 0)
    assert not store.collect_one(ref.sha256, 0)  # gone already


def test_a_hold_may_come_before_the_blob(store: BlobStore) -> None:
    """The door holds an upload's digest before it commits it: the hold keeps the new blob."""
    data = b"<held-first/>"
    sha256 = hashlib.sha256(data).hexdigest()
    store.hold(sha256, "submitted.s1")
    ref = put(store, data)
    assert ref.sha256 == sha256
    assert store.collect(retention_seconds=0) == 0 and store.exists(ref)


def test_usage(store: BlobStore) -> None:
    assert store.usage() == (0, 0)
    for data in (b"<a/>", b"<bb/>"):
        put(store, data)
    assert store.usage() == (2, 9)
    assert sorted(store.size_of(name) for name, _ in store.blobs()) == [4, 5]


def test_clean_temps_removes_uploads_of_dead_processes_only(store: BlobStore, tmp_path: Path, store_url: str) -> None:
    mine = store.spool()
    mine.write(b"in progress")
    # a crashed upload: another process of this host spooled, then died before committing
    code = ("import os, sys; from axis.blobs import open_blobs; s = open_blobs(sys.argv[1], sys.argv[2]).spool(); "
            "s.write(b'half'); os._exit(1)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "blobs"), store_url], check=False)
    tmp = store.tmp
    assert len(os.listdir(tmp)) == 2
    (tmp / "stray-file").write_bytes(b"?")
    assert store.clean_temps() == 2
    assert os.listdir(tmp) == [mine.path.name]  # type: ignore[attr-defined]  # the live upload is kept
    mine.discard()
    assert not any(store.blobs())
