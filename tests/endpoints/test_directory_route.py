"""GET /v1/directory?since=VERSION on an endpoint server (contract section 7), through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from axis.config import generate_workdir, load_config
from axis.config.renames import rename_agency
from endpoints.app import create_app
from endpoints.server import EndpointServer

G01, G03 = "000.00.00.G01", "000.00.00.G03"
NEW = "G01.9"


@pytest.fixture
def work(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    return generate_workdir(tmp_path, [(G01, "A", "d1"), (G03, "B", "sh")], [("d1", "dedicated"), ("sh", "shared")],
                            tls=False)


@pytest.fixture
async def server(work: tuple[Path, dict[str, Any]]) -> AsyncIterator[EndpointServer]:
    yield EndpointServer(load_config(work[0]), "sh")


def client(srv: EndpointServer, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(srv)), base_url="http://sh", headers=headers)


def token(conn: dict[str, Any], code: str) -> str:
    return str(next(a["token"] for a in conn["agencies"] if a["code"] == code))


async def test_directory_by_version(work: tuple[Path, dict[str, Any]], server: EndpointServer) -> None:
    path, conn = work
    async with client(server, token(conn, G03)) as c:
        full = (await c.get("/v1/directory")).json()
        assert full["version"] == 1 and full["deleted"] == [] and full["full"] is True
        assert [(a["code"], a["kind"], a["active"], a["aliases"]) for a in full["agencies"]] == [
            (G01, "dedicated", True, []), (G03, "shared", True, [])]
        assert (await c.get("/v1/directory?since=1")).json() == {"version": 1, "agencies": [], "deleted": [],
                                                                 "full": False}
        # the code changes; the server reloads the file
        await server.reload(rename_agency(path, G01, NEW))
        since = (await c.get("/v1/directory", params={"since": 1})).json()
        assert since == {"version": 2, "deleted": [G01], "full": False, "agencies": [
            {"code": NEW, "name": "A", "kind": "dedicated", "active": True, "aliases": [G01]}]}
        assert (await c.get("/v1/directory?since=2")).json()["agencies"] == []
        for bad in ("-1", "x", "1.5", "9" * 40):
            r = await c.get("/v1/directory", params={"since": bad})
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
            assert r.json()["reason"] == "SCHEMA_INVALID"
    async with client(server, None) as anonymous:
        r = await anonymous.get("/v1/directory")
        assert r.status_code == 401 and r.json()["reason"] == "UNAUTHORIZED"


async def test_two_servers_publish_the_same_versions(work: tuple[Path, dict[str, Any]]) -> None:
    path, conn = work
    a, b = EndpointServer(load_config(path), "sh"), EndpointServer(load_config(path), "d1")
    async with client(a, token(conn, G03)) as ca, client(b, token(conn, G01)) as cb:
        assert (await ca.get("/v1/directory")).json() == (await cb.get("/v1/directory")).json()


async def test_a_broken_journal_is_a_clear_503(work: tuple[Path, dict[str, Any]], server: EndpointServer) -> None:
    path, conn = work
    (path.parent / "directory-journal.json").write_text("{not json")
    async with client(server, token(conn, G03)) as c:
        r = await c.get("/v1/directory")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert "directory-journal.json" in r.json()["detail"]
