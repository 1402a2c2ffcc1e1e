"""Big documents by reference: what a reference is, how it is named, written and read — pure, no I/O.

A document over ``limits.inline_max_bytes`` is kept once in the content-addressed blob store
(:mod:`axis.blobs`): its name is the hex SHA-256 of its exact bytes (the same digest the evidence log records for
an inline document). What travels on RabbitMQ (the ``x-axis-blob`` header, :data:`axis.core.wire.H_BLOB`, with an
empty body) and what the endpoint stores keep in place of the bytes is a :class:`BlobRef`: that digest and the
size.

- header form: ``sha256:<64 hex>:<size>`` (a few dozen bytes, far under the 1 KB bound of every header);
- stored form (the ``data`` of an inbox or sent row): :data:`STORED_PREFIX` then the header form. It starts with a
  NUL byte, which no XML document may contain, so a stored reference is never mistaken for a document's bytes
  and needs no new column in existing databases;
- on disk: ``<store>/<first two hex>/<hex>`` (:func:`blob_path`), written under a temporary name in
  ``<store>/tmp`` and renamed into place once complete and checked: a blob is never seen half-written;
- holds (:func:`hold_name`): an empty file per reason to keep a blob — ``submitted.<server>`` from the door until
  the router has routed it, one per recipient agency from the router until that agency acked it — and
  :func:`removable` decides when a blob may go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from axis.core.reasons import Reason, Refusal

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEADER = re.compile(r"sha256:([0-9a-f]{64}):([0-9]{1,15})")
#: what a stored reference starts with (NUL: never in an XML document)
STORED_PREFIX = b"\x00axis-blob "
#: names of holds and temporary files: what an agency code or server id may hold, anything else is escaped
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,100}")
#: a hold's name for the door, before the router took the document (``submitted.<server id>``)
HOLD_SUBMITTED = "submitted"


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A document kept in the blob store: the hex SHA-256 of its exact bytes and their number."""

    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.sha256) or self.size < 0:
            raise ValueError(f"not a blob reference: {self.sha256!r} {self.size!r}")

    @property
    def header(self) -> str:
        return f"sha256:{self.sha256}:{self.size}"

    @property
    def stored(self) -> bytes:
        return STORED_PREFIX + self.header.encode()


def read_header(value: object) -> BlobRef | None:
    """The reference of an ``x-axis-blob`` header (None when absent); Refusal(SCHEMA_INVALID) when malformed."""
    if value is None or value == "" or value == b"":
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    m = _HEADER.fullmatch(text)
    if m is None:
        raise Refusal(Reason.SCHEMA_INVALID, "x-axis-blob is not sha256:<hex>:<size>")
    return BlobRef(m.group(1), int(m.group(2)))


def read_stored(data: bytes) -> BlobRef | None:
    """The reference a stored row holds in place of a document's bytes (None: the row holds the bytes)."""
    if not data.startswith(STORED_PREFIX):
        return None
    m = _HEADER.fullmatch(data[len(STORED_PREFIX):].decode("ascii", "replace"))
    return BlobRef(m.group(1), int(m.group(2))) if m else None


def blob_path(sha256: str) -> str:
    """The blob's path inside the store (two-level fan-out: at most 256 entries at the top)."""
    if not _HEX64.fullmatch(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"{sha256[:2]}/{sha256}"


def hold_name(holder: str) -> str:
    """A file name for a holder (an agency code, ``submitted.<server>``): kept when safe, else escaped."""
    if _SAFE.fullmatch(holder) and holder not in (".", ".."):
        return holder
    return "x-" + holder.encode().hex()[:200]


def submitted_hold(server_id: str) -> str:
    return hold_name(f"{HOLD_SUBMITTED}.{server_id}")


def removable(*, holds: int, age_seconds: float, retention_seconds: float) -> bool:
    """A blob may be deleted once nothing holds it (routed, and every recipient acked) and it is older than the
    retention (the evidence log's leaves name its digest: the bytes stay available as long as required)."""
    return holds == 0 and age_seconds >= retention_seconds


def temp_owner(name: str) -> tuple[str, int] | None:
    """(host name, pid) of a temporary upload file ``<host>.<pid>.<random>``; None for any other name."""
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One satisfiable byte range of a resource: ``start`` to ``end`` inclusive (RFC 9110 section 14)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(ValueError):
    """416: the Range header names no byte of the resource."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range of a ``Range: bytes=…`` header over a resource of ``size`` bytes; None to send it whole (no
    header, another unit, several ranges, or a malformed one: RFC 9110 lets a server ignore those);
    RangeNotSatisfiable when the range starts past the end."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not first:  # a suffix: the last N bytes
        if not last.isdigit() or int(last) == 0:
            return None if not last.isdigit() else _unsatisfiable(size)
        n = min(int(last), size)
        if n == 0:
            _unsatisfiable(size)
        return ByteRange(size - n, size - 1)
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    if start >= size:
        _unsatisfiable(size)
    return ByteRange(start, end)


def _unsatisfiable(size: int) -> ByteRange:
    raise RangeNotSatisfiable(f"bytes */{size}")
