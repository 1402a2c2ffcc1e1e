"""The blob store: the interface and its filesystem implementation.

Layout of a :class:`FileBlobStore` (``blobs.dir``, default ``<work dir>/blobs``)::

    tmp/<host>.<pid>.<random>      uploads being received (spooled, hashed, verified)
    ab/abcdef…                     blobs, named by the SHA-256 of their bytes (axis.core.blobref.blob_path)
    holds/abcdef…/<holder>         one empty file per reason to keep a blob (axis.core.blobref.hold_name)

A blob appears only complete: written and synced under ``tmp/``, then renamed (atomic within one filesystem). A
crash mid-upload leaves a temporary file only, never a blob: :meth:`FileBlobStore.clean_temps` removes those of
processes no longer running (at each endpoint host's start). Holds are files so that every process sharing the
directory sees the same state without a database; :func:`axis.core.blobref.removable` decides what
:meth:`BlobStore.collect` deletes.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import BinaryIO

from axis.core.blobref import BlobRef, blob_path, hold_name, removable, temp_owner

log = logging.getLogger("axis.blobs")
CHUNK = 1024 * 1024
#: a temporary upload file not written to for this long is abandoned whoever wrote it (a process of another machine
#: or container, whose pid says nothing here): a live upload writes every few seconds at the slowest rate allowed
STALE_TEMP_SECONDS = 6 * 3600


class BlobMissing(FileNotFoundError):
    """The blob is not (or no longer) in the store."""


class BlobStoreUnavailable(ConnectionError):
    """The blob store cannot be reached (its database is down): nothing was done, the caller may retry — never
    taken for a missing blob (which refuses a document)."""


class Spool(abc.ABC):
    """An upload being received: written chunk by chunk and hashed as it comes; then committed as a blob (its
    name checked against the digest) or discarded."""

    size: int

    @abc.abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @property
    @abc.abstractmethod
    def sha256(self) -> str: ...

    @abc.abstractmethod
    def chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """The bytes written so far, read back (for the verification before the commit)."""

    @abc.abstractmethod
    def commit(self) -> BlobRef:
        """Make the bytes a blob (idempotent: the same bytes already there are kept); the spool is closed."""

    @abc.abstractmethod
    def discard(self) -> None: ...


class BlobStore(abc.ABC):
    """Content-addressed storage of big documents, shared by every process of an axis."""

    #: where this process's uploads spool (local temporary files, :func:`clean_temps`)
    tmp: Path

    @abc.abstractmethod
    def spool(self) -> Spool: ...

    @abc.abstractmethod
    def exists(self, ref: BlobRef) -> bool: ...

    @abc.abstractmethod
    def open(self, ref: BlobRef) -> BinaryIO:
        """The blob's bytes, readable and seekable (BlobMissing when it is gone)."""

    def chunks(self, ref: BlobRef, start: int = 0, end: int | None = None, chunk: int = CHUNK
               ) -> Generator[bytes, None, None]:
        """The bytes ``start`` to ``end`` (inclusive; default: to the last), ``chunk`` at a time."""
        last = ref.size - 1 if end is None else end
        with self.open(ref) as f:
            f.seek(start)
            left = last - start + 1
            while left > 0:
                piece = f.read(min(chunk, left))
                if not piece:
                    raise BlobMissing(f"blob {ref.sha256} is shorter than {ref.size} bytes")
                left -= len(piece)
                yield piece

    def head(self, ref: BlobRef, size: int = 4 * CHUNK) -> bytes:
        """The first ``size`` bytes (a document's header is there)."""
        return b"".join(self.chunks(ref, 0, min(ref.size, size) - 1)) if ref.size else b""

    @abc.abstractmethod
    def hold(self, sha256: str, holder: str) -> None: ...

    @abc.abstractmethod
    def release(self, sha256: str, holder: str) -> None: ...

    @abc.abstractmethod
    def holders(self, sha256: str) -> list[str]: ...

    @abc.abstractmethod
    def delete(self, sha256: str) -> None: ...

    @abc.abstractmethod
    def blobs(self, sha256: str | None = None) -> Iterator[tuple[str, float]]:
        """(sha256, age in seconds) of every blob (or of that one, when it is there)."""

    def usage(self) -> tuple[int, int]:
        """(blobs, bytes) kept in the store."""
        count = size = 0
        for sha256, _ in self.blobs():
            count += 1
            with contextlib.suppress(OSError):
                size += self.size_of(sha256)
        return count, size

    @abc.abstractmethod
    def size_of(self, sha256: str) -> int: ...

    def collect(self, retention_seconds: float) -> int:
        """Delete every blob nothing holds any more and older than the retention; how many were deleted."""
        deleted = 0
        for sha256, _ in list(self.blobs()):
            deleted += self.collect_one(sha256, retention_seconds)
        return deleted

    def collect_one(self, sha256: str, retention_seconds: float) -> bool:
        """:meth:`collect` for one blob (after the last ack); whether it was deleted."""
        for name, age in self.blobs(sha256):  # its age and holds read just before deleting it
            if removable(holds=len(self.holders(name)), age_seconds=age, retention_seconds=retention_seconds):
                self.delete(name)
                return True
        return False

    def close(self) -> None:
        """Release what this thread holds of the store (a database connection; nothing for a directory)."""
        return None

    @abc.abstractmethod
    def clean_temps(self) -> int:
        """Remove what crashed uploads left: temporary files of processes of this host that are gone, and any not
        written to for :data:`STALE_TEMP_SECONDS`."""


class FileSpool(Spool):
    """An upload spooled to a local temporary file (``<host>.<pid>.<random>``, see :func:`clean_temps`);
    ``place`` makes the file a blob at the commit (it is gone from ``path`` afterwards); ``sync``: the file is
    synced to disk first (it becomes the blob itself; not when its bytes are copied into a database)."""

    def __init__(self, path: Path, place: Callable[[Path, BlobRef], None], *, sync: bool = True) -> None:
        self._place = place
        self._sync = sync
        self.path = path
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed by commit/discard
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _close(self) -> None:
        if self._file is not None:
            self._file.flush()
            if self._sync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        if self._file is not None:
            self._file.flush()
        with open(self.path, "rb") as f:
            while piece := f.read(chunk):
                yield piece

    def commit(self) -> BlobRef:
        self._close()
        ref = BlobRef(self.sha256, self.size)
        self._place(self.path, ref)
        return ref

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore(BlobStore):
    """A directory (see the module docstring); every process of one machine may share it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.holds = self.root / "holds"
        for d in (self.root, self.tmp, self.holds):
            d.mkdir(parents=True, exist_ok=True)
        self._host = this_host()

    def spool(self) -> Spool:
        return FileSpool(temp_path(self.tmp, self._host), self._place)

    def _place(self, path: Path, ref: BlobRef) -> None:
        final = self.root / blob_path(ref.sha256)
        final.parent.mkdir(exist_ok=True)
        os.replace(path, final)  # the same bytes already there: replaced by themselves
        _fsync_dir(final.parent)

    def exists(self, ref: BlobRef) -> bool:
        try:
            return (self.root / blob_path(ref.sha256)).stat().st_size == ref.size
        except FileNotFoundError:
            return False

    def open(self, ref: BlobRef) -> BinaryIO:
        try:
            return open(self.root / blob_path(ref.sha256), "rb")
        except FileNotFoundError:
            raise BlobMissing(f"blob {ref.sha256} is not in the store") from None

    def size_of(self, sha256: str) -> int:
        return (self.root / blob_path(sha256)).stat().st_size

    def hold(self, sha256: str, holder: str) -> None:
        d = self.holds / sha256
        d.mkdir(exist_ok=True)
        (d / hold_name(holder)).touch()

    def release(self, sha256: str, holder: str) -> None:
        d = self.holds / sha256
        with contextlib.suppress(FileNotFoundError):
            (d / hold_name(holder)).unlink()
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty

    def holders(self, sha256: str) -> list[str]:
        try:
            return sorted(os.listdir(self.holds / sha256))
        except FileNotFoundError:
            return []

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / blob_path(sha256)).unlink()
        log.info("blob %s deleted (no holder, past its retention)", sha256)

    def blobs(self, sha256: str | None = None) -> Iterator[tuple[str, float]]:
        now = time.time()
        if sha256 is not None:
            with contextlib.suppress(FileNotFoundError):
                yield sha256, now - (self.root / blob_path(sha256)).stat().st_mtime
            return
        for top in os.scandir(self.root):
            if len(top.name) != 2 or not top.is_dir():
                continue
            for entry in os.scandir(top.path):
                with contextlib.suppress(FileNotFoundError):
                    yield entry.name, now - entry.stat().st_mtime

    def clean_temps(self, stale_seconds: float = STALE_TEMP_SECONDS) -> int:
        return clean_temps(self.tmp, self._host, stale_seconds)


def this_host() -> str:
    """This machine's name as the first part of a temporary upload's name (no dots: :func:`temp_owner` splits there)."""
    return hold_name(socket.gethostname().replace(".", "_"))


def temp_path(tmp: Path, host: str) -> Path:
    """A new temporary upload file's path in ``tmp``: ``<host>.<pid>.<random>`` (:func:`clean_temps` reads it)."""
    return tmp / f"{host}.{os.getpid()}.{secrets.token_hex(8)}"


def clean_temps(tmp: Path, host: str, stale_seconds: float = STALE_TEMP_SECONDS) -> int:
    """Remove from ``tmp`` the temporary uploads of processes of ``host`` that are gone, and any file not written
    to for ``stale_seconds``; how many were removed."""
    removed = 0
    now = time.time()
    for entry in os.scandir(tmp):
        owner = temp_owner(entry.name)
        try:
            stale = now - entry.stat().st_mtime > stale_seconds
        except FileNotFoundError:
            continue
        # not ours to judge by pid (another machine or container), untouched for that long: abandoned
        if owner is None or stale or (owner[0] == host and not _alive(owner[1])):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    if removed:
        log.info("blob store: %d temporary files of interrupted uploads removed", removed)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
