"""The SQLite inbox store when another process holds the database's write lock: the event loop does not wait,
the write is re-run in a worker thread that does, and a lock held too long is StoreBusy (never a bare
"database is locked")."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from endpoints import inbox_sqlite
from endpoints.inbox import InboxStore, StoreBusy

S, A = "000.00.00.G22", "000.00.00.H53"
STATUS = {"document_id": f"{S},2019/03/12,1/VPCP", "from_code": A, "code": "01", "description": "arrived",
          "timestamp": "2019/03/12 08:00:00"}


def _locker(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    return other


async def test_a_write_waits_for_another_writer_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = await InboxStore.open(f"sqlite:///{path}")
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
    store = await InboxStore.open(f"sqlite:///{path}")
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
    store = await InboxStore.open(f"sqlite:///{path}")  # and nothing half-written was left behind
    try:
        assert await store.count_received() == 0
    finally:
        await store.close()
