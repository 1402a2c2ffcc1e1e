"""The SQLite inbox store when another process holds the database's write lock: the event loop does not wait,
the write is re-run in a worker thread that does, and a lock held too long is StoreBusy (never a bare
"database is locked")."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from endpoints.inbox import StoreBusy, open_inbox
from endpoints.inbox import sqlite as inbox_sqlite

S, A = "000.00.00.G22", "000.00.00.H53"
STATUS = {"document_id": f"{S},2019/03/12,1/VPCP", "from_code": A, "code": "01", "description": "arrived",
          "timestamp": "2019/03/12 08:00:00"}


def _locker(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    return other


async def test_a_write_waits_for_another_writer_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = await open_inbox(f"sqlite:///{path}")
    try:
        other = _locker(path)
        write = asyncio.create_task(store.store_status(S, **STATUS))
        ticks = 0
        for _ in range(10):  # the loop keeps running meanwhile
            await asyncio.sleep(0.02)
            ticks += 1
        assert not write.done() and ticks == 10
        other.execute("COMMIT")
        other.close()
        assert await asyncio.wait_for(write, 10) is True
        assert await store.store_status(S, **STATUS) is False  # stored once; the fast path works again
        assert [s["code"] for s in await store.statuses_for(S, STATUS["document_id"])] == ["01"]
    finally:
        await store.close()


async def test_a_lock_held_too_long_is_store_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox_sqlite, "PATIENT_BUSY_MS", 200)
    path = tmp_path / "inbox.sqlite3"
    store = await open_inbox(f"sqlite:///{path}")
    other = _locker(path)
    try:
        with pytest.raises(StoreBusy):
            await store.store_received([A], sender=S, document_id="d", doc_type=0, related_document_id=None,
                                       subject="", data=b"<x/>")
        assert await store.count_received() == 0  # reads do not need the write lock
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()
    store = await open_inbox(f"sqlite:///{path}")  # and nothing half-written was left behind
    try:
        assert await store.count_received() == 0
    finally:
        await store.close()


async def test_writes_of_one_loop_turn_share_a_transaction_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    """Group commit: deliveries stored in the same event-loop turn commit in one transaction; if that fails,
    each is written alone, so only the bad one fails."""
    store = await open_inbox(f"sqlite:///{tmp_path / 'inbox.sqlite3'}")
    assert isinstance(store, inbox_sqlite.SqliteInboxStore)
    try:
        kw = {"sender": S, "doc_type": 0, "related_document_id": None, "subject": "s", "data": b"<edXML/>"}
        before = store.transactions
        stored = await asyncio.gather(*(store.store_received([A], document_id=f"{S},2019/03/12,{i}/VPCP", **kw)
                                        for i in range(20)))
        assert [s.new for [s] in stored] == [True] * 20
        assert store.transactions - before == 1  # one transaction for the twenty
        assert await store.count_received(A) == 20

        bad = {**kw, "subject": None}  # NOT NULL: this row cannot be written
        results = await asyncio.gather(
            store.store_received([A], document_id=f"{S},2019/03/12,100/VPCP", **kw),
            store.store_received([A], document_id=f"{S},2019/03/12,101/VPCP", **bad),
            store.store_status(S, **STATUS), return_exceptions=True)
        assert [s.new for s in results[0]] == [True]  # type: ignore[union-attr]
        assert isinstance(results[1], sqlite3.IntegrityError)
        assert results[2] is True
        assert await store.count_received(A) == 21
    finally:
        await store.close()


async def test_opening_waits_for_another_process_creating_the_schema(tmp_path: Path) -> None:
    """Several servers of several host processes share one SQLite inbox file and create its schema at start: the
    one that finds the write lock taken waits for it (in its worker thread) instead of exiting with "database is
    locked" (seen in CI: a host process exited during `axis demo`'s start)."""
    path = tmp_path / "shared-inbox.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("BEGIN IMMEDIATE")  # another process is creating the schema right now
    opening = asyncio.create_task(inbox_sqlite.SqliteInboxStore.open_path(str(path)))
    await asyncio.sleep(0.3)
    assert not opening.done()  # waiting, not failed
    other.execute("COMMIT")
    other.close()
    store = await asyncio.wait_for(opening, 10)
    try:
        assert await store.count_received() == 0
    finally:
        await store.close()
