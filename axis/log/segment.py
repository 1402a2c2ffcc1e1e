"""Sealed segments of the evidence log (issue 13, retention): ``axis log archive`` writes one,
``axis log verify --archive`` checks one offline.

A segment holds the leaves ``start`` … ``end - 1`` of the log — every leaf of a PREFIX of the log that is older than
a date, from the archived boundary on (``start`` is 0 until leaves have been dropped from the store, then the end
of the previous segment) — with what it takes to check them with no axis running: a ZIP file of

========================  ==========================================================================================
``mimetype``              first member, stored: ``application/vnd.axis.log-segment+zip``
``segment.json``          ``{"format": "axis-log-segment", "version": 1, "start": S, "end": K, "before": MS,
                          "min_at": MS, "max_at": MS, "left": [HEX, …], "root_hash": HEX}`` — ``left``: the
                          hashes of the perfect subtrees that make the tree of the first S leaves (RFC 9162's
                          decomposition, largest first; empty when S is 0); ``root_hash``: the root of the tree of
                          the first K leaves; every leaf's ``at`` is below ``before`` and between ``min_at`` and
                          ``max_at``
``leaves.jsonl``          the leaves S … K-1 in order, each its exact canonical bytes followed by ``\\n`` (a
                          canonical leaf never holds a line break): line ``n`` is leaf ``S + n``; deflated
``sth.json``              a signed tree head of N >= K leaves (contract section 5; the latest when archived)
``consistency.json``      the consistency proof from K to N leaves (contract shape; an empty path when K = N)
``log-certificate.pem``   the tree head's certificate
``ca.pem``                the axis CA certificate (informative: a verifier trusts its OWN copy)
``crl.pem``               the axis CA's CRL, when there was one
========================  ==========================================================================================

:func:`verify_segment` checks, in this order, and reports the first failure:

1. the container: a ZIP of exactly these members (``crl.pem`` optional), each once, ``mimetype`` first with its
   value, a ``segment.json`` of this shape (``PROOF_INVALID``);
2. the tree head: its shape, ``log-certificate.pem`` is its certificate, its signature and its certificate chain to
   the GIVEN CA at ``at`` (default now; :func:`axis.core.evidence.verify_sth`) — ``STH_INVALID``;
3. the leaves: each a canonical event leaf (:func:`axis.core.evidence.event_from_leaf`) whose ``at`` is below
   ``before`` and within ``[min_at, max_at]``, exactly ``K - S`` of them; their hashes, appended to ``left``, make
   ``root_hash`` (``PROOF_INVALID``);
4. ``root_hash`` is the tree head's root (K = N) or the consistency proof leads it there (``PROOF_INVALID``).

Tampering with a leaf, removing, adding or reordering one, or with ``left`` changes the root the leaves make; the
root cannot be changed without breaking the consistency proof against the signed tree head. Segments written one
after the other chain: the ``left`` of the next is the decomposition of the tree the previous one ends.

:func:`archive` writes a segment from a :class:`~axis.log.store.LogStore`: next to the target as a partial file,
checked with :func:`verify_segment` as a reader will, then renamed — a segment that exists verified when it was
written (and :meth:`LogStore.drop_archived` may then drop its leaves).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from axis.core import merkle
from axis.core.evidence import (
    MAX_INT,
    MAX_LEAF_BYTES,
    Event,
    SignedTreeHead,
    check_consistency,
    consistency_json,
    event_from_leaf,
    verify_sth,
)
from axis.core.evidence_bundle import open_container
from axis.core.reasons import Reason, Refusal
from axis.log.store import LogStore

MIMETYPE = "application/vnd.axis.log-segment+zip"
FORMAT = "axis-log-segment"
VERSION = 1
M_MIMETYPE = "mimetype"
M_SEGMENT = "segment.json"
M_LEAVES = "leaves.jsonl"
M_STH = "sth.json"
M_CONSISTENCY = "consistency.json"
M_LOG_CERT = "log-certificate.pem"
M_CA = "ca.pem"
M_CRL = "crl.pem"
REQUIRED = (M_MIMETYPE, M_SEGMENT, M_LEAVES, M_STH, M_CONSISTENCY, M_LOG_CERT, M_CA)
KNOWN = frozenset({*REQUIRED, M_CRL})
#: every member but the leaves is small (a tree head, two paths of at most 64 hashes, certificates, a CRL)
MAX_MEMBER_BYTES = 8 * 1024 * 1024
HEADER_FIELDS = ("format", "version", "start", "end", "before", "min_at", "max_at", "left", "root_hash")
CHUNK = 10_000  # leaves per read from the store, and between two progress reports
_ZIP_EPOCH = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)

#: ``progress(phase, done, total)``: phase ``"write"`` or ``"verify"``, leaves done of the total
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class SegmentReport:
    """What :func:`verify_segment` found (or :func:`archive` wrote): ``ok`` with ``reason`` None, or the first
    failure's ``reason`` and ``detail``; the header's facts once read, the tree head once it verified."""

    ok: bool
    reason: Reason | None = None
    detail: str = ""
    start: int | None = None
    end: int | None = None
    before: int | None = None
    min_at: int | None = None
    max_at: int | None = None
    root_hash: str | None = None
    sth: SignedTreeHead | None = None

    @property
    def leaves(self) -> int:
        return (self.end or 0) - (self.start or 0)

    def as_dict(self) -> dict[str, Any]:
        """``{"ok", "reason", "detail", "start", "end", "leaves", …, "sth"}``, JSON-ready."""
        return {"ok": self.ok, "reason": self.reason.value if self.reason else None, "detail": self.detail,
                "start": self.start, "end": self.end, "leaves": self.leaves, "before": self.before,
                "min_at": self.min_at, "max_at": self.max_at, "root_hash": self.root_hash,
                "tree_size": self.sth.tree_size if self.sth else None,
                "sth": self.sth.to_json() if self.sth else None}


class _Tree:
    """The right edge of a growing tree: the hashes of its decomposition, largest first (as the store's writer
    keeps it); :meth:`add` appends a leaf hash, :meth:`root` is the Merkle Tree Hash of the leaves so far."""

    def __init__(self, size: int, decomposition: list[bytes]) -> None:
        self.size = size
        self.edge = list(decomposition)

    def add(self, h: bytes) -> None:
        edge, i = self.edge, self.size
        edge.append(h)
        while i & 1:  # the new leaf completes the subtrees of its trailing one bits
            right = edge.pop()
            edge.append(merkle.node_hash(edge.pop(), right))
            i >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self.edge:
            return merkle.EMPTY_ROOT
        root = self.edge[-1]
        for h in reversed(self.edge[:-1]):
            root = merkle.node_hash(h, root)
        return root


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _zip_time(sth: SignedTreeHead) -> tuple[int, int, int, int, int, int]:
    when = max(dt.datetime.fromtimestamp(sth.timestamp / 1000, dt.UTC), _ZIP_EPOCH)
    return (when.year, when.month, when.day, when.hour, when.minute, when.second)


# ---- writing ----------------------------------------------------------------------------------------------------


async def archive(store: LogStore, before_ms: int, path: str | os.PathLike[str], *, ca_pem: bytes,
                  crl_pem: bytes | None = None, progress: Progress | None = None) -> SegmentReport | None:
    """Write the segment of the leaves before ``before_ms`` (ms since the epoch; :meth:`LogStore.archive_bounds`)
    to ``path`` and return what :func:`verify_segment` found in it; None when there is nothing to archive (no
    leaf past the archived boundary is both older and covered by a tree head). The file is written next to
    ``path`` first and renamed once it verifies against ``ca_pem`` (now). Refusal (``PROOF_INVALID``,
    ``STH_INVALID``) when it does not — the store is damaged or its tree head does not verify: nothing is left
    at ``path``. FileExistsError when ``path`` exists."""
    target = Path(path)
    if target.exists():
        raise FileExistsError(f"{target} exists")
    start, end, sth = await store.archive_bounds(before_ms)
    if sth is None:
        return None
    left = await store.decomposition(start)
    root = await store.root(end)
    consistency = await store.consistency(end, sth.tree_size)
    partial = target.with_name(f".{target.name}.partial")
    try:
        await _write(store, partial, start, end, before_ms, left, root, sth, consistency, ca_pem, crl_pem, progress)
        report = await asyncio.to_thread(verify_segment, partial, ca_pem, crl_pem=crl_pem, progress=progress)
        if not report.ok:
            assert report.reason is not None
            raise Refusal(report.reason, f"the segment written does not verify: {report.detail}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return report


async def _write(store: LogStore, path: Path, start: int, end: int, before_ms: int, left: list[bytes], root: bytes,
                 sth: SignedTreeHead, consistency: list[bytes], ca_pem: bytes, crl_pem: bytes | None,
                 progress: Progress | None) -> None:
    when = _zip_time(sth)
    tree = _Tree(start, left)
    min_at, max_at = MAX_INT, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(M_MIMETYPE, when)
        info.compress_type = zipfile.ZIP_STORED
        zf.writestr(info, MIMETYPE.encode("ascii"))
        info = zipfile.ZipInfo(M_LEAVES, when)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        with zf.open(info, "w", force_zip64=True) as out:
            pos = start
            while pos < end:
                rows = await store.leaves_between(pos, end, CHUNK)
                if not rows or rows[0][0] != pos or rows[-1][0] != pos + len(rows) - 1:
                    raise Refusal(Reason.PROOF_INVALID, f"the store's leaves from {pos} are not all there")
                for _, leaf in rows:
                    at = orjson.loads(leaf).get("at")
                    if isinstance(at, int):
                        min_at, max_at = min(min_at, at), max(max_at, at)
                    tree.add(merkle.leaf_hash(leaf))
                out.write(b"".join(leaf + b"\n" for _, leaf in rows))
                pos += len(rows)
                if progress is not None:
                    progress("write", pos - start, end - start)
        if tree.root() != root:
            raise Refusal(Reason.PROOF_INVALID, f"the store's leaves {start}..{end - 1} do not make its root at {end} "
                                                "leaves (run axis log verify)")
        header = {"format": FORMAT, "version": VERSION, "start": start, "end": end, "before": before_ms,
                  "min_at": min_at, "max_at": max_at, "left": [h.hex() for h in left], "root_hash": root.hex()}
        members = [
            (M_SEGMENT, _canonical_json(header)),
            (M_STH, _canonical_json(sth.to_json())),
            (M_CONSISTENCY, _canonical_json(consistency_json(end, sth.tree_size, consistency))),
            (M_LOG_CERT, sth.certificate.encode("ascii")),
            (M_CA, bytes(ca_pem)),
        ]
        if crl_pem:
            members.append((M_CRL, bytes(crl_pem)))
        for name, data in members:
            info = zipfile.ZipInfo(name, when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


# ---- verifying --------------------------------------------------------------------------------------------------


def _invalid(detail: str) -> Refusal:
    return Refusal(Reason.PROOF_INVALID, detail)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT


def _small(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_MEMBER_BYTES:
        raise _invalid(f"{info.filename} is too large")
    with zf.open(info) as f:
        body = f.read(MAX_MEMBER_BYTES + 1)
    if len(body) > MAX_MEMBER_BYTES:
        raise _invalid(f"{info.filename} is too large")
    return body


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"{name} is not JSON: {exc}") from None


def _hashes(value: object, name: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > merkle.MAX_PATH:
        raise _invalid(f"{name} must be a list of at most {merkle.MAX_PATH} hashes")
    out = []
    for item in value:
        if not isinstance(item, str) or len(item) != 64 or item != item.lower():
            raise _invalid(f"{name} holds something other than 64 lower-case hex digits")
        try:
            out.append(bytes.fromhex(item))
        except ValueError:
            raise _invalid(f"{name} holds something other than 64 lower-case hex digits") from None
    return out


def _event(leaf: bytes, index: int) -> Event:
    """The event whose canonical leaf is exactly ``leaf``. Fast path: what orjson reads, made an Event again,
    gives back exactly these bytes — then :func:`event_from_leaf` (strict JSON, a quarter of the speed) would
    accept them too; anything else goes through it for its verdict and reason."""
    try:
        obj = orjson.loads(leaf)
        if isinstance(obj, dict) and obj.get("v") == 1:
            event = Event(**{k: v for k, v in obj.items() if k != "v"})
            if event.ref is None and event.leaf() == leaf:
                return event
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    try:
        return event_from_leaf(leaf)
    except Refusal as exc:
        raise _invalid(f"leaf {index}: {exc.detail}") from None


def _header(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) != set(HEADER_FIELDS):
        raise _invalid(f"segment.json has exactly the fields {', '.join(HEADER_FIELDS)}")
    if raw["format"] != FORMAT or raw["version"] != VERSION or isinstance(raw["version"], bool):
        raise _invalid(f"not an {FORMAT} version {VERSION}: {raw['format']!r} version {raw['version']!r}")
    for name in ("start", "end", "before", "min_at", "max_at"):
        if not _is_int(raw[name]):
            raise _invalid(f"segment.json: {name} must be an integer in [0, 2**53)")
    if raw["end"] <= raw["start"]:
        raise _invalid("segment.json: end must be above start (a segment holds at least one leaf)")
    left = _hashes(raw["left"], "segment.json: left")
    if len(left) != raw["start"].bit_count():
        raise _invalid(f"segment.json: left must hold the {raw['start'].bit_count()} subtree hashes of the tree of "
                       f"{raw['start']} leaves")
    (root,) = _hashes([raw["root_hash"]], "segment.json: root_hash")
    return {**raw, "left": left, "root": root}


def verify_segment(source: str | os.PathLike[str] | bytes | IO[bytes], ca_pem: bytes, *,
                   crl_pem: bytes | None = None, at: dt.datetime | None = None,
                   progress: Progress | None = None) -> SegmentReport:
    """Check a segment (a file, its bytes or an open binary file) offline against the CA certificate(s)
    ``ca_pem`` — module docstring for what and in which order. ``at``: when the tree head's certificate must be
    valid (default now; an old segment whose log certificate has expired since: a time when it was valid, e.g. the
    tree head's timestamp); ``crl_pem``: a CRL to use instead of the segment's. Reads the leaves as a stream (any
    size, constant memory). Never raises for a bad segment: the report says why."""
    found: dict[str, Any] = {}
    try:
        _verify(io.BytesIO(source) if isinstance(source, bytes) else source, ca_pem, crl_pem, at, progress, found)
    except Refusal as exc:
        return SegmentReport(False, exc.reason, exc.detail, **found)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        # a damaged or truncated file (a CRC that does not match, a broken stream), a certificate that cannot be read
        return SegmentReport(False, Reason.PROOF_INVALID, f"the segment cannot be read: {exc}", **found)
    return SegmentReport(True, None, f"leaves {found['start']}..{found['end'] - 1} proven in the tree of "
                                     f"{found['sth'].tree_size}", **found)


def _verify(source: str | os.PathLike[str] | IO[bytes], ca_pem: bytes, crl_pem: bytes | None,
            at: dt.datetime | None, progress: Progress | None, found: dict[str, Any]) -> None:
    zf, infos = open_container(source, "a log segment", KNOWN, REQUIRED)
    with zf:
        names = [i.filename for i in infos]
        by_name = dict(zip(names, infos, strict=True))
        small = {n: _small(zf, by_name[n]) for n in names if n != M_LEAVES}
        if small[M_MIMETYPE] != MIMETYPE.encode("ascii"):
            raise _invalid(f"mimetype is not {MIMETYPE}")
        header = _header(_json(small[M_SEGMENT], M_SEGMENT))
        start, end = header["start"], header["end"]
        found.update(start=start, end=end, before=header["before"], min_at=header["min_at"],
                     max_at=header["max_at"], root_hash=header["root_hash"])

        # 2. the tree head
        sth = SignedTreeHead.from_json(small[M_STH])
        if small[M_LOG_CERT].decode("ascii", "replace").strip() != sth.certificate.strip():
            raise Refusal(Reason.STH_INVALID, "log-certificate.pem is not the tree head's certificate")
        verify_sth(sth, [ca_pem], crl_pem if crl_pem is not None else small.get(M_CRL), at=at)
        found["sth"] = sth
        if sth.tree_size < end:
            raise _invalid(f"the tree head covers {sth.tree_size} leaves; the segment ends at {end}")

        # 3. the leaves
        tree = _Tree(start, header["left"])
        before, lo, hi = header["before"], header["min_at"], header["max_at"]
        with zf.open(by_name[M_LEAVES]) as f:
            index = start
            while True:
                line = f.readline(MAX_LEAF_BYTES + 1)  # a leaf and its line break
                if not line:
                    break
                if index >= end:
                    raise _invalid(f"leaves.jsonl holds more than the {end - start} leaves {start}..{end - 1}")
                if not line.endswith(b"\n"):
                    raise _invalid(f"leaf {index} is too long or not ended by a line break")
                leaf = line[:-1]
                event = _event(leaf, index)
                if not (event.at < before and lo <= event.at <= hi):
                    raise _invalid(f"leaf {index} is at {event.at}: not before {before} within [{lo}, {hi}] as "
                                   "segment.json says")
                tree.add(merkle.leaf_hash(leaf))
                index += 1
                if progress is not None and (index - start) % CHUNK == 0:
                    progress("verify", index - start, end - start)
        if index != end:
            raise _invalid(f"leaves.jsonl holds {index - start} leaves; segment.json says {end - start} "
                           f"({start}..{end - 1})")
        if progress is not None:
            progress("verify", end - start, end - start)
        if tree.root() != header["root"]:
            raise _invalid(f"the leaves {start}..{end - 1} do not make the segment's root")

        # 4. the segment's root in the tree head's tree
        proof = _json(small[M_CONSISTENCY], M_CONSISTENCY)
        first = SignedTreeHead(end, sth.timestamp, header["root_hash"], sth.signature, sth.certificate)
        check_consistency(proof, first, sth)  # the proof's sizes must be (end, N); Refusal(PROOF_INVALID)
