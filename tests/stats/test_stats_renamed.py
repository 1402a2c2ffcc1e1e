"""An agency's code changes: its statistics stay continuous (traffic under the former code counts under the new)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from axis.core.directory import Agency, Directory, Server
from axis.stats.query import StatsFilter, query_stats
from axis.stats.store import StatsStore
from tests.stats.stats_data import DIRECTORY, G01, fill

NEW = "G01.7"


def renamed() -> Directory:
    """The test directory with G01 renamed to NEW (G01 its alias)."""
    servers = [Server(s.id, s.kind) for s in DIRECTORY.servers.values()]  # type: ignore[arg-type]
    agencies = [Agency(NEW if a.code == G01 else a.code, a.name, a.server, aliases=(G01,) if a.code == G01 else ())
                for a in DIRECTORY.agencies.values()]
    return Directory(servers, agencies)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StatsStore]:
    s = await StatsStore.open(store_url)
    await fill(s)
    try:
        yield s
    finally:
        await s.close()


async def test_former_code_counts_under_the_new_code(store: StatsStore) -> None:
    before = await query_stats(store, DIRECTORY)
    after = await query_stats(store, renamed())
    for key in ("agencies", "sent", "received", "refused", "routes"):
        assert after[key] == before[key]
    was = {r["key"]: r for r in before["breakdown"]}[G01]
    now = {r["key"]: r for r in after["breakdown"]}
    assert G01 not in now and (now[NEW]["sent"], now[NEW]["received"], now[NEW]["refused"]) == (
        was["sent"], was["received"], was["refused"]) != (0, 0, 0)
    assert after["top_senders"][0]["agency"] == NEW and after["top_senders"][0]["sent"] == 2


async def test_the_agency_filter_takes_the_former_code_in(store: StatsStore) -> None:
    before = await query_stats(store, DIRECTORY, StatsFilter(agency=G01))
    after = await query_stats(store, renamed(), StatsFilter(agency=NEW))
    for key in ("sent", "received", "refused", "routes", "hourly"):
        assert after[key] == before[key]
    assert before["sent"] + before["received"] > 0
    assert [r["key"] for r in after["breakdown"]] == [NEW]
