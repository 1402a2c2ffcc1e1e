"""Statistics queries over a known traffic set, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from axis.stats.query import StatsFilter, parse_when, query_stats
from axis.stats.store import StatsStore
from tests.stats.stats_data import DIRECTORY, G01, G02, H01, H02, H03, fill


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StatsStore]:
    s = await StatsStore.open(store_url)
    await fill(s)
    try:
        yield s
    finally:
        await s.close()


def test_parse_when() -> None:
    assert parse_when("2019-03-12") == datetime(2019, 3, 12, tzinfo=UTC).timestamp()
    assert parse_when("2019-03-12", end=True) == datetime(2019, 3, 13, tzinfo=UTC).timestamp()
    assert parse_when("2019-03-12T09:00:00") == datetime(2019, 3, 12, 9, tzinfo=UTC).timestamp()
    assert parse_when("2019-03-12T16:00:00+07:00") == datetime(2019, 3, 12, 9, tzinfo=UTC).timestamp()
    assert parse_when("2019-03-12T09:00:00Z") == datetime(2019, 3, 12, 9, tzinfo=UTC).timestamp()
    assert parse_when(None) is None
    with pytest.raises(ValueError):
        parse_when("last tuesday")


async def test_totals_and_breakdowns(store: StatsStore) -> None:
    s = await query_stats(store, DIRECTORY)
    assert (s["agencies"], s["dedicated"], s["shared"]) == (5, 2, 3)
    assert s["servers"] == {"dedicated": 2, "shared": 2}
    assert (s["sent"], s["received"], s["refused"]) == (4, 6, 3)
    assert (s["expected"], s["pending"]) == (7, 1)
    assert s["routes"] == {
        "dedicated->dedicated": 1,
        "dedicated->shared": 2,
        "shared->dedicated": 2,
        "shared->shared": 1,
    }
    assert s["by_kind"] == {"dedicated": {"sent": 3, "received": 3}, "shared": {"sent": 1, "received": 3}}
    assert s["by_reason"] == {"SIGNATURE_INVALID": 2, "XML_MALFORMED": 1}
    assert [(r["agency"], r["sent"]) for r in s["top_senders"]] == [(G01, 2), (G02, 1), (H01, 1)]
    assert s["top_senders"][0]["name"] == "Văn phòng Chính phủ"
    assert [(r["agency"], r["received"]) for r in s["top_receivers"]] == [
        (G01, 2),
        (G02, 1),
        (H01, 1),
        (H02, 1),
        (H03, 1),
    ]
    assert s["sizes"]["bytes_sent"] == 1000 + 2000 + 3000 + 4000
    assert s["sizes"]["max_bytes"] == 4000
    assert s["sizes"]["bytes_refused"] == 150
    buckets = {b["le"]: b["count"] for b in s["latency"]["buckets"]}
    assert sum(buckets.values()) == 4
    assert (buckets[1.0], buckets[5.0], buckets[50.0], buckets[1000.0]) == (1, 1, 1, 1)
    assert s["latency"]["max_ms"] == 700.0
    assert s["daily"] == [
        {"t": "2019-03-12T00:00:00Z", "sent": 3, "received": 6, "refused": 1},
        {"t": "2019-03-13T00:00:00Z", "sent": 1, "received": 0, "refused": 2},
    ]
    hourly = {
        p["t"][11:13]: (p["sent"], p["received"], p["refused"]) for p in s["hourly"] if p["t"][:10] == "2019-03-12"
    }
    assert hourly == {"08": (2, 3, 1), "09": (1, 3, 0)}
    assert sum(p["sent"] for p in s["series"]["points"]) == 4
    assert sum(p["received"] for p in s["series"]["points"]) == 6
    assert s["first"] == "2019-03-12T08:00:00Z" and s["last"] == "2019-03-13T10:00:00Z"
    by_agency = {r["key"]: (r["sent"], r["received"], r["refused"]) for r in s["breakdown"]}
    assert by_agency == {G01: (2, 2, 0), G02: (1, 1, 1), H01: (1, 1, 0), H02: (0, 1, 1), H03: (0, 1, 0)}


async def test_time_filters(store: StatsStore) -> None:
    day2 = await query_stats(store, DIRECTORY, StatsFilter(start=parse_when("2019-03-13")))
    assert (day2["sent"], day2["received"], day2["refused"]) == (1, 0, 2)
    day1 = await query_stats(store, DIRECTORY, StatsFilter(end=parse_when("2019-03-12", end=True)))
    assert (day1["sent"], day1["received"], day1["refused"]) == (3, 6, 1)
    nine = await query_stats(
        store, DIRECTORY, StatsFilter(parse_when("2019-03-12T09:00:00"), parse_when("2019-03-12T10:00:00"))
    )
    assert (nine["sent"], nine["received"], nine["refused"]) == (1, 3, 0)
    assert nine["filters"]["from"] == "2019-03-12T09:00:00Z"
    # the directory totals do not depend on the window
    assert (nine["agencies"], nine["dedicated"], nine["shared"]) == (5, 2, 3)


async def test_agency_filter(store: StatsStore) -> None:
    s = await query_stats(store, DIRECTORY, StatsFilter(agency=G01))
    assert (s["sent"], s["received"], s["refused"]) == (2, 2, 0)
    assert s["routes"] == {
        "dedicated->dedicated": 1,
        "dedicated->shared": 2,
        "shared->dedicated": 1,
        "shared->shared": 0,
    }
    assert [r["key"] for r in s["breakdown"]] == [G01]
    h02 = await query_stats(store, DIRECTORY, StatsFilter(agency=H02))
    assert (h02["sent"], h02["received"], h02["refused"]) == (0, 1, 1)


async def test_by_server_and_day(store: StatsStore) -> None:
    s = await query_stats(store, DIRECTORY, by="server")
    rows = {r["key"]: (r["kind"], r["agencies"], r["sent"], r["received"], r["refused"]) for r in s["breakdown"]}
    assert rows == {
        "s-g01": ("dedicated", 1, 2, 2, 0),
        "s-g02": ("dedicated", 1, 1, 1, 1),
        "shared-1": ("shared", 2, 1, 2, 1),
        "shared-2": ("shared", 1, 0, 1, 0),
    }
    d = await query_stats(store, DIRECTORY, by="day")
    assert d["breakdown"] == [
        {"key": "2019-03-12", "sent": 3, "received": 6, "refused": 1},
        {"key": "2019-03-13", "sent": 1, "received": 0, "refused": 2},
    ]
    with pytest.raises(ValueError):
        await query_stats(store, DIRECTORY, by="week")


async def test_without_directory_counts_agencies_seen(store: StatsStore) -> None:
    s = await query_stats(store, None)
    assert s["agencies_source"] == "traffic"
    assert (s["agencies"], s["dedicated"], s["shared"]) == (5, 2, 3)
    assert (s["sent"], s["received"], s["refused"]) == (4, 6, 3)


async def test_empty_store(store_url: str) -> None:
    s = await StatsStore.open(store_url)
    try:
        out = await query_stats(s, DIRECTORY)
    finally:
        await s.close()
    assert (out["sent"], out["received"], out["refused"], out["pending"]) == (0, 0, 0, 0)
    assert out["series"]["points"] == [] and out["first"] is None
    assert out["agencies"] == 5
