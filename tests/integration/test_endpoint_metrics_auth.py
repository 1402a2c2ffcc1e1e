"""An endpoint server's /metrics lists every tenant's counters: it takes the admin token (what Prometheus scrapes
with), never an agency's, and its failures count towards the failed-authentication limit; /docs and
/openapi.json (Swagger from a CDN) are off. No broker needed: the app is reached through httpx's ASGI transport."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from axis.config import Limits, generate_workdir, load_config
from endpoints.app import create_app
from endpoints.inbox import open_inbox
from endpoints.server import EndpointServer

G01, G03 = "000.00.00.G01", "000.00.00.G03"


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[EndpointServer, dict[str, Any]]]:
    path, conn = generate_workdir(tmp_path, [(G01, "A", "sh"), (G03, "B", "sh")], [("sh", "shared")])
    config = dataclasses.replace(load_config(path), limits=Limits(auth_failures=3, auth_window_seconds=60))
    store = await open_inbox(f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}")
    try:
        yield EndpointServer(config, "sh", store=store), conn
    finally:
        await store.close()


def client(srv: EndpointServer, token: str | None, address: str = "10.0.0.1") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=create_app(srv), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://sh", headers=headers)


async def test_metrics_need_the_admin_token(shared: tuple[EndpointServer, dict[str, Any]]) -> None:
    srv, conn = shared
    agency_token = next(a["token"] for a in conn["agencies"] if a["code"] == G01)
    async with client(srv, agency_token) as tenant, client(srv, None, "10.0.0.2") as anonymous:
        assert (await tenant.get("/v1/inbox")).status_code == 200  # a tenant is served...
        for c in (tenant, anonymous):  # ...but does not see the server's (every tenant's) counters
            r = await c.get("/metrics")
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
            assert r.json()["reason"] == "UNAUTHORIZED" and "axis_endpoint" not in r.text
    async with client(srv, conn["admin"]["token"], "10.0.0.3") as prometheus:
        r = await prometheus.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "axis_endpoint_auth_failed_total 2.0" in r.text  # the two refused scrapes above


async def test_metrics_failures_count_towards_the_limit(shared: tuple[EndpointServer, dict[str, Any]]) -> None:
    srv, conn = shared
    async with client(srv, "guess") as bad, client(srv, conn["admin"]["token"]) as same_address:
        for _ in range(3):
            assert (await bad.get("/metrics")).status_code == 401
        r = await bad.get("/metrics")
        assert r.status_code == 429 and r.json()["reason"] == "UNAUTHORIZED" and int(r.headers["Retry-After"]) >= 1
        assert (await same_address.get("/metrics")).status_code == 429  # not even the right token, from there


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"])
async def test_api_docs_are_off(shared: tuple[EndpointServer, dict[str, Any]], path: str) -> None:
    srv, conn = shared
    async with client(srv, conn["admin"]["token"]) as c:
        r = await c.get(path)
    assert r.status_code == 404, r.text[:200]
