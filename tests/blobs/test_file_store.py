"""axis.blobs.FileBlobStore's own layout: a blob is a file named by its digest, and the clean-up of uploads of
other machines (what every store does is tests/blobs/test_store.py)."""

from __future__ import annotations

import os
from pathlib import Path

from axis.blobs import FileBlobStore
from axis.core.blobref import blob_path


def test_a_blob_is_a_file_named_by_its_digest(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    spool = store.spool()
    spool.write(b"<doc/>")
    ref = spool.commit()
    assert (tmp_path / blob_path(ref.sha256)).read_bytes() == b"<doc/>"


def test_clean_temps_removes_abandoned_uploads_of_other_machines(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    other = store.tmp / "another_host.1.abcd"  # pid 1 of another container: its pid says nothing here
    other.write_bytes(b"half")
    assert store.clean_temps() == 0  # recent: may be a live upload
    old = os.stat(other).st_mtime - 7 * 3600
    os.utime(other, (old, old))
    assert store.clean_temps() == 1 and os.listdir(store.tmp) == []
