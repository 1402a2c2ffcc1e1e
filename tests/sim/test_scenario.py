"""Scenario loading and validation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from axis.sim import scenario as scn


def minimal(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "t",
        "start": "2019-03-12",
        "days": 5,
        "documents": 10,
        "deliveries": 20,
        "agencies": {"preset": "vn-2019", "shared_servers": 1, "shared_members": ["H53"]},
    }
    raw.update(over)
    return raw


def test_bundled_scenarios_load() -> None:
    assert {"seed-2019", "national-2025", "migration"} <= set(scn.available())
    for name in ("seed-2019", "migration"):
        assert scn.load(name).name == name


def test_load_from_file(tmp_path: Path) -> None:
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(minimal(), allow_unicode=True), encoding="utf-8")
    sc = scn.load(str(p))
    assert sc.name == "t" and sc.shared == 1 and sc.dedicated == 94
    assert sc.placement["000.00.00.H53"] == "g22-shared-1"


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"name": ""}, "name"),
        ({"start": "12/03/2019"}, "start"),
        ({"days": 0}, "days"),
        ({"documents": "many"}, "documents"),
        ({"deliveries": 5}, "deliveries"),
        ({"deliveries": 10 * 95}, "deliveries"),
        ({"agencies": {"preset": "mars"}}, "preset"),
        ({"agencies": {"preset": "vn-2019", "shared_members": ["G77"]}}, "shared_members"),
        ({"agencies": {"preset": "vn-2019", "shared_classes": ["village"]}}, "shared_classes"),
        ({"agencies": {"preset": "vn-2019", "shared_servers": 0, "shared_members": ["H01"]}}, "shared_servers"),
        ({"mix": {"fanout": {0: 1}}}, "fanout"),
        ({"mix": {"doc_types": {"Công văn": -1}}}, "doc_types"),
        ({"mix": {"office_hours": [18, 7]}}, "office_hours"),
        ({"mix": {"attachments": {"sizes": [[10, 5, 1]]}}}, "sizes"),
        ({"mix": {"statuses": {"share": 2}}}, "share"),
        ({"bad": {"count": 3, "kinds": {"BAD_LUCK": 1}}}, "bad.kinds"),
        ({"migrations": [{"agency": "H01", "at": 0.5}]}, "not on a shared server"),
        ({"migrations": [{"agency": "H53", "at": 1.5}]}, "at"),
        ({"expect": {"agencies": 96}}, "expect.agencies"),
    ],
)
def test_validation_errors(over: dict[str, Any], match: str) -> None:
    with pytest.raises(scn.ScenarioError, match=match):
        scn.from_dict(minimal(**over))


def test_unknown_scenario_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(scn.ScenarioError, match="no scenario"):
        scn.load("no-such-scenario")
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(scn.ScenarioError, match="YAML"):
        scn.load(str(p))
    p.write_text("- a list", encoding="utf-8")
    with pytest.raises(scn.ScenarioError, match="mapping"):
        scn.load(str(p))


def test_scale_keeps_ratio_and_validates() -> None:
    sc = scn.load("seed-2019")
    small = scn.scale(sc, documents=500)
    assert small.deliveries == round(500 * 79684 / 28024) and small.bad >= 2
    assert scn.scale(sc, documents=500, bad=0).bad == 0
    with pytest.raises(scn.ScenarioError):
        scn.scale(sc, agencies=1)
    # two agencies can only exchange one delivery per document
    two = scn.scale(sc, agencies=2, documents=10)
    assert two.deliveries == 10


def test_agency_list_for_generate_workdir() -> None:
    sc = scn.load("seed-2019")
    agencies = sc.agency_list()
    servers = dict(sc.server_list())
    assert len(agencies) == 95 and len(servers) == 70
    assert all(server in servers for _, _, server in agencies)
    assert sum(1 for k in servers.values() if k == "shared") == 2
