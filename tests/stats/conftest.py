"""Fixtures for the statistics tests: one store URL per backend (SQLite file, PostgreSQL session database)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from axis.stats.store import StatsStore, metadata


async def _wipe(url: str) -> None:
    store = await StatsStore.open(url)
    try:
        async with store.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL with empty tables: a fresh SQLite file, or the session's PostgreSQL database wiped."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stats.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(_wipe(url))
    return url
