"""axis.blobs.FileBlobStore on a real directory: atomic commits named by the digest, reads and ranges, holds,
collection and the clean-up of interrupted uploads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from axis.blobs import BlobMissing, FileBlobStore
from axis.core.blobref import BlobRef, blob_path


def test_spool_commit_is_named_by_its_digest(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)
    spool = store.spool()
    for i in range(0, len(data), 65536):
        spool.write(data[i:i + 65536])
    assert b"".join(spool.chunks()) == data
    assert not any(store.blobs())  # nothing visible before the commit
    ref = spool.commit()
    assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data))
    assert (tmp_path / blob_path(ref.sha256)).read_bytes() == data
    assert os.listdir(store.tmp) == []
    assert store.exists(ref) and b"".join(store.chunks(ref)) == data
    assert b"".join(store.chunks(ref, 10, 19)) == data[10:20]
    assert store.head(ref, 100) == data[:100]
    again = store.spool()
    again.write(data)
    assert again.commit() == ref  # the same bytes twice: one blob


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    spool = store.spool()
    spool.write(b"partial")
    spool.discard()
    assert os.listdir(store.tmp) == [] and not any(store.blobs())


def test_missing_blob(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    ref = BlobRef(hashlib.sha256(b"gone").hexdigest(), 4)
    assert not store.exists(ref)
    with pytest.raises(BlobMissing):
        store.open(ref)


def test_holds_and_collection(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    spool = store.spool()
    spool.write(b"<doc/>")
    ref = spool.commit()
    store.hold(ref.sha256, "submitted.s1")
    store.hold(ref.sha256, "000.00.00.H41")
    assert store.holders(ref.sha256) == ["000.00.00.H41", "submitted.s1"]
    store.release(ref.sha256, "submitted.s1")
    assert store.collect(retention_seconds=0) == 0  # a recipient has not acked yet
    store.release(ref.sha256, "000.00.00.H41")
    store.release(ref.sha256, "000.00.00.H41")  # twice: nothing to do
    assert store.holders(ref.sha256) == []
    assert store.collect(retention_seconds=3600) == 0  # kept for the retention
    assert store.exists(ref)
    assert store.collect(retention_seconds=0) == 1
    assert not store.exists(ref)


def test_clean_temps_removes_uploads_of_dead_processes_only(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    mine = store.spool()
    mine.write(b"in progress")
    # a crashed upload: another process of this host spooled, then died before committing
    code = ("import sys; from axis.blobs import FileBlobStore; s = FileBlobStore(sys.argv[1]).spool(); "
            "s.write(b'half'); import os; os._exit(1)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    assert len(os.listdir(store.tmp)) == 2
    (store.tmp / "stray-file").write_bytes(b"?")
    assert store.clean_temps() == 2
    assert os.listdir(store.tmp) == [mine.path.name]  # the live upload is kept
    mine.discard()


def test_clean_temps_removes_abandoned_uploads_of_other_machines(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    other = store.tmp / "another_host.1.abcd"  # pid 1 of another container: its pid says nothing here
    other.write_bytes(b"half")
    assert store.clean_temps() == 0  # recent: may be a live upload
    old = os.stat(other).st_mtime - 7 * 3600
    os.utime(other, (old, old))
    assert store.clean_temps() == 1 and os.listdir(store.tmp) == []


def test_usage(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    assert store.usage() == (0, 0)
    for data in (b"<a/>", b"<bb/>"):
        spool = store.spool()
        spool.write(data)
        spool.commit()
    assert store.usage() == (2, 9)
