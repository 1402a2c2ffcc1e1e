"""The traffic plan: exact totals, determinism, scaling (pure, fast)."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import pytest

from axis.sim import agencies as ag
from axis.sim import plan as pl
from axis.sim import scenario as scn


@pytest.fixture(scope="module")
def seed2019() -> scn.Scenario:
    return scn.load("seed-2019")


@pytest.fixture(scope="module")
def full_plan(seed2019: scn.Scenario) -> list[pl.Planned]:
    return list(pl.plan(seed2019, 2019))


def test_seed_2019_directory(seed2019: scn.Scenario) -> None:
    assert len(seed2019.agencies) == 95
    assert (seed2019.dedicated, seed2019.shared) == (68, 27)
    classes = Counter(a.cls for a in seed2019.agencies)
    assert classes == {ag.MINISTRY: 31, ag.PROVINCE: 63, ag.PARTY: 1}
    codes = {a.code: a.name for a in seed2019.agencies}
    assert "Tây Ninh" in codes["000.00.00.H53"] and "Hồ Chí Minh" in codes["000.00.00.H29"]
    assert "Nghệ An" in codes["000.00.00.H41"] and "Thái Nguyên" in codes["000.00.00.H55"]
    assert codes["000.00.00.G22"] == "Văn phòng Chính phủ" and codes["000.00.00.G12"] == "Bộ Tài chính"
    shared_servers = [s for s in seed2019.servers if s.kind == "shared"]
    assert len(shared_servers) == 2 and all(s.id.startswith("g22-") for s in shared_servers)
    assert seed2019.placement["000.00.00.G22"].startswith("dedicated-")


def test_seed_2019_exact_totals(seed2019: scn.Scenario, full_plan: list[pl.Planned]) -> None:
    t = pl.totals(full_plan)
    assert t.documents == 28024
    assert t.deliveries == 79684
    assert t.bad == seed2019.bad > 0  # bad envelopes are extra, not part of the 28,024
    assert set(t.by_doc_type) == {0, 1, 2, 3}
    assert t.statuses > 0


def test_plan_is_well_formed(seed2019: scn.Scenario, full_plan: list[pl.Planned]) -> None:
    codes = {a.code for a in seed2019.agencies}
    by_seq = {p.seq: p for p in full_plan}
    ids = Counter()
    for p in full_plan:
        assert isinstance(p, pl.PlannedMessage)
        assert seed2019.start <= p.at.date() < seed2019.start + __import__("datetime").timedelta(days=60)
        assert p.sender not in p.recipients and len(set(p.recipients)) == len(p.recipients)
        ids[(p.sender, p.document_id)] += 1
        if p.kind == "good":
            assert set(p.recipients) <= codes
            for r, chain in p.statuses:
                assert r in p.recipients and chain
        if p.doc_type:
            orig = by_seq[p.related]
            assert orig.seq < p.seq and orig.sender == p.sender and orig.doc_type == 0
            assert orig.recipients == p.recipients and p.related_document_id == orig.document_id
    assert max(ids.values()) == 1  # every (sender, DocumentId) is unique
    times = [p.at for p in full_plan]
    assert times == sorted(times)


def test_traffic_shape(full_plan: list[pl.Planned]) -> None:
    good = [p for p in full_plan if isinstance(p, pl.PlannedMessage) and p.kind == "good"]
    weekend = sum(1 for p in good if p.at.weekday() >= 5)
    assert weekend < 0.06 * len(good)
    office = sum(1 for p in good if 7 <= p.at.hour < 18)
    assert office > 0.85 * len(good)
    senders = Counter(p.sender for p in good)
    assert senders.most_common(1)[0][0] == "000.00.00.G22"
    ministries = sum(n for c, n in senders.items() if ".G" in c) / 31
    provinces = sum(n for c, n in senders.items() if ".H" in c) / 63
    assert ministries > 1.5 * provinces
    sizes = sorted(a.size for p in good for a in p.attachments)
    assert sizes[len(sizes) // 2] < 20_000 and sizes[-1] > 1_000_000


def test_bad_envelopes(seed2019: scn.Scenario, full_plan: list[pl.Planned]) -> None:
    bad = [p for p in full_plan if isinstance(p, pl.PlannedMessage) and p.kind == "bad"]
    assert {p.expect for p in bad} == {k for k, _ in seed2019.bad_kinds}
    for p in bad:
        if p.expect == "UNKNOWN_RECIPIENT":
            assert pl.UNKNOWN_CODE in p.recipients and set(p.recipients) <= set(pl.UNKNOWN_CODES)
        if p.expect == "SIGNER_MISMATCH":
            assert p.signer and p.signer != p.sender
        if p.expect == "FORBIDDEN":
            assert p.submit_as and p.submit_as != p.sender
        assert not p.statuses


def test_same_seed_same_plan(seed2019: scn.Scenario) -> None:
    small = scn.scale(seed2019, documents=800)
    assert list(pl.plan(small, 7)) == list(pl.plan(small, 7))


def test_different_seed_different_plan(seed2019: scn.Scenario) -> None:
    small = scn.scale(seed2019, documents=800)
    a, b = list(pl.plan(small, 1)), list(pl.plan(small, 2))
    assert a != b
    assert pl.totals(a).documents == pl.totals(b).documents == 800
    assert pl.totals(a).deliveries == pl.totals(b).deliveries == round(800 * 79684 / 28024)


@pytest.mark.parametrize(("agencies", "documents"), [(10, 60), (40, 500), (300, 1000), (2000, 3000)])
def test_scaling(seed2019: scn.Scenario, agencies: int, documents: int) -> None:
    sc = scn.scale(seed2019, agencies=agencies, documents=documents)
    assert len(sc.agencies) == agencies
    assert len({a.code for a in sc.agencies}) == agencies
    assert sc.dedicated + sc.shared == agencies and sc.shared > 0
    assert "000.00.00.G22" in {a.code for a in sc.agencies}
    t = pl.totals(pl.plan(sc, 3))
    assert t.documents == documents and t.deliveries == sc.deliveries == round(documents * 79684 / 28024)
    codes = {a.code for a in sc.agencies}
    for p in itertools.islice(pl.plan(sc, 3), 200):
        assert p.sender in codes


def test_national_directory_codes() -> None:
    agencies = ag.national(5000)
    codes = [a.code for a in agencies]
    assert len(codes) == len(set(codes)) == 5000
    assert {a.cls for a in agencies} == set(ag.CLASSES)
    for a in agencies:
        parts = a.code.split(".")
        assert len(parts) == 4 and [len(x) for x in parts] == [3, 2, 2, 3], a.code
        assert parts[3] == a.group
    assert "000.00.13.H53" in codes  # a department of Tây Ninh, as in reference/edxml.md


def test_national_scenario_scaled() -> None:
    sc = scn.scale(scn.load("national-2025"), agencies=3000, documents=2000)
    assert len(sc.agencies) == 3000
    assert sc.dedicated == 95 and len([s for s in sc.servers if s.kind == "shared"]) == 6
    items = list(pl.plan(sc, 11))
    t = pl.totals(items)
    assert (t.documents, t.deliveries) == (2000, sc.deliveries)
    groups = {a.code: a.group for a in sc.agencies}
    local = sum(1 for p in items if isinstance(p, pl.PlannedMessage) and p.kind == "good"
                and all(groups[r] == groups[p.sender] for r in p.recipients))  # fmt: skip
    assert local > 0.4 * t.documents  # locality: most traffic stays inside a province or ministry


def test_migration_plan() -> None:
    sc = scn.load("migration")
    items = list(pl.plan(sc, 5))
    moves = [p for p in items if isinstance(p, pl.PlannedMove)]
    assert [m.agency for m in moves] == ["000.00.00.H05", "000.00.00.H35", "000.00.00.G24"]
    kinds = {s.id: s.kind for s in sc.servers}
    assert all(kinds[m.to] == "dedicated" for m in moves)
    assert all(kinds[sc.placement[m.agency]] == "shared" for m in moves)
    first = items.index(moves[0])
    assert 0.3 * len(items) < first < 0.5 * len(items)
    t = pl.totals(items)
    assert (t.documents, t.deliveries, t.moves) == (3000, 8530, 3)


def test_fanout_cannot_exceed_directory(seed2019: scn.Scenario) -> None:
    tiny = dataclasses.replace(seed2019, deliveries=seed2019.documents * 95)
    with pytest.raises(scn.ScenarioError, match="deliveries"):
        scn.validate(tiny)
