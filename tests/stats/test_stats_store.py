"""The statistics store: schema on open, exact idempotent counting, concurrent writers adding up."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from axis.stats.store import (
    Accepted,
    Delivered,
    Refused,
    StatsStore,
    accepted_table,
    checkpoint,
    delivered_table,
    normalize_url,
    refused_table,
)

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("stats_writer.py")
AT = datetime(2019, 3, 12, 9, 30, tzinfo=UTC)


async def counts(store: StatsStore) -> tuple[int, int, int]:
    async with store.engine.connect() as conn:
        out = []
        for table in (accepted_table, delivered_table, refused_table):
            out.append((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
    return out[0], out[1], out[2]


def acc(n: int, sender: str = "000.00.00.G01") -> Accepted:
    return Accepted(f"{sender}|D{n}|1", sender, "dedicated", f"D{n}", 1, 100, (("000.00.00.H01", "shared"),), 2.0, AT)


def dlv(n: int, recipient: str = "000.00.00.H01", sender: str = "000.00.00.G01") -> Delivered:
    return Delivered(f"{sender}|D{n}|1", sender, "dedicated", recipient, "shared", f"D{n}", AT)


def test_normalize_url() -> None:
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_url("/tmp/a.sqlite3") == "sqlite+aiosqlite:////tmp/a.sqlite3"
    with pytest.raises(ValueError):
        normalize_url("mysql://h/db")


async def test_default_url_is_a_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AXIS_STATS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    store = await StatsStore.open(None)
    try:
        await store.record(accepted=[acc(1)])
        assert await counts(store) == (1, 0, 0)
    finally:
        await store.close()
    assert (tmp_path / "axis-stats.sqlite3").is_file()


async def test_record_is_idempotent(store_url: str) -> None:
    store = await StatsStore.open(store_url)
    try:
        assert await counts(store) == (0, 0, 0)
        batch = dict(
            accepted=[acc(1), acc(2)],
            delivered=[dlv(1), dlv(1, "000.00.00.H02"), dlv(2)],
            refused=[Refused("m1", None, "XML_MALFORMED", 5, AT)],
        )
        await store.record(**batch)
        assert await counts(store) == (2, 3, 1)
        await store.record(**batch)  # a replay of the whole batch
        await store.record(delivered=[dlv(1)], accepted=[acc(1), acc(3)])  # a redelivery plus one new document
        assert await counts(store) == (3, 3, 1)
        # repeats inside one batch count once too
        await store.record(
            accepted=[acc(4), acc(4)],
            delivered=[dlv(4), dlv(4)],
            refused=[Refused("m2", "X", "TOO_LARGE", 1, AT), Refused("m2", "X", "TOO_LARGE", 1, AT)],
        )
        assert await counts(store) == (4, 4, 2)
        await store.record()  # nothing to do
    finally:
        await store.close()


async def test_schema_creation_is_idempotent(store_url: str) -> None:
    first = await StatsStore.open(store_url)
    await first.record(accepted=[acc(1)])
    second = await StatsStore.open(store_url)  # schema exists already; the rows stay
    try:
        assert await counts(second) == (1, 0, 0)
    finally:
        await first.close()
        await second.close()


async def test_naive_datetimes_are_utc(store_url: str) -> None:
    store = await StatsStore.open(store_url)
    try:
        naive = Accepted("k|1|1", "k", "shared", "1", 1, 1, (), 1.0, datetime(2019, 3, 12, 9, 30))
        await store.record(accepted=[naive])
        async with store.engine.connect() as conn:
            row = (await conn.execute(sa.select(accepted_table.c.at, accepted_table.c.hour))).one()
        assert row.at == AT.timestamp()
        assert row.hour == int(AT.timestamp() // 3600)
    finally:
        await store.close()


async def _run_writer(url: str, prefix: str, start: int, count: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        url,
        prefix,
        str(start),
        str(count),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def test_concurrent_writers_add_up(store_url: str) -> None:
    """Two writer processes at once: disjoint documents add up, overlapping ones (a replay) count once."""
    store = await StatsStore.open(store_url)  # schema first, as the router does at startup
    try:
        await asyncio.gather(
            _run_writer(store_url, "a", 0, 400),
            _run_writer(store_url, "b", 0, 400),
            _run_writer(store_url, "a", 200, 400),  # overlaps a-200..a-399, adds a-400..a-599
        )
        assert await counts(store) == (1000, 2000, 1000)
    finally:
        await store.close()


async def test_concurrent_schema_creation(store_url: str) -> None:
    """Several processes opening a new store at the same moment all succeed (routers start together)."""
    store = await StatsStore.open(store_url)  # then drop the tables: a brand-new store for the writers
    try:
        async with store.engine.begin() as conn:
            for table in (accepted_table, delivered_table, refused_table):
                await conn.execute(sa.text(f"DROP TABLE {table.name}"))
        await asyncio.gather(*(_run_writer(store_url, f"p{i}", 0, 50) for i in range(4)))
        assert await counts(store) == (200, 400, 200)
    finally:
        await store.close()


async def test_sqlite_store_closes_twice_and_is_usable_after_close(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from axis.stats.store import Refused, StatsStore

    store = await StatsStore.open(f"sqlite:///{tmp_path}/s.sqlite3")
    at = datetime(2019, 5, 1, tzinfo=UTC)
    await store.record(refused=[Refused("m1", None, "XML_MALFORMED", 10, at)])
    await store.close()
    await store.close()
    await store.record(refused=[Refused("m1", None, "XML_MALFORMED", 10, at), Refused("m2", "a", "FORBIDDEN", 5, at)])
    async with store.engine.connect() as conn:
        import sqlalchemy as sa

        assert (await conn.execute(sa.text("SELECT count(*) FROM axis_refused"))).scalar() == 2
    await store.close()


async def test_sqlite_counts_are_written_in_the_loop_and_wait_for_another_writers_lock_in_a_thread(
        tmp_path: Path) -> None:
    """A counting transaction runs in the event loop; when another process holds the write lock, it is run again
    in a worker thread that waits for the lock, while the loop goes on (and later writes queue behind it)."""
    url = f"sqlite:///{tmp_path / 'stats.sqlite3'}"
    store = await StatsStore.open(url)
    try:
        await store.record(accepted=[acc(0)])  # the first write connects (in a thread)
        writer = store._writer
        assert writer is not None and writer._db is not None
        patient = writer._write_patiently
        in_threads: list[int] = []

        def counted(batches: Any) -> None:
            in_threads.append(len(batches))
            patient(batches)

        writer._write_patiently = counted
        await store.record(accepted=[acc(1)])  # inline: nothing else holds the lock
        assert in_threads == []
        other = sqlite3.connect(str(tmp_path / "stats.sqlite3"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another router in the middle of its transaction
        ticks = 0

        async def loop_goes_on() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(loop_goes_on())
        waiting = asyncio.gather(store.record(accepted=[acc(2)]), store.record(delivered=[dlv(2)]))
        await asyncio.sleep(0.3)
        assert not waiting.done() and ticks >= 10  # waiting in a thread, not in the loop
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(waiting, 10)
        ticker.cancel()
        assert await counts(store) == (3, 1, 0) and in_threads == [1, 1]
        await store.record(accepted=[acc(3)])  # back in the loop
        assert in_threads == [1, 1] and await counts(store) == (4, 1, 0)
    finally:
        await store.close()


def _write_while_checkpointing(path: Path, reset_bytes: int, rows: int = 2000) -> int:
    """A connection writing 8 KB rows (a short pause between transactions, as an event loop's group commits
    have), two readers whose read transactions overlap (an inbox being listed, counted, fetched) and a thread
    checkpointing as the stores do (:func:`checkpoint`); the largest WAL seen."""
    import threading
    import time

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    done = threading.Event()

    def checkpoints() -> None:
        while not done.is_set():
            checkpoint(str(path), reset_bytes)
            done.wait(0.005)

    def reader(offset: float) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        time.sleep(offset)
        while not done.is_set():
            db.execute("BEGIN")
            db.execute("SELECT max(id) FROM t").fetchone()
            time.sleep(0.004)
            db.execute("COMMIT")
        db.close()

    threads = [threading.Thread(target=checkpoints), threading.Thread(target=reader, args=(0.0,)),
               threading.Thread(target=reader, args=(0.002,))]
    for t in threads:
        t.start()
    largest, blob = 0, os.urandom(8000)
    try:
        for i in range(rows):
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO t (data) VALUES (?)", (blob,))
            writer.execute("COMMIT")
            time.sleep(0.0002)
            if i % 50 == 0:
                largest = max(largest, os.path.getsize(f"{path}-wal"))
    finally:
        done.set()
        for t in threads:
            t.join()
        writer.close()
    return largest


def test_checkpoints_beside_a_busy_writer_keep_the_wal_bounded(tmp_path: Path) -> None:
    """A PASSIVE checkpoint beside a writer and overlapping readers never lets the WAL start over: it grows with
    everything written (how the inboxes' WALs reached gigabytes); past ``reset_bytes`` the checkpoint truncates it."""
    mib = 1024 * 1024
    starved = _write_while_checkpointing(tmp_path / "passive.db", reset_bytes=1 << 40)
    bounded = _write_while_checkpointing(tmp_path / "reset.db", reset_bytes=mib)
    assert starved > 20 * mib  # 2,000 × 8 KB written (3 pages each), the WAL never started over
    assert bounded < 8 * mib


async def test_checkpoints_are_due_by_writes_or_by_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from axis.stats import store as stats_store

    ran: list[str] = []
    monkeypatch.setattr(stats_store, "checkpoint", lambda path: ran.append(path))
    now = [0.0]
    checkpoints = stats_store.Checkpoints(str(tmp_path / "s.db"), clock=lambda: now[0])
    for _ in range(stats_store.CHECKPOINT_EVERY - 1):
        checkpoints.wrote()
    await asyncio.sleep(0.05)
    assert ran == []
    checkpoints.wrote()  # the 256th write
    await checkpoints.close()
    assert len(ran) == 1
    checkpoints.wrote()
    now[0] += stats_store.CHECKPOINT_SECONDS - 1
    checkpoints.wrote()
    await asyncio.sleep(0.05)
    assert len(ran) == 1  # neither many writes nor long enough
    now[0] += 1
    checkpoints.wrote()  # ten seconds since the last one: a slow writer's WAL is checkpointed too
    await checkpoints.close()
    assert len(ran) == 2
