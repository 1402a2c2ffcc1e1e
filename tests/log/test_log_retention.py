"""Retention of the evidence log on SQLite and PostgreSQL: LogStore.drop_archived keeps exactly the subtree hashes
later roots and proofs need (checked exhaustively in memory, then on the real stores), verify() after a drop and
the damage it still finds, and sealed segments (axis.log.segment): written from a store, verified offline, chained
across drops, and refused when tampered with."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from axis.core import merkle
from axis.core import pki as pkimod
from axis.core.evidence import (
    Event,
    check_inclusion,
    inclusion_json,
    sign_sth,
)
from axis.core.reasons import Reason
from axis.log import LogStore
from axis.log import segment as seg
from axis.log import store as store_mod
from tests.support.testing import TestPKI, make_pki

TABLES = ("axis_log_leaves", "axis_log_nodes", "axis_log_sth", "axis_log_certs", "axis_log_meta")
T0 = 1_700_000_000_000
HOUR = 3_600_000


_DROPS = (1, 13, 16, 20, 33)


def _previous(upto: int) -> int:
    i = _DROPS.index(upto)
    return _DROPS[i - 1] if i else 0


def event(i: int, at: int | None = None) -> Event:
    """Leaf ``i``: a distinct event, ``at`` one hour apart by default."""
    return Event("submitted", T0 + i * HOUR if at is None else at, "000.00.00.G01", f"doc-{i}", 1,
                 hashlib.sha256(b"%d" % i).hexdigest(), server="srv-1")


async def _drop_tables(url: str) -> None:
    store = await LogStore.open(url)
    try:
        for table in TABLES:
            await _raw(store, f"DROP TABLE IF EXISTS {table}")
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, or the session's PostgreSQL database with the log's tables dropped (before and after:
    the archived boundary must not outlive the test in a shared database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.sqlite3'}"
        return
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(_drop_tables(url))
    yield url
    asyncio.run(_drop_tables(url))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    p = make_pki(tmp_path_factory.mktemp("pki"), [], algorithm="ec")
    pkimod.issue_log_certificate(p.dir)
    return p


async def _raw(store: LogStore, sql: str, params: dict[str, object] | None = None) -> None:
    def run(db: store_mod._Db) -> None:
        db.rows(sql, params or {})

    await store._backend.write(run)


async def _sign(store: LogStore, pki: TestPKI, size: int | None = None, ts: int = T0) -> None:
    size = await store.size() if size is None else size
    key = pkimod.load_key((pki.dir / "log" / "key.pem").read_bytes())
    await store.save_sth(sign_sth(size, ts + size, await store.root(size), key,
                                  (pki.dir / "log" / "cert.pem").read_bytes()))


# ---- the subtrees kept: enough for every later root and proof (exhaustive, in memory) ----------------------------


class _Dropped:
    """A HashSource that refuses the subtrees drop_archived(upto) deletes."""

    def __init__(self, src: merkle.ListSource, upto: int) -> None:
        self.src, self.upto, self.kept = src, upto, store_mod.retained_below(upto)
        self.ends = dict(store_mod.dropped_ranges(upto))

    def dropped(self, level: int, index: int) -> bool:
        inside = (index + 1) << level <= self.upto
        assert (index < self.ends.get(level, 0)) == (inside and (level, index) not in self.kept), (level, index)
        return inside and (level, index) not in self.kept

    def perfect(self, level: int, index: int) -> bytes:
        if self.dropped(level, index):
            raise KeyError((level, index))
        return self.src.perfect(level, index)


def test_retained_subtrees_serve_every_later_root_and_proof() -> None:
    n = 70
    hashes = [merkle.leaf_hash(event(i).leaf()) for i in range(n)]
    src = merkle.ListSource(hashes)
    for upto in range(1, n + 1):
        kept = store_mod.retained_below(upto)
        assert len(kept) <= upto.bit_count() + 1  # one subtree per level at most, and leaf upto - 1
        view = _Dropped(src, upto)
        for m in range(upto, n + 1):
            assert not view.dropped(0, m - 1)  # the store checks that a tree of m leaves exists with this hash
            root = merkle.tree_root(view, m)
            assert root == merkle.mth(hashes[:m])
            for i in range(upto, m):
                assert merkle.verify_inclusion(hashes[i], i, m, merkle.inclusion_path(view, i, m), root)
            for first in range(upto, m + 1):
                path = merkle.consistency_path(view, first, m)
                assert merkle.verify_consistency(first, m, merkle.mth(hashes[:first]), root, path), (upto, first, m)
        # every subtree inside [0, upto) is either kept or in dropped_ranges, never both
        for level in range(upto.bit_length()):
            for index in range(upto >> level):
                view.dropped(level, index)
        # and what is dropped is what only the archived leaves' own proofs read
        if upto >= 3:
            with pytest.raises(KeyError):
                merkle.inclusion_path(view, 0, upto)


# ---- drop_archived on the stores ----------------------------------------------------------------------------------


async def test_drop_archived_keeps_roots_and_proofs(store_url: str, pki: TestPKI) -> None:
    sqlite = store_url.startswith("sqlite")
    n = 70 if sqlite else 40
    leaves = [event(i).leaf() for i in range(n)]
    hashes = [merkle.leaf_hash(x) for x in leaves]
    async with await LogStore.open(store_url) as store:
        await store.append([event(i) for i in range(n)])
        await _sign(store, pki, 20)
        with pytest.raises(ValueError, match="no signed tree head covers"):
            await store.drop_archived(21)
        await _sign(store, pki)
        root = await store.root()
        with pytest.raises(ValueError, match="the log has"):
            await store.drop_archived(n + 1)
        for upto in _DROPS:
            assert await store.drop_archived(upto) == upto - _previous(upto)
            assert await store.drop_archived(upto - 1) == 0  # below the boundary already: nothing
            assert await store.archived_upto() == upto and await store.size() == n
            assert await store.root() == root
            sth = await store.latest_sth()
            assert sth is not None and sth.tree_size == n
            for i in range(upto, n):  # every remaining leaf proven against the latest tree head
                check_inclusion(await store.leaf(i), inclusion_json(i, n, leaves[i], await store.inclusion(i, n)), sth)
            sizes = range(upto, n + 1) if sqlite else sorted({upto, upto + 1, 31, 32, 33, n - 1, n}
                                                             & {*range(upto, n + 1)})
            for m in sizes:
                assert await store.root(m) == merkle.mth(hashes[:m])
                for first in sizes:
                    if first <= m:
                        path = await store.consistency(first, m)
                        assert merkle.verify_consistency(first, m, merkle.mth(hashes[:first]),
                                                         merkle.mth(hashes[:m]), path), (upto, first, m)
            with pytest.raises(ValueError, match=f"leaf 0 was archived.*from {upto} on"):
                await store.leaf(0)
            with pytest.raises(ValueError, match=f"leaf {upto - 1} was archived"):
                await store.leaf(upto - 1)
            if upto >= 3:  # leaf 1's hash is gone
                with pytest.raises(ValueError, match=f"below {upto} are archived"):
                    await store.inclusion(0, n)
                with pytest.raises(ValueError, match=f"below {upto} are archived"):
                    await store.consistency(1, n)
            with pytest.raises(ValueError, match="no leaf"):
                await store.leaf(n)
            assert await store.leaves_between(0, n, 5) == [(i, leaves[i]) for i in range(upto, upto + 5)]
            assert sum((await store.counts()).values()) == n - upto
            assert await store.verify([pki.ca_pem.read_bytes()]) == []

        # the log goes on from where it was
        more = [event(i) for i in range(n, n + 9)]
        assert await store.append(more) == list(range(n, n + 9))
        hashes += [merkle.leaf_hash(e.leaf()) for e in more]
        assert await store.root() == merkle.mth(hashes)
        await _sign(store, pki)
        assert await store.verify([pki.ca_pem.read_bytes()]) == []

        # every leaf: the tree keeps its size, appends continue at the right index
        total = n + 9
        assert await store.drop_archived(total) == total - 33
        assert await store.size() == total and await store.root() == merkle.mth(hashes)
        assert await store.verify([pki.ca_pem.read_bytes()]) == []
        assert await store.append([event(total)]) == [total]
        hashes.append(merkle.leaf_hash(event(total).leaf()))
        assert await store.root() == merkle.mth(hashes)
        await _sign(store, pki)
        assert await store.verify([pki.ca_pem.read_bytes()]) == []

    # another process (a fresh handle: no cached frontier) sees the same
    async with await LogStore.open(store_url) as again:
        assert await again.size() == total + 1 and await again.archived_upto() == total
        assert await again.append([event(total + 1)]) == [total + 1]
        hashes.append(merkle.leaf_hash(event(total + 1).leaf()))
        assert await again.root() == merkle.mth(hashes)


async def test_a_long_drop_goes_in_steps(store_url: str, pki: TestPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "DROP_STEP", 7)
    steps: list[int] = []
    real = LogStore._drop_step

    async def step(self: LogStore, upto: int) -> int:
        steps.append(upto)
        return await real(self, upto)

    monkeypatch.setattr(LogStore, "_drop_step", step)
    async with await LogStore.open(store_url) as store:
        await store.append([event(i) for i in range(40)])
        await _sign(store, pki, 30)
        root = await store.root()
        with pytest.raises(ValueError, match="no signed tree head covers the first 31"):
            await store.drop_archived(31)  # refused before any step
        assert steps == [] and await store.archived_upto() == 0
        assert await store.drop_archived(30) == 30
        assert steps == [7, 14, 21, 28, 30] and await store.archived_upto() == 30
        assert await store.root() == root and await store.verify([pki.ca_pem.read_bytes()]) == []


async def test_drop_refuses_a_damaged_store(store_url: str, pki: TestPKI) -> None:
    async with await LogStore.open(store_url) as store:
        await store.append([event(i) for i in range(12)])
        await _sign(store, pki)
        await _raw(store, "UPDATE axis_log_nodes SET hash = :h WHERE id = :id",
                   {"h": b"\x00" * 32, "id": store_mod.node_id(3, 0)})
        with pytest.raises(ValueError, match="damaged"):
            await store.drop_archived(10)
        assert await store.archived_upto() == 0 and await store.leaf(0) == event(0).leaf()


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


DAMAGE: dict[str, tuple[Callable[[int], tuple[str, dict[str, object]]], str]] = {
    # a kept subtree of the archived range (13 = 8 + 4 + 1: (3, 0), (2, 2), (0, 12))
    "a kept subtree's hash": (lambda _: ("UPDATE axis_log_nodes SET hash = :h WHERE id = :id",
                                         {"h": b"\x01" * 32, "id": store_mod.node_id(2, 2)}), "halves"),
    "a kept subtree deleted": (lambda _: ("DELETE FROM axis_log_nodes WHERE id = :id",
                                          {"id": store_mod.node_id(3, 0)}), "kept for the archived"),
    "a dropped subtree left": (lambda _: ("INSERT INTO axis_log_nodes (id, hash) VALUES (:id, :h)",
                                          {"id": store_mod.node_id(1, 1), "h": b"\x02" * 32}), "still stored"),
    "a remaining leaf deleted": (lambda _: ("DELETE FROM axis_log_leaves WHERE idx = 20", {}), "leaf 20 is missing"),
    "the boundary lowered": (lambda _: ("UPDATE axis_log_meta SET value = 5", {}), "leaves 5..12 are missing"),
    "the boundary raised": (lambda _: ("UPDATE axis_log_meta SET value = 15", {}), "below the archived boundary"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_verify_after_a_drop_detects(store_url: str, pki: TestPKI, damage: str) -> None:
    make, expect = DAMAGE[damage]
    async with await LogStore.open(store_url) as store:
        await store.append([event(i) for i in range(30)])
        await _sign(store, pki, 14)
        await _sign(store, pki)
        await store.drop_archived(13)
        assert await store.verify([pki.ca_pem.read_bytes()]) == []
        sql, params = make(0)
        await _raw(store, sql, params)
        problems = await store.verify([pki.ca_pem.read_bytes()])
        assert any(expect in p for p in problems), problems


async def test_verify_wants_a_tree_head_over_the_boundary(store_url: str, pki: TestPKI) -> None:
    async with await LogStore.open(store_url) as store:
        await store.append([event(i) for i in range(10)])
        await _sign(store, pki, 4)
        await _sign(store, pki, 6)
        await store.drop_archived(6)
        assert await store.verify([pki.ca_pem.read_bytes()]) == []  # the tree head of 4: its signature only
        await _raw(store, "DELETE FROM axis_log_sth WHERE tree_size = 6")
        problems = await store.verify([pki.ca_pem.read_bytes()])
        assert problems == ["no tree head covers the archived boundary 6"], problems


# ---- sealed segments ------------------------------------------------------------------------------------------------


def _ca(pki: TestPKI) -> bytes:
    return pki.ca_pem.read_bytes()


async def test_archive_segments_chain_across_drops(store_url: str, pki: TestPKI, tmp_path: Path) -> None:
    async with await LogStore.open(store_url) as store:
        # leaf 7's time is late (15 h): the prefix before T0 + 10 h stops there although 8 and 9 are earlier
        await store.append([event(i, at=T0 + 15 * HOUR if i == 7 else None) for i in range(25)])
        assert await seg.archive(store, T0 + 10 * HOUR, tmp_path / "none.zip", ca_pem=_ca(pki)) is None  # no STH
        assert not (tmp_path / "none.zip").exists()
        await _sign(store, pki, 5)
        phases: list[tuple[str, int, int]] = []
        one = await seg.archive(store, T0 + 10 * HOUR, tmp_path / "one.zip", ca_pem=_ca(pki),
                                progress=lambda *a: phases.append(a))
        assert one is not None and one.ok and (one.start, one.end) == (0, 5)  # the tree head covers 5 only
        assert one.sth is not None and one.sth.tree_size == 5 and phases[-1] == ("verify", 5, 5)
        await _sign(store, pki)  # 25
        with pytest.raises(FileExistsError):
            await seg.archive(store, T0 + 10 * HOUR, tmp_path / "one.zip", ca_pem=_ca(pki))
        two = await seg.archive(store, T0 + 10 * HOUR, tmp_path / "two.zip", ca_pem=_ca(pki))
        assert two is not None and (two.start, two.end) == (0, 7)  # leaf 7 is late
        assert two.sth is not None and two.sth.tree_size == 25  # the latest tree head, through a consistency proof
        assert await store.drop_archived(7) == 7

        # after the drop: the next segment starts at 7, its left hashes rebuild the tree of 7 leaves
        three = await seg.archive(store, T0 + 20 * HOUR, tmp_path / "three.zip", ca_pem=_ca(pki))
        assert three is not None and three.ok and (three.start, three.end) == (7, 20)
        assert three.min_at == T0 + 8 * HOUR and three.max_at == T0 + 19 * HOUR
        # until a drop moves the boundary, the same command writes the same segment, byte for byte
        again = await seg.archive(store, T0 + 20 * HOUR, tmp_path / "again.zip", ca_pem=_ca(pki))
        assert again == three and (tmp_path / "again.zip").read_bytes() == (tmp_path / "three.zip").read_bytes()
        await store.drop_archived(20)
        assert await seg.archive(store, T0 + 20 * HOUR, tmp_path / "none.zip", ca_pem=_ca(pki)) is None
        assert await store.verify([_ca(pki)]) == []
        everything = await seg.archive(store, T0 + 99 * HOUR, tmp_path / "four.zip", ca_pem=_ca(pki))
        assert everything is not None and (everything.start, everything.end) == (20, 25)
        assert everything.sth is not None and everything.sth.tree_size == 25  # the root is the tree head's root

    # offline: each verifies; they chain (the leaves of one give the left hashes of the next)
    tree = seg._Tree(0, [])
    for name, (start, end) in (("two", (0, 7)), ("three", (7, 20)), ("four", (20, 25))):
        report = seg.verify_segment(tmp_path / f"{name}.zip", _ca(pki))
        assert report.ok and (report.start, report.end) == (start, end), report
        members = _members((tmp_path / f"{name}.zip").read_bytes())
        header = json.loads(members[seg.M_SEGMENT])
        assert header["left"] == [h.hex() for h in tree.edge]
        for line in members[seg.M_LEAVES].splitlines():
            tree.add(merkle.leaf_hash(line))
        assert tree.root().hex() == header["root_hash"]
    assert [json.loads(x)["document_id"] for x in _members((tmp_path / "two.zip").read_bytes())[seg.M_LEAVES]
            .splitlines()] == [f"doc-{i}" for i in range(7)]
    # from bytes as from a file
    assert seg.verify_segment((tmp_path / "one.zip").read_bytes(), _ca(pki)).ok


# ---- tampered segments ----------------------------------------------------------------------------------------------


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _rezip(data: bytes, changes: dict[str, bytes | None]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = changes.get(info.filename, src.read(info))
            if body is not None:
                dst.writestr(info, body)
    return out.getvalue()


def _edit_json(data: bytes, name: str, edit: Callable[[Any], Any]) -> bytes:
    return _rezip(data, {name: json.dumps(edit(json.loads(_members(data)[name]))).encode()})


def _edit_leaves(data: bytes, edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    lines = _members(data)[seg.M_LEAVES].splitlines()
    return _rezip(data, {seg.M_LEAVES: b"".join(x + b"\n" for x in edit(lines))})


def _flip_hex(h: str) -> str:
    return ("1" if h[0] == "0" else "0") + h[1:]


def _flip_b64(text: str, at: int = 10) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.fixture(scope="module")
def segment(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A segment of leaves 9..21 (after a drop of 9: ``left`` not empty) sealed by a tree head of 30 leaves."""
    d = tmp_path_factory.mktemp("segment")

    async def go() -> bytes:
        async with await LogStore.open(d / "log.sqlite3") as store:
            await store.append([event(i) for i in range(30)])
            await _sign(store, pki)
            await seg.archive(store, T0 + 9 * HOUR, d / "first.zip", ca_pem=_ca(pki))
            await store.drop_archived(9)
            await seg.archive(store, T0 + 22 * HOUR, d / "seg.zip", ca_pem=_ca(pki), crl_pem=pki.crl_pem.read_bytes())
            return (d / "seg.zip").read_bytes()

    return asyncio.run(go())


def test_segment_verifies(segment: bytes, pki: TestPKI) -> None:
    report = seg.verify_segment(segment, _ca(pki))
    assert report.ok and report.reason is None, report
    d = report.as_dict()
    assert (d["start"], d["end"], d["leaves"], d["tree_size"]) == (9, 22, 13, 30)
    assert d["before"] == T0 + 22 * HOUR and (d["min_at"], d["max_at"]) == (T0 + 9 * HOUR, T0 + 21 * HOUR)
    members = _members(segment)
    assert next(iter(members)) == "mimetype" and set(members) == {*seg.REQUIRED, seg.M_CRL}
    assert len(json.loads(members[seg.M_SEGMENT])["left"]) == 2  # 9 = 8 + 1
    assert len(json.loads(members[seg.M_CONSISTENCY])["consistency_path"]) > 0


TAMPER: dict[str, tuple[Callable[[bytes], bytes], Reason]] = {
    "one byte of a leaf": (lambda s: _edit_leaves(s, lambda ls: [*ls[:3], ls[3].replace(b"doc-12", b"doc-13"),
                                                                 *ls[4:]]), Reason.PROOF_INVALID),
    "a leaf that is not an event": (lambda s: _edit_leaves(s, lambda ls: [*ls[:5], ls[5].replace(b'"v":1', b'"v":2'),
                                                                          *ls[6:]]), Reason.PROOF_INVALID),
    "a removed leaf": (lambda s: _edit_leaves(s, lambda ls: [*ls[:4], *ls[5:]]), Reason.PROOF_INVALID),
    "the last leaf removed": (lambda s: _edit_leaves(s, lambda ls: ls[:-1]), Reason.PROOF_INVALID),
    "the last leaf removed, header too": (lambda s: _edit_json(_edit_leaves(s, lambda ls: ls[:-1]), seg.M_SEGMENT,
                                                               lambda h: {**h, "end": h["end"] - 1}),
                                          Reason.PROOF_INVALID),
    "a leaf added": (lambda s: _edit_leaves(s, lambda ls: [*ls, event(22, at=T0).leaf()]), Reason.PROOF_INVALID),
    "two leaves swapped": (lambda s: _edit_leaves(s, lambda ls: [ls[1], ls[0], *ls[2:]]), Reason.PROOF_INVALID),
    "a left hash": (lambda s: _edit_json(s, seg.M_SEGMENT, lambda h: {**h, "left": [_flip_hex(h["left"][0]),
                                                                                    *h["left"][1:]]}),
                    Reason.PROOF_INVALID),
    "the root": (lambda s: _edit_json(s, seg.M_SEGMENT, lambda h: {**h, "root_hash": _flip_hex(h["root_hash"])}),
                 Reason.PROOF_INVALID),
    "a consistency hash": (lambda s: _edit_json(s, seg.M_CONSISTENCY, lambda p: {**p, "consistency_path": [
        _flip_hex(p["consistency_path"][0]), *p["consistency_path"][1:]]}), Reason.PROOF_INVALID),
    "the before date": (lambda s: _edit_json(s, seg.M_SEGMENT, lambda h: {**h, "before": h["max_at"]}),
                        Reason.PROOF_INVALID),
    "the tree head's signature": (lambda s: _edit_json(s, seg.M_STH, lambda t: {**t, "signature": _flip_b64(
        t["signature"])}), Reason.STH_INVALID),
    "the tree head's root": (lambda s: _edit_json(s, seg.M_STH, lambda t: {**t, "root_hash": _flip_hex(
        t["root_hash"])}), Reason.STH_INVALID),
    "the tree head's size": (lambda s: _edit_json(s, seg.M_STH, lambda t: {**t, "tree_size": t["tree_size"] + 1}),
                             Reason.STH_INVALID),
    "another log certificate": (lambda s: _rezip(s, {seg.M_LOG_CERT: b"-----BEGIN CERTIFICATE-----\n"}),
                                Reason.STH_INVALID),
    "a member removed": (lambda s: _rezip(s, {seg.M_CONSISTENCY: None}), Reason.PROOF_INVALID),
    "a raw byte of the file": (lambda s: s[:200] + bytes([s[200] ^ 0x55]) + s[201:], Reason.PROOF_INVALID),
    "truncated": (lambda s: s[: len(s) // 2], Reason.PROOF_INVALID),
    "not a zip": (lambda s: b"hello", Reason.PROOF_INVALID),
}


@pytest.mark.parametrize("tamper", list(TAMPER))
def test_tampered_segment_is_refused(segment: bytes, pki: TestPKI, tamper: str) -> None:
    make, reason = TAMPER[tamper]
    report = seg.verify_segment(make(segment), _ca(pki))
    assert not report.ok and report.reason == reason, report


def test_segment_against_another_ca_or_at_another_time(segment: bytes, pki: TestPKI, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", [], algorithm="ec")
    report = seg.verify_segment(segment, other.ca_pem.read_bytes())
    assert not report.ok and report.reason == Reason.STH_INVALID
    import datetime as dt

    report = seg.verify_segment(segment, _ca(pki), at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC))
    assert not report.ok and report.reason == Reason.STH_INVALID  # the log certificate has expired by then
