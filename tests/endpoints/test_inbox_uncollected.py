"""InboxStore.uncollected on both databases: deliveries not acked, older than a cutoff, oldest first, paged."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from endpoints.inbox import InboxStore, open_inbox

S = "000.00.00.G22"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))  # shared by the session: this test's agencies are its own


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[InboxStore]:
    st = await open_inbox(db_url)
    try:
        yield st
    finally:
        await st.close()


def row(agency: str, n: int, received_at: float, acked_at: float | None = None) -> dict[str, Any]:
    return {"id": secrets.token_hex(16), "agency": agency, "sender": S, "document_id": f"doc-{agency}-{n}",
            "doc_type": 0, "related_document_id": None, "kind": "document", "subject": "", "size": 8,
            "data": b"<edXML/>", "received_at": received_at, "acked_at": acked_at}


async def test_uncollected(store: InboxStore) -> None:
    tag = f"{secrets.randbelow(90) + 10:02d}"
    a, b = f"000.00.{tag}.H01", f"000.00.{tag}.H02"
    now = time.time()
    rows = [row(a, 1, now - 7200), row(a, 2, now - 3600), row(a, 3, now - 60), row(b, 4, now - 5000),
            row(b, 5, now - 9000, acked_at=now - 100)]
    await store.insert_rows("axis_received", rows)
    mine = {a, b}

    def docs(items: list[dict[str, Any]]) -> list[str]:
        return [i["document_id"] for i in items if i["recipient"] in mine]

    everything = await store.uncollected(now + 1, limit=1000)
    assert docs(everything) == [f"doc-{a}-1", f"doc-{b}-4", f"doc-{a}-2", f"doc-{a}-3"]  # oldest first, no acked
    older = await store.uncollected(now - 3000, limit=1000)
    assert docs(older) == [f"doc-{a}-1", f"doc-{b}-4", f"doc-{a}-2"]
    first = next(i for i in older if i["document_id"] == f"doc-{a}-1")
    assert first == {"id": rows[0]["id"], "document_id": f"doc-{a}-1", "sender": S, "recipient": a,
                     "received_at": first["received_at"], "received_ts": pytest.approx(now - 7200)}
    assert first["received_at"].endswith("Z")
    assert docs(await store.uncollected(now - 3000, agency=a)) == [f"doc-{a}-1", f"doc-{a}-2"]
    page1 = await store.uncollected(now, agency=a, limit=2)
    page2 = await store.uncollected(now, agency=a, limit=2, offset=2)
    assert docs(page1 + page2) == [f"doc-{a}-1", f"doc-{a}-2", f"doc-{a}-3"]
    assert await store.ack(a, rows[0]["id"])
    assert docs(await store.uncollected(now, agency=a)) == [f"doc-{a}-2", f"doc-{a}-3"]


async def test_the_unacked_index_exists(db_url: str) -> None:
    """Also in a database whose tables were created before the index was added."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        import sqlite3

        db = sqlite3.connect(path)
        db.execute("CREATE TABLE axis_received (id TEXT PRIMARY KEY, agency TEXT, sender TEXT, document_id TEXT, "
                   "doc_type INTEGER, related_document_id TEXT, kind TEXT, subject TEXT, size INTEGER, data BLOB, "
                   "received_at REAL, acked_at REAL)")
        db.commit()
        db.close()
        store = await open_inbox(db_url)
        await store.close()
        db = sqlite3.connect(path)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        db.close()
    else:
        from endpoints.inbox.store import normalize_url

        engine = create_async_engine(normalize_url(db_url))
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP INDEX IF EXISTS ix_axis_received_unacked"))
        store = await open_inbox(db_url)
        await store.close()
        async with engine.connect() as conn:
            names = {r[0] for r in await conn.execute(sa.text("SELECT indexname FROM pg_indexes"))}
        await engine.dispose()
    assert "ix_axis_received_unacked" in names
