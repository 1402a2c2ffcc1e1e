"""axis.admin.agencies without a running axis: the routes forward to the supervisor's control socket (a real Unix
socket served by axis.ops.control.ControlServer with a recording handler), answer its refusals as problem details,
refresh the app's view, and record each completed action as an `admin` event (or say why it was not recorded).
And the CLI's exit codes (axis agency) against that app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from axis.admin.agencies import AgencyAdmin, admin_event
from axis.cli import app as cli
from axis.core.evidence import Event
from axis.ops.control import ControlServer, control_dir_for
from tests.stats.stats_live import serve

G09, G22 = "000.00.00.G09", "000.00.00.G22"
SHA = "ab" * 32


class Supervisor:
    """Answers like axis.ops.agencies: a refusal for G99, else a completed action."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append(req)
        if req.get("agency") == "000.00.00.G99" or req.get("code") == "000.00.00.G99":
            return 404, {"reason": "UNKNOWN_RECIPIENT", "detail": "agency 000.00.00.G99 is not in the directory"}
        if req.get("code") == "bad":
            return 422, {"reason": "SCHEMA_INVALID", "detail": "code must be an agency code"}
        op = req["op"]
        code = req.get("agency") or req.get("code")
        answer: dict[str, Any] = {"action": op, "agency": req.get("code") if op == "agency-rename" else code,
                                  "server": "sh"}
        if op != "agency-retire":
            answer["certificate"] = {"serial": "1f", "sha256": SHA}
        return 200, answer


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FastAPI, Supervisor, list[list[Event]], list[int]]]:
    sup = Supervisor()
    server = ControlServer(control_dir_for(tmp_path), sup)
    recorded: list[list[Event]] = []
    changes: list[int] = []

    async def sink(events: list[Event]) -> None:
        recorded.append(events)

    async def on_change() -> None:
        changes.append(1)

    app = FastAPI()
    AgencyAdmin(server.path, sink, on_change).install(app)
    try:
        yield app, sup, recorded, changes
    finally:
        server.close()


def test_routes_forward_and_record(setup: tuple[FastAPI, Supervisor, list[list[Event]], list[int]]) -> None:
    app, sup, recorded, changes = setup
    who = {"X-Axis-Admin": "nguyen.van.a"}
    with TestClient(app) as c:
        r = c.post("/admin/agencies", json={"code": G09, "server": "sh", "name": "BTC", "extra": 1}, headers=who)
        assert r.status_code == 201 and r.json()["evidence"] == "recorded"
        assert sup.requests[-1] == {"op": "agency-add", "code": G09, "server": "sh", "name": "BTC"}  # no "extra"
        r = c.post(f"/admin/agencies/{G22}/rotate-cert", json={"days": 30}, headers={"X-Axis-Admin": "<script>"})
        assert r.status_code == 200 and sup.requests[-1] == {"op": "agency-rotate-cert", "agency": G22, "days": 30}
        r = c.post(f"/admin/agencies/{G09}/retire", headers=who)  # no body: {}
        assert r.status_code == 200 and sup.requests[-1] == {"op": "agency-retire", "agency": G09}
        r = c.post(f"/admin/agencies/{G09}/rename", json={"code": "G09.1"}, headers=who)
        assert r.status_code == 200 and r.json()["agency"] == "G09.1"
        r = c.post("/admin/agencies/000.00.00.G99/retire", headers=who)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["reason"] == "UNKNOWN_RECIPIENT"
        r = c.post("/admin/agencies", content=b"[1]")
        assert r.status_code == 422 and r.json()["reason"] == "SCHEMA_INVALID"
    assert len(changes) == 4  # the app's view refreshed after each completed action, not after refusals
    events = [e for batch in recorded for e in batch]
    assert [(e.type, e.action, e.sender, e.agency, e.admin, e.sha256, e.document_id) for e in events] == [
        ("admin", "agency-add", G09, G09, "nguyen.van.a", SHA, ""),
        ("admin", "agency-rotate-cert", G22, G22, "admin", SHA, ""),  # a name that is not a plain name: "admin"
        ("admin", "agency-retire", G09, G09, "nguyen.van.a", "", ""),
        ("admin", "agency-rename", G09, "G09.1", "nguyen.van.a", SHA, "")]
    assert len({e.ref for e in events}) == 4 and all(e.server == "sh" for e in events)
    assert all(e.leaf() for e in events)  # each is a valid leaf


def test_an_unrecorded_action_says_so(tmp_path: Path) -> None:
    server = ControlServer(control_dir_for(tmp_path), Supervisor())

    async def broken(events: list[Event]) -> None:
        raise ConnectionError("broker down")

    app = FastAPI()
    AgencyAdmin(server.path, broken).install(app)
    try:
        with TestClient(app) as c:
            r = c.post(f"/admin/agencies/{G22}/retire")
        assert r.status_code == 200 and r.json()["evidence"] == "not recorded: ConnectionError: broker down"
    finally:
        server.close()
    app = FastAPI()
    AgencyAdmin(None, None).install(app)
    with TestClient(app) as c:
        r = c.post(f"/admin/agencies/{G22}/retire")
    assert r.status_code == 501 and "axis up" in r.json()["detail"]


def test_admin_event_is_a_valid_leaf() -> None:
    e = admin_event({"action": "agency-add", "agency": G09, "server": "d-g09", "certificate": {"sha256": SHA}},
                    "ops", G09)
    leaf = orjson.loads(e.leaf())
    assert leaf["type"] == "admin" and leaf["action"] == "agency-add" and leaf["admin"] == "ops"
    assert leaf["agency"] == G09 and leaf["sender"] == G09 and leaf["sha256"] == SHA and "ref" not in leaf


def test_cli_exit_codes(setup: tuple[FastAPI, Supervisor, list[list[Event]], list[int]], tmp_path: Path) -> None:
    app, sup, _, _ = setup
    runner = CliRunner()
    result = runner.invoke(cli, ["agency", "retire", G22, "--connections", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "none.json" in result.output
    with serve(app) as url:
        conn = tmp_path / "connections.json"
        conn.write_bytes(orjson.dumps({"ca": None, "admin": {"url": url, "token": "t"}, "agencies": []}))
        base = ["--connections", str(conn), "--json"]
        result = runner.invoke(cli, ["agency", "add", G09, "--server", "sh", "--name", "BTC", *base])
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.stdout)["ok"] is True
        assert sup.requests[-1] == {"op": "agency-add", "code": G09, "server": "sh", "days": 365, "algorithm": "ec",
                                    "holds_key": True, "name": "BTC"}
        result = runner.invoke(cli, ["agency", "retire", "000.00.00.G99", *base])
        assert result.exit_code == 1 and orjson.loads(result.stdout) == {
            "ok": False, "reason": "UNKNOWN_RECIPIENT", "detail": "agency 000.00.00.G99 is not in the directory",
            "status": 404}
        result = runner.invoke(cli, ["agency", "add", "bad", "--server", "sh", *base])
        assert result.exit_code == 2 and orjson.loads(result.stdout)["reason"] == "SCHEMA_INVALID"
        result = runner.invoke(cli, ["agency", "rotate-cert", G22, "--connections", str(conn)])
        assert result.exit_code == 0 and "new certificate" in result.stdout and "1f" in result.stdout
    result = runner.invoke(cli, ["agency", "retire", G22, "--connections", str(conn), "--json"])  # app gone
    assert result.exit_code == 1 and "cannot reach the admin app" in orjson.loads(result.stdout)["detail"]
