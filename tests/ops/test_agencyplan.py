"""axis.ops.agencyplan (pure) and axis.config.agencies (the file edits) on a generated work directory: which
agency requests are accepted, what they plan, and the refusals with their HTTP status and reason."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from axis.config import AGENCY_COLUMNS, ConfigError, generate_workdir, load_config
from axis.config.agencies import Snapshot, add_agency, retire_agency
from axis.config.directory_journal import journal_path, read_journal, sync_journal
from axis.core.directory_versions import changes_since
from axis.core.routing import route_document
from axis.ops.agencyplan import AddPlan, CertRequest, RenamePlan, RetirePlan, RotatePlan, check_request
from axis.ops.livemove import MoveError

G22, G01, G03, G09 = "000.00.00.G22", "000.00.00.G01", "000.00.00.G03", "000.00.00.G09"


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    return generate_workdir(tmp_path / "w", [(G22, "VPCP", "d1"), (G01, "BCA", "sh"), (G03, "BGD", "sh")],
                            [("d1", "dedicated"), ("sh", "shared")], base_port=18701, client_certs=False)


def test_plans(workdir: tuple[Path, dict[str, Any]]) -> None:
    config = load_config(workdir[0])
    assert check_request(config, {"op": "agency-add", "code": G09, "name": "BTC", "server": "sh"}) == AddPlan(
        G09, "BTC", "sh", "shared", False, None, CertRequest("ec", 365), True)
    assert check_request(config, {"op": "agency-add", "code": "H55.242", "server": "d-h55", "port": 9999,
                                  "algorithm": "rsa", "days": 30, "holds_key": False}) == AddPlan(
        "H55.242", "H55.242", "d-h55", "dedicated", True, 9999, CertRequest("rsa", 30), False)
    assert check_request(config, {"op": "agency-retire", "agency": G01}) == RetirePlan(G01, "sh", False)
    assert check_request(config, {"op": "agency-retire", "agency": G01, "revoke": True}).revoke  # type: ignore[union-attr]
    assert check_request(config, {"op": "agency-rename", "agency": G01, "code": "G01.1", "name": "Bộ Công an"}
                         ) == RenamePlan(G01, "G01.1", "sh", "Bộ Công an", CertRequest())
    assert check_request(config, {"op": "agency-rotate-cert", "agency": G22, "days": 90}) == RotatePlan(
        G22, "d1", CertRequest("ec", 90))


@pytest.mark.parametrize(("request_", "status", "reason"), [
    ({"op": "agency-add", "code": "not a code", "server": "sh"}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-add", "code": G09, "server": "Bad Id"}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-add", "code": G09, "server": "x", "kind": "huge"}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-add", "code": G09, "server": "x", "port": 0}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-add", "code": G09, "server": "x", "days": 0}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-add", "code": G09, "server": "x", "algorithm": "dsa"}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-add", "code": G09, "server": "x", "name": "a\nb"}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-add", "code": G22, "server": "sh"}, 409, "FORBIDDEN"),  # taken
    ({"op": "agency-add", "code": G09, "server": "d1"}, 409, "FORBIDDEN"),  # dedicated, in use
    ({"op": "agency-add", "code": G09, "server": "sh", "kind": "dedicated"}, 409, "FORBIDDEN"),
    ({"op": "agency-add", "code": G09, "server": "sh", "port": 1}, 409, "FORBIDDEN"),
    ({"op": "agency-retire", "agency": G09}, 404, "UNKNOWN_RECIPIENT"),
    ({"op": "agency-retire", "agency": G01, "revoke": "yes"}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-rename", "agency": G01, "code": G01}, 409, "FORBIDDEN"),
    ({"op": "agency-rename", "agency": G01, "code": G03}, 409, "FORBIDDEN"),
    ({"op": "agency-rename", "agency": G01, "code": "x"}, 422, "SCHEMA_INVALID"),
    ({"op": "agency-rotate-cert", "agency": G09}, 404, "UNKNOWN_RECIPIENT"),
    ({"op": "agency-fly"}, 422, "SCHEMA_INVALID"),
])
def test_refusals(workdir: tuple[Path, dict[str, Any]], request_: dict[str, Any], status: int, reason: str) -> None:
    with pytest.raises(MoveError) as e:
        check_request(load_config(workdir[0]), request_)
    assert (e.value.status, e.value.body()["reason"]) == (status, reason), e.value.detail


def test_add_then_retire_in_the_file(workdir: tuple[Path, dict[str, Any]]) -> None:
    path, _ = workdir
    original = Snapshot.take(path)
    before = sync_journal(load_config(path)).version  # agency software synced at this version
    key, cert = path.parent / "pki" / "k.pem", path.parent / "pki" / "c.pem"
    config = add_agency(path, G09, "BTC", "d-g09", token_sha256="ab" * 32, key=key, cert=cert, port=18790)
    added = changes_since(read_journal(journal_path(config)), before)  # type: ignore[arg-type]
    assert added["version"] == before + 1 and [a["code"] for a in added["agencies"]] == [G09]
    assert config.agency(G09).server == "d-g09" and config.server("d-g09").port == 18790  # type: ignore[union-attr]
    assert config.server("d-g09").keys == (G09,) and config.agency(G09).cert == cert  # type: ignore[union-attr]
    raw = yaml.safe_load(path.read_text())
    assert next(a for a in raw["agencies"] if a["code"] == G09)["cert"] == "pki/c.pem"  # relative to the file
    with pytest.raises(ConfigError, match="taken"):
        add_agency(path, G09, "again", "sh", token_sha256="cd" * 32, key=None, cert=None)
    with pytest.raises(ConfigError, match="dedicated"):
        add_agency(path, "000.00.00.G10", "x", "d1", token_sha256="cd" * 32, key=None, cert=None)
    retired = retire_agency(path, G01)
    changed = changes_since(read_journal(journal_path(retired)), before + 1)  # type: ignore[arg-type]
    assert [(a["code"], a["active"]) for a in changed["agencies"]] == [(G01, False)]
    assert retired.agency(G01).active is False and retired.directory.agency(G01).active is False  # type: ignore[union-attr]
    with pytest.raises(MoveError) as e:  # retired: no second retirement, no rename, no new certificate
        check_request(retired, {"op": "agency-retire", "agency": G01})
    assert e.value.status == 409 and "retired" in e.value.detail
    assert route_document(retired.directory, G22, [G01, G03]).retired == (G01,)
    original.restore()
    assert load_config(path).agency(G09) is None


def test_a_national_directory_in_agencies_file(workdir: tuple[Path, dict[str, Any]]) -> None:
    """A large directory is a CSV (generate_workdir writes one above CSV_AGENCIES_ABOVE agencies): a new agency goes
    to the YAML list (the loader reads both), a retirement rewrites its CSV row (an ``active`` column added); a
    failed step puts both files back."""
    path, _ = workdir
    raw = yaml.safe_load(path.read_text())
    rows = [*raw.pop("agencies"), *({"code": f"H{10 + i // 1000:02d}.{i % 1000}", "name": f"A{i}", "server": "sh"}
                                   for i in range(3000))]
    with (path.parent / "agencies.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(AGENCY_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    raw["agencies_file"] = "agencies.csv"
    path.write_text(yaml.safe_dump(raw))
    csv_file = path.parent / "agencies.csv"
    assert yaml.safe_load(path.read_text())["agencies_file"] == "agencies.csv" and csv_file.is_file()
    original = Snapshot.take(path)
    assert original.csv == csv_file.read_bytes()
    config = add_agency(path, G09, "BTC", "sh", token_sha256="ab" * 32, key=None, cert=None)
    assert config.agency(G09).server == "sh" and len(config.agencies) == 3004  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="taken"):  # a code of the CSV
        add_agency(path, "H10.7", "x", "sh", token_sha256="cd" * 32, key=None, cert=None)
    retired = retire_agency(path, "H12.345")
    assert retired.agency("H12.345").active is False and retired.agency("H12.346").active is True  # type: ignore[union-attr]
    assert retire_agency(path, G09).agency(G09).active is False  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="not in"):
        retire_agency(path, "H99.1")
    original.restore()
    restored = load_config(path)
    assert restored.agency(G09) is None and restored.agency("H12.345").active is True  # type: ignore[union-attr]
