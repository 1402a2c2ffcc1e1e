"""`axis stats`: offline from a store (--db), from a live admin app (--admin/--token, connections.json)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from axis.admin.app import AdminSettings, create_app
from axis.cli import app
from axis.stats.store import StatsStore
from tests.stats.stats_data import DIRECTORY, G01, fill
from tests.stats.stats_live import serve

TOKEN = "cli-admin-token"
TOTALS = ("agencies", "dedicated", "shared", "sent", "received", "refused")


@pytest.fixture
def filled(store_url: str) -> str:
    async def go() -> None:
        store = await StatsStore.open(store_url)
        try:
            await fill(store)
        finally:
            await store.close()

    asyncio.run(go())
    return store_url


@pytest.fixture
def admin_url(filled: str) -> object:
    with serve(create_app(AdminSettings(stats_url=filled, token=TOKEN, directory=DIRECTORY))) as url:
        yield url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


def test_offline_db_json(filled: str) -> None:
    code, out = run("stats", "--db", filled, "--json")
    assert code == 0, out
    s = orjson.loads(out)
    # no directory: agencies are the ones seen in the traffic
    assert {k: s[k] for k in TOTALS} == dict(zip(TOTALS, (5, 2, 3, 4, 6, 3), strict=True))


def test_offline_db_filters_and_csv(filled: str) -> None:
    code, out = run("stats", "--db", filled, "--from", "2019-03-13", "--by", "day", "--csv")
    assert code == 0, out
    assert out.splitlines() == ["day,sent,received,refused", "2019-03-13,1,0,2"]
    code, out = run("stats", "--db", filled, "--agency", G01, "--json")
    assert (orjson.loads(out)["sent"], orjson.loads(out)["received"]) == (2, 2)


def test_admin_table(admin_url: str) -> None:
    code, out = run("stats", "--admin", admin_url, "--token", TOKEN, "--by", "server")
    assert code == 0, out
    flat = " ".join(out.split())
    assert "5 agencies connected, 2 dedicated, 3 shared; 4 documents sent, 6 received, 3 refused" in flat
    assert "shared-1" in out and "SIGNATURE_INVALID" in out


def test_admin_from_connections_json(admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AXIS_ADMIN_URL", raising=False)
    monkeypatch.delenv("AXIS_ADMIN_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "axis-work").mkdir()
    (tmp_path / "axis-work" / "connections.json").write_bytes(
        orjson.dumps({"admin": {"url": admin_url, "token": TOKEN}, "agencies": []})
    )
    code, out = run("stats", "--json")
    assert code == 0, out
    s = orjson.loads(out)
    assert {k: s[k] for k in TOTALS} == dict(zip(TOTALS, (5, 2, 3, 4, 6, 3), strict=True))
    code, out = run("stats", "--by", "agency", "--csv")
    assert code == 0
    assert out.splitlines()[0] == "agency,name,kind,server,sent,received,refused"
    assert f"{G01},Văn phòng Chính phủ,dedicated,s-g01,2,2,0" in out.splitlines()


def test_wrong_token_is_refused(admin_url: str) -> None:
    code, out = run("stats", "--admin", admin_url, "--token", "wrong", "--json")
    assert code == 1
    assert orjson.loads(out)["reason"] == "UNAUTHORIZED"


def test_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AXIS_ADMIN_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run("stats")[0] == 2  # nowhere to read from
    assert run("stats", "--db", "sqlite:///x.sqlite3", "--by", "week")[0] == 2
    assert run("stats", "--admin", "http://127.0.0.1:9", "--json")[0] == 1  # nothing listening


def test_offline_table_rows(filled: str) -> None:
    code, out = run("stats", "--db", filled)
    assert code == 0, out
    cells = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split("│") if p.strip()]
        if parts and parts[0].startswith("000.00.00."):
            cells[parts[0]] = parts[1:]
    # no directory offline: the name/server columns are left out, kinds come from the traffic
    assert cells[G01] == ["dedicated", "2", "2", "0"]
    assert cells["000.00.00.H02"] == ["shared", "0", "1", "1"]


@pytest.mark.parametrize("content", [b"[]", b'{"admin": "x"}', b'{"admin": {"url": 5}}', b"not json"])
def test_a_broken_connections_file_is_a_usage_error_naming_it(content: bytes, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Read through the CLI's one reader of connections.json: exit 2 and the file named, never a traceback."""
    monkeypatch.delenv("AXIS_ADMIN_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "axis-work").mkdir()
    (tmp_path / "axis-work" / "connections.json").write_bytes(content)
    result = CliRunner().invoke(app, ["stats"])
    assert result.exit_code == 2, result.output  # an uncaught exception would be exit code 1
    assert "axis-work/connections.json" in " ".join(result.output.split())
