"""What a delivery keeps for its statuses (``ReceivedHead``) on both databases, and a store created before those
columns existed: opening it adds them, its rows read as having none kept (their statuses read the bytes)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from endpoints.inbox import ReceivedHead, open_inbox
from endpoints.inbox.store import ADDED_COLUMNS, received
from tests.conftest import fresh_pg_database

A, S = "000.00.00.K97", "000.00.00.K98"  # codes of their own: the PostgreSQL database is shared by the session
ADDED = {column for table, column in ADDED_COLUMNS if table is received}
HEAD = ReceivedHead("ab" * 32, "12/UBND-VP", "2019-03-12")


def _kw(n: int) -> dict[str, object]:
    return {"sender": S, "document_id": f"{S},2019/03/12,{n}/VPCP", "doc_type": 0, "related_document_id": None,
            "subject": "x", "data": b"<edXML/>"}


#: the received table as the release before ReceivedHead created it (the other tables are unchanged)
OLD_RECEIVED = """CREATE TABLE axis_received (
    id VARCHAR(32) PRIMARY KEY, agency VARCHAR(64) NOT NULL, sender VARCHAR(64) NOT NULL,
    document_id VARCHAR(512) NOT NULL, doc_type INTEGER NOT NULL, related_document_id VARCHAR(512),
    kind VARCHAR(16) NOT NULL, subject TEXT NOT NULL, size INTEGER NOT NULL, data {blob} NOT NULL,
    received_at FLOAT NOT NULL, acked_at FLOAT,
    CONSTRAINT uq_axis_received_delivery UNIQUE (agency, sender, document_id, doc_type))"""
OLD_ROW = ("INSERT INTO axis_received (id, agency, sender, document_id, doc_type, kind, subject, size, data, "
           "received_at) VALUES ('old1', '{a}', '{s}', 'D-old', 0, 'edoc', '', 8, {data}, 1.0)")


def _sqlite_old(tmp_path: Path) -> str:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(OLD_RECEIVED.format(blob="BLOB"))
    db.execute(OLD_ROW.format(a=A, s=S, data="X'3c6564584d4c2f3e'"))
    db.commit()
    db.close()
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


async def test_the_head_kept_at_delivery_is_read_back_with_the_row(fresh_url: str) -> None:
    store = await open_inbox(fresh_url)
    try:
        kept = await store.store_received([A], **_kw(1), head=HEAD)  # type: ignore[arg-type]
        none = await store.store_received([A], **_kw(2))  # type: ignore[arg-type]
        row = await store.received_row(A, kept[0].id)
        assert row is not None and row.head == HEAD and row.sha256 == HEAD.sha256
        bare = await store.received_row(A, none[0].id)
        assert bare is not None and bare.head is None
        [again] = await store.received_documents(A, S, str(_kw(1)["document_id"]))
        assert again.head == HEAD
    finally:
        await store.close()


async def test_a_code_longer_than_its_column_is_not_kept_and_the_delivery_still_stored(fresh_url: str) -> None:
    """CodeNumber and CodeNotation are unbounded in the schema: a head that does not fit its columns is not kept
    (PostgreSQL would refuse the row, and with it the delivery); the row is stored and its statuses read the bytes.
    The longest value that fits is kept."""
    assert ReceivedHead.of("ab" * 32, "x" * 513, "2019-03-12") is None
    longest = ReceivedHead.of("ab" * 32, "x" * 512, "2019-03-12")
    assert longest is not None
    store = await open_inbox(fresh_url)
    try:
        [fits] = await store.store_received([A], **_kw(4), head=longest)  # type: ignore[arg-type]
        [over] = await store.store_received([A], **_kw(5), head=ReceivedHead.of(  # type: ignore[arg-type]
            "ab" * 32, "x" * 100_000, "2019-03-12"))
        assert (await store.received_row(A, fits.id)).head == longest  # type: ignore[union-attr]
        assert (await store.received_row(A, over.id)).head is None  # type: ignore[union-attr]
    finally:
        await store.close()


async def _old_store_gains_the_columns(url: str, columns: Callable[[], Awaitable[set[str]]]) -> None:
    assert not ADDED & await columns()
    store = await open_inbox(url)
    try:
        assert await columns() >= ADDED
        old = await store.received_row(A, "old1")
        assert old is not None and old.data == b"<edXML/>" and old.head is None  # its statuses read the bytes
        [new] = await store.store_received([A], **_kw(3), head=HEAD)  # type: ignore[arg-type]
        assert (await store.received_row(A, new.id)).head == HEAD  # type: ignore[union-attr]
    finally:
        await store.close()
    again = await open_inbox(url)  # opening it again changes nothing
    await again.close()


async def test_a_sqlite_store_created_before_the_columns_gains_them(tmp_path: Path) -> None:
    url = _sqlite_old(tmp_path)

    async def columns() -> set[str]:
        db = sqlite3.connect(url.split(":///", 1)[1])
        try:
            return {row[1] for row in db.execute("PRAGMA table_info(axis_received)")}
        finally:
            db.close()

    await _old_store_gains_the_columns(url, columns)


def test_a_postgres_store_created_before_the_columns_gains_them() -> None:
    import asyncio

    import asyncpg

    async def run(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(OLD_RECEIVED.format(blob="BYTEA"))
            await conn.execute(OLD_ROW.format(a=A, s=S, data="'\\x3c6564584d4c2f3e'::bytea"))

            async def columns() -> set[str]:
                return {r["column_name"] for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'axis_received'")}

            await _old_store_gains_the_columns(url, columns)
        finally:
            await conn.close()

    with fresh_pg_database("axis_test_old") as url:  # a database of its own: the old table is created first
        asyncio.run(run(url))
