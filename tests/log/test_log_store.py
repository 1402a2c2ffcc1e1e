"""axis.log.store.LogStore on SQLite and PostgreSQL: appends (ordered, idempotent, one transaction), roots and
proofs against the reference MTH, searches, signed tree heads, and verify() finding damage done to the tables."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sqlite3
from pathlib import Path

import pytest

from axis.core import merkle
from axis.core import pki as pkimod
from axis.core.evidence import (
    Event,
    SignedTreeHead,
    check_consistency,
    check_inclusion,
    consistency_json,
    event_from_leaf,
    inclusion_json,
    sign_sth,
    verify_sth,
)
from axis.log import LogStore
from axis.log import store as store_mod
from tests.support.testing import TestPKI, make_pki

SENDERS = ("000.00.00.G01", "000.00.00.G02", "000.00.00.G03")
RECIPIENTS = ("000.00.00.H01", "000.00.00.H02")
TABLES = ("axis_log_leaves", "axis_log_nodes", "axis_log_sth", "axis_log_certs")


def event(i: int, at: int | None = None) -> Event:
    """A deterministic stream of distinct events: per document, submitted, routed, stored ×2, status."""
    doc, step = divmod(i, 5)
    sender = SENDERS[doc % 3]
    base = {"at": 1_700_000_000_000 + i * 10 if at is None else at, "sender": sender,
            "document_id": f"doc-{doc}", "doc_type": 1 + doc % 2, "sha256": hashlib.sha256(b"%d" % doc).hexdigest()}
    if step == 0:
        return Event("submitted", server="srv-1", **base)  # type: ignore[arg-type]
    if step == 1:
        return Event("routed", **base)  # type: ignore[arg-type]
    if step in (2, 3):
        return Event("stored", agency=RECIPIENTS[step - 2], server="srv-2", **base)  # type: ignore[arg-type]
    return Event("status", agency=RECIPIENTS[0], code="03", **base)  # type: ignore[arg-type]


async def _drop(url: str) -> None:
    store = await LogStore.open(url)
    try:
        for table in TABLES:
            await _raw(store, f"DROP TABLE IF EXISTS {table}")
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, or the session's PostgreSQL database with the log's tables dropped."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(_drop(url))
    return url


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    p = make_pki(tmp_path_factory.mktemp("pki"), [], algorithm="ec")
    pkimod.issue_log_certificate(p.dir)
    return p


def log_signer(pki: TestPKI) -> tuple[pkimod.PrivateKey, bytes]:
    return (pkimod.load_key((pki.dir / "log" / "key.pem").read_bytes()), (pki.dir / "log" / "cert.pem").read_bytes())


async def _raw(store: LogStore, sql: str, params: dict[str, object] | None = None) -> None:
    """Damage the tables behind the store's back (what an operator with database access could do)."""
    def run(db: store_mod._Db) -> None:
        db.rows(sql, params or {})

    await store._backend.write(run)


# ---- appends, roots, proofs --------------------------------------------------------------------------------------


async def test_append_roots_and_proofs(store_url: str) -> None:
    n_total = 70 if store_url.startswith("sqlite") else 40
    events = [event(i) for i in range(n_total)]
    leaves = [e.leaf() for e in events]
    hashes = [merkle.leaf_hash(x) for x in leaves]
    async with await LogStore.open(store_url) as store:
        assert await store.size() == 0
        assert await store.root() == merkle.EMPTY_ROOT == await store.root(0)
        pos, batch = 0, 1
        while pos < n_total:  # batches of 1, 2, 3, ...: every size is crossed
            got = await store.append(events[pos : pos + batch])
            assert got == list(range(pos, min(n_total, pos + batch)))
            pos += batch
            batch += 1
        assert await store.size() == n_total
        for size in range(1, n_total + 1):
            assert await store.root(size) == merkle.mth(hashes[:size])
        assert await store.root() == merkle.mth(hashes)
        sizes = range(1, n_total + 1) if store_url.startswith("sqlite") else (1, 2, 7, 8, 9, 31, 32, 33, n_total)
        for size in sizes:
            root = merkle.mth(hashes[:size])
            for index in range(size):
                path = await store.inclusion(index, size)
                assert merkle.verify_inclusion(hashes[index], index, size, path, root), (index, size)
            some = sorted({0, size // 3, size - 1})
            assert await store.inclusions(some, size) == [await store.inclusion(i, size) for i in some]  # one query
            for first in range(0, size + 1):
                path = await store.consistency(first, size)
                assert merkle.verify_consistency(first, size, merkle.mth(hashes[:first]), root, path), (first, size)
        for i in (0, 17, n_total - 1):
            assert await store.leaf(i) == leaves[i]
            assert event_from_leaf(await store.leaf(i)) == events[i]
        for bad in ((n_total, n_total), (0, n_total + 1), (-1, 3), (3, 3)):
            with pytest.raises(ValueError):
                await store.inclusion(*bad)
        for bad in ((3, n_total + 1), (5, 4), (-1, 2)):
            with pytest.raises(ValueError):
                await store.consistency(*bad)
        for bad_index in (n_total, -1):
            with pytest.raises(ValueError):
                await store.leaf(bad_index)
        with pytest.raises(ValueError):
            await store.root(n_total + 1)
        assert await store.verify([]) == []


async def test_append_is_idempotent_and_ordered(store_url: str) -> None:
    async with await LogStore.open(store_url) as store:
        first = [event(i) for i in range(10)]
        assert await store.append(first) == list(range(10))
        root = await store.root()
        # redelivered (another `at`), mixed with new events and a repeat inside the batch
        again = [event(3, at=1), event(10), event(0, at=5), event(11), event(10, at=99), event(9)]
        assert await store.append(again) == [3, 10, 0, 11, 10, 9]
        assert await store.size() == 12
        assert await store.leaf(10) == event(10).leaf()  # the first instance's leaf, not the repeat's
        assert await store.append([event(i, at=7) for i in range(12)]) == list(range(12))
        assert await store.size() == 12
        assert await store.root(10) == root
        assert await store.append([]) == []
        refusals = [Event("refused", 1, "G", "d", 1, "", reason="X", ref=f"m{i % 3}") for i in range(6)]
        assert await store.append(refusals) == [12, 13, 14, 12, 13, 14]


async def test_reopen_and_two_writers(store_url: str) -> None:
    events = [event(i) for i in range(40)]
    hashes = [merkle.leaf_hash(e.leaf()) for e in events]
    a = await LogStore.open(store_url)
    b = await LogStore.open(store_url)  # a second writer: its cached frontier goes stale and is reloaded
    try:
        assert await a.append(events[:5]) == list(range(5))
        assert await b.append(events[5:13]) == list(range(5, 13))
        assert await a.append(events[13:21]) == list(range(13, 21))
        assert await a.append(events[21:22]) == [21]
        assert await b.append(events[22:23]) == [22]
        await asyncio.gather(a.append(events[23:30]), b.append(events[30:40]))  # serialized by the database
        assert await a.size() == await b.size() == 40
        stored = await a.search(limit=100)  # in log order; the two concurrent batches in either order
        assert [i for i, _ in stored] == list(range(40))
        order = [merkle.leaf_hash(leaf) for _, leaf in stored]
        assert sorted(order) == sorted(hashes)
        assert await a.root() == merkle.mth(order)
        assert await a.verify([]) == []
    finally:
        await a.close()
        await b.close()
    async with await LogStore.open(store_url) as c:  # reopened (tables exist): continues where it was
        assert await c.append([event(40)]) == [40]
        assert await c.verify([]) == []


async def test_failed_append_leaves_no_trace(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await LogStore.open(store_url) as store:
        await store.append([event(i) for i in range(3)])
        monkeypatch.setattr(store_mod, "_INSERT_NODE", "INSERT INTO axis_log_nowhere (id) VALUES (:id)")
        with pytest.raises(Exception):  # noqa: B017 - whichever driver error
            await store.append([event(i) for i in range(3, 9)])
        monkeypatch.undo()
        assert await store.size() == 3
        assert await store.append([event(i) for i in range(3, 9)]) == list(range(3, 9))
        assert await store.root() == merkle.mth([merkle.leaf_hash(event(i).leaf()) for i in range(9)])
        assert await store.verify([]) == []


# ---- reading --------------------------------------------------------------------------------------------------------


async def test_leaves_of_and_search(store_url: str) -> None:
    events = [event(i) for i in range(30)]
    async with await LogStore.open(store_url) as store:
        await store.append(events)
        doc = await store.leaves_of(SENDERS[1], "doc-1")
        assert [i for i, _ in doc] == [5, 6, 7, 8, 9]
        assert [event_from_leaf(x).type for _, x in doc] == ["submitted", "routed", "stored", "stored", "status"]
        assert await store.leaves_of(SENDERS[0], "doc-1") == []

        async def idx(**kw: object) -> list[int]:
            return [i for i, _ in await store.search(**kw)]  # type: ignore[arg-type]

        assert await idx() == list(range(30))
        assert await idx(sender=SENDERS[0]) == [i for i, e in enumerate(events) if e.sender == SENDERS[0]]
        assert await idx(recipient=RECIPIENTS[1]) == [i for i, e in enumerate(events) if e.agency == RECIPIENTS[1]]
        assert await idx(document_id="doc-2") == list(range(10, 15))
        assert await idx(type="routed") == list(range(1, 30, 5))
        t0 = events[0].at
        assert await idx(start_ms=t0 + 50, end_ms=t0 + 100) == list(range(5, 10))
        assert await idx(sender=SENDERS[0], type="stored", start_ms=t0 + 100) == [17, 18]
        assert await idx(limit=4, offset=3) == [3, 4, 5, 6]
        assert await idx(sender="nobody") == []
        for bad in ({"type": "moved"}, {"limit": 0}, {"limit": 10**6}, {"offset": -1}):
            with pytest.raises(ValueError):
                await store.search(**bad)


async def test_signed_tree_heads(store_url: str, pki: TestPKI) -> None:
    key, cert = log_signer(pki)
    cas = [pki.ca_pem.read_bytes()]
    async with await LogStore.open(store_url) as store:
        assert await store.latest_sth() is None and await store.sth_covering(0) is None
        await store.append([event(i) for i in range(5)])
        sth5 = sign_sth(5, 1000, await store.root(), key, cert)
        await store.save_sth(sth5)
        await store.save_sth(sth5)  # again: nothing happens
        await store.append([event(i) for i in range(5, 12)])
        sth12 = sign_sth(12, 2000, await store.root(), key, cert)
        await store.save_sth(sth12)
        sth12b = sign_sth(12, 3000, await store.root(), key, cert)
        await store.save_sth(sth12b)
        assert await store.latest_sth() == sth12b
        assert await store.sth_covering(0) == sth5 == await store.sth_covering(4)
        assert await store.sth_covering(5) == sth12 == await store.sth_covering(11)
        assert await store.sth_covering(12) is None
        with pytest.raises(ValueError):
            await store.save_sth(sign_sth(13, 4000, await store.root(), key, cert))  # beyond the log
        with pytest.raises(ValueError):
            await store.save_sth(sign_sth(12, 4000, await store.root(5), key, cert))  # another root
        latest = await store.latest_sth()
        assert latest is not None
        verify_sth(latest, cas)
        # a receipt: the leaf, its proof against the STH covering it, and consistency between the heads
        leaf = await store.leaf(7)
        covering = await store.sth_covering(7)
        assert covering is not None
        proof = inclusion_json(7, covering.tree_size, leaf, await store.inclusion(7, covering.tree_size))
        check_inclusion(leaf, proof, covering)
        cons = consistency_json(5, 12, await store.consistency(5, 12))
        check_consistency(cons, sth5, sth12)
        assert await store.verify(cas) == []
        assert SignedTreeHead.from_json(latest.to_json()) == latest


# ---- verify() finds damage ---------------------------------------------------------------------------------------


async def _damaged(store_url: str, pki: TestPKI, damage: str) -> list[str]:
    key, cert = log_signer(pki)
    cas = [pki.ca_pem.read_bytes()]
    store = await LogStore.open(store_url)
    try:
        await store.append([event(i) for i in range(37)])
        await store.save_sth(sign_sth(37, 1, await store.root(), key, cert))
        assert await store.verify(cas) == []
        if damage == "delete a leaf":
            await _raw(store, "DELETE FROM axis_log_leaves WHERE idx = 11")
        elif damage == "delete the last leaf":
            await _raw(store, "DELETE FROM axis_log_leaves WHERE idx = 36")
        elif damage == "change a digest in a leaf":
            leaf = await store.leaf(20)
            other = leaf.replace(event(20).sha256.encode(), hashlib.sha256(b"other").hexdigest().encode())
            await _raw(store, "UPDATE axis_log_leaves SET leaf = :l WHERE idx = 20", {"l": other})
        elif damage == "change a leaf hash":
            await _raw(store, "UPDATE axis_log_nodes SET hash = :h WHERE id = 20", {"h": b"\x01" * 32})
        elif damage == "change a subtree hash":
            await _raw(store, "UPDATE axis_log_nodes SET hash = :h WHERE id = :id",
                       {"h": b"\x02" * 32, "id": store_mod.node_id(3, 2)})
        elif damage == "delete a subtree hash":
            await _raw(store, "DELETE FROM axis_log_nodes WHERE id = :id", {"id": store_mod.node_id(2, 1)})
        elif damage == "add a stray hash":
            await _raw(store, "INSERT INTO axis_log_nodes (id, hash) VALUES (:id, :h)",
                       {"id": store_mod.node_id(4, 9), "h": b"\x03" * 32})
        elif damage == "reorder two leaves":
            a, b = await store.leaf(4), await store.leaf(30)
            await _raw(store, "UPDATE axis_log_leaves SET idx = -1 WHERE idx = 4")
            await _raw(store, "UPDATE axis_log_leaves SET idx = 4 WHERE idx = 30")
            await _raw(store, "UPDATE axis_log_leaves SET idx = 30 WHERE idx = -1")
            assert (await store.leaf(4), await store.leaf(30)) == (b, a)
        elif damage == "reorder leaves and rehash":  # consistent tables, but the signed head disagrees
            a, b = await store.leaf(4), await store.leaf(30)
            await _raw(store, "DELETE FROM axis_log_nodes")
            await _raw(store, "UPDATE axis_log_leaves SET idx = -1 WHERE idx = 4")
            await _raw(store, "UPDATE axis_log_leaves SET idx = 4 WHERE idx = 30")
            await _raw(store, "UPDATE axis_log_leaves SET idx = 30 WHERE idx = -1")
            src = merkle.ListSource()
            rows = []
            for i in range(37):
                src.append(merkle.leaf_hash(await store.leaf(i)))
            for level, row in enumerate(src.levels):
                rows += [{"id": store_mod.node_id(level, i), "h": h} for i, h in enumerate(row)]
            for r in rows:
                await _raw(store, "INSERT INTO axis_log_nodes (id, hash) VALUES (:id, :h)", r)
        elif damage == "change an indexed column":
            await _raw(store, "UPDATE axis_log_leaves SET sender = 'X' WHERE idx = 3")
        elif damage == "forge a tree head":
            await _raw(store, "UPDATE axis_log_sth SET signature = :s", {"s": b"\x30\x00"})
        elif damage == "tree head root":
            await _raw(store, "UPDATE axis_log_sth SET root_hash = :r", {"r": b"\x00" * 32})
        else:
            raise AssertionError(damage)
        return await store.verify(cas)
    finally:
        await store.close()


@pytest.mark.parametrize("damage, expect", [
    ("delete a leaf", "leaf 11 is missing"),
    ("delete the last leaf", "the log has only 36 leaves"),
    ("change a digest in a leaf", "leaf 20: the stored hash"),
    ("change a leaf hash", "leaf 20: the stored hash"),
    ("change a subtree hash", "subtree (4, 1): the stored hash"),
    ("delete a subtree hash", "subtree (2, 1) has no stored hash"),
    ("add a stray hash", "hashes stored at level 4 beyond"),
    ("reorder two leaves", "leaf 4: the stored hash"),
    ("reorder leaves and rehash", "its root is not the log's root"),
    ("change an indexed column", "leaf 3: the indexed columns"),
    ("forge a tree head", "signature"),
    ("tree head root", "signature"),
])
async def test_verify_detects(store_url: str, pki: TestPKI, damage: str, expect: str) -> None:
    problems = await _damaged(store_url, pki, damage)
    assert problems, damage
    assert any(expect in p for p in problems), problems


async def test_sqlite_readers_in_another_connection(tmp_path: Path) -> None:
    """A reader that is not the writer (another store, as another process would be) sees committed appends; the
    file is in WAL mode."""
    path = tmp_path / "log.sqlite3"
    async with await LogStore.open(path) as writer, await LogStore.open(f"sqlite:///{path}") as reader:
        await writer.append([event(i) for i in range(9)])
        assert await reader.size() == 9
        assert await reader.root() == await writer.root()
        assert await reader.inclusion(3, 9) == await writer.inclusion(3, 9)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with pytest.raises(ValueError):
        await LogStore.open(":memory:")
    with pytest.raises(ValueError):
        await LogStore.open("mysql://x/y")


async def test_sqlite_read_meeting_a_lock_goes_to_the_reader_thread(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    async with await LogStore.open(tmp_path / "log.sqlite3") as store:
        await store.append([event(i) for i in range(6)])
        backend = store._backend
        assert isinstance(backend, store_mod._SqliteBackend)
        real = backend._run
        roles: list[str] = []

        def run(role: str, begin: str, fn: object) -> object:
            roles.append(role)
            if role == "inline":
                raise sqlite3.OperationalError("database is locked")
            return real(role, begin, fn)  # type: ignore[arg-type]

        monkeypatch.setattr(backend, "_run", run)
        assert await store.size() == 6
        assert roles == ["inline", "read"]


def test_key_hash_and_node_ids() -> None:
    assert store_mod.node_id(0, 5) == 5
    assert store_mod.node_id(3, 2) == (3 << 48) + 2
    e = event(1)
    assert store_mod.key_hash(e) == hashlib.sha256(e.key().encode()).digest()[:16]
    assert base64.b64encode(store_mod.key_hash(e))
