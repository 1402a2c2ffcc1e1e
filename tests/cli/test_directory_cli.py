"""`axis directory` and axis.client's directory(): against a live endpoint server (uvicorn on 127.0.0.1) and
offline from a configuration file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from axis.cli import app
from axis.client import AsyncClient, AxisError, Client
from axis.config import generate_workdir, load_config
from axis.config.renames import rename_agency
from endpoints.app import create_app
from endpoints.server import EndpointServer
from tests.stats.stats_live import serve

G01, G03 = "000.00.00.G01", "000.00.00.G03"
NEW = "G01.9"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, EndpointServer, Path, dict[str, Any]]]:
    path, conn = generate_workdir(tmp_path, [(G01, "A", "d1"), (G03, "B", "sh")],
                                  [("d1", "dedicated"), ("sh", "shared")], tls=False)
    srv = EndpointServer(load_config(path), "sh")
    with serve(create_app(srv)) as url:
        yield url, srv, path, conn


def token(conn: dict[str, Any], code: str) -> str:
    return str(next(a["token"] for a in conn["agencies"] if a["code"] == code))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


async def test_client_directory(live: tuple[str, EndpointServer, Path, dict[str, Any]]) -> None:
    url, srv, path, conn = live
    with Client(url, token(conn, G03)) as c:
        first = c.directory()
        assert first["version"] == 1 and [a["code"] for a in first["agencies"]] == [G01, G03]
        await srv.reload(rename_agency(path, G01, NEW))
        later = c.directory(since=first["version"])
        assert later["version"] == 2 and later["deleted"] == [G01]
        assert [(a["code"], a["aliases"]) for a in later["agencies"]] == [(NEW, [G01])]
    async with AsyncClient(url, token(conn, G03)) as ac:
        assert await ac.directory(since=2) == {"version": 2, "agencies": [], "deleted": [], "full": False}
    with Client(url, "wrong") as bad, pytest.raises(AxisError) as exc:
        bad.directory()
    assert exc.value.reason == "UNAUTHORIZED" and exc.value.status == 401


def test_cli_directory_live_and_offline(live: tuple[str, EndpointServer, Path, dict[str, Any]],
                                        tmp_path: Path) -> None:
    url, _srv, path, conn = live
    code, out, _ = run("directory", "--endpoint", url, "--token", token(conn, G03), "--json")
    assert code == 0, out
    assert orjson.loads(out)["version"] == 1
    code, out, _ = run("directory", "--endpoint", url, "--token", token(conn, G03))
    assert code == 0 and G01 in out and "directory version 1" in out and "--since 1" in out
    code, out, err = run("directory", "--endpoint", url, "--token", "wrong", "--json")
    assert code == 1 and orjson.loads(out)["reason"] == "UNAUTHORIZED"
    # through connections.json (as its first agency, or --agency)
    conn_file = tmp_path / "conn.json"
    conn_file.write_bytes(orjson.dumps({**conn, "agencies": [{**a, "endpoint": url} for a in conn["agencies"]]}))
    code, out, _ = run("directory", "--connections", str(conn_file), "--agency", G03, "--since", "1", "--json")
    assert code == 0 and orjson.loads(out) == {"version": 1, "agencies": [], "deleted": [], "full": False}
    code, _, err = run("directory", "--connections", str(conn_file), "--agency", "000.00.00.X99")
    assert code == 2 and "not in connections.json" in err
    # offline, from the configuration (advances the journal like a server)
    rename_agency(path, G01, NEW)
    code, out, _ = run("directory", "--config", str(path), "--since", "1", "--json")
    assert code == 0 and orjson.loads(out)["deleted"] == [G01]
    code, out, _ = run("directory", "--config", str(path), "--since", "1")
    assert code == 0 and "deleted: " + G01 in out and NEW in out
    # usage errors
    assert run("directory", "--endpoint", url)[0] == 2
    assert run("directory", "--endpoint", "http://127.0.0.1:9", "--token", "x")[0] == 2
    assert run("directory", "--connections", str(tmp_path / "none.json"))[0] == 2
    assert run("directory", "--config", str(tmp_path / "none.yaml"))[0] == 2
    assert run("directory", "--config", str(path), "--since", "-1")[0] == 2
