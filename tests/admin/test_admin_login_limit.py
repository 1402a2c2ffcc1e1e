"""The admin app limits failed token checks per client address, as the endpoint servers do (endpoints.auth
FailureLimiter): after ``auth_failures`` (default 20) failures within the window, every authenticated path — the
API, /metrics, the event stream, the dashboard's ``?token=`` login — answers 429 (reason UNAUTHORIZED,
Retry-After) without looking at the credentials, until the window ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from axis.admin.app import COOKIE, AdminSettings, create_app
from tests.stats.stats_data import DIRECTORY

TOKEN = "admin-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer wrong"}
LIMIT = 20  # the default, as in axis.config.Limits.auth_failures


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = AdminSettings(stats_url=f"sqlite+aiosqlite:///{tmp_path / 'stats.sqlite3'}", token=TOKEN,
                             directory=DIRECTORY, poll_seconds=60,
                             amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost")
    app = create_app(settings)
    async with app.router.lifespan_context(app):  # one event loop, one store, however many client addresses
        yield app


def client(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://admin")


def assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, (r.status_code, r.text[:200])
    assert 1 <= int(r.headers["Retry-After"]) <= 60


async def test_wrong_bearer_tokens_are_limited(app: FastAPI) -> None:
    async with client(app, "10.0.0.1") as bad, client(app, "10.0.0.2") as other:
        assert (await bad.get("/admin/counters", headers=BEARER)).status_code == 200
        paths = ["/admin/stats", "/admin/counters", "/admin/agencies", "/admin/servers", "/metrics", "/admin/events"]
        for i in range(LIMIT):
            r = await bad.get(paths[i % len(paths)], headers=WRONG)
            assert (r.status_code, r.json()["reason"]) == (401, "UNAUTHORIZED")
            assert (await other.get("/admin/counters", headers=BEARER)).status_code == 200  # resets nothing
        r = await bad.get("/admin/stats", headers=WRONG)
        assert_limited(r)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["reason"] == "UNAUTHORIZED" and r.json()["status"] == 429
        # the credentials are not even checked: the right token from that address is turned away too
        for path in paths:
            assert_limited(await bad.get(path, headers=BEARER))
        assert_limited(await bad.post("/admin/agencies/000.00.00.G01/move", headers=BEARER, json={"server": "x"}))
        assert (await bad.get("/healthz")).status_code == 200  # no credentials involved
        assert (await other.get("/admin/stats", headers=BEARER)).status_code == 200  # other addresses are not affected


async def test_dashboard_logins_are_limited(app: FastAPI) -> None:
    async with client(app, "10.0.0.3") as bad:
        for _ in range(LIMIT):
            assert (await bad.get("/", params={"token": "guess"})).status_code == 401
        r = await bad.get("/", params={"token": TOKEN})
        assert_limited(r)
        assert COOKIE not in r.cookies  # no session handed out
        assert_limited(await bad.get("/", params={"token": "guess"}))
    async with client(app, "10.0.0.4") as person:
        r = await person.get("/", params={"token": TOKEN})
        assert r.status_code == 303 and COOKIE in r.cookies


async def test_sign_in_form_posts_are_limited(app: FastAPI) -> None:
    async with client(app, "10.0.0.6") as bad:
        for _ in range(LIMIT):
            assert (await bad.post("/login", data={"token": "guess"})).status_code == 401
        r = await bad.post("/login", data={"token": TOKEN})
        assert_limited(r)
        assert COOKIE not in r.cookies
    async with client(app, "10.0.0.7") as person:
        r = await person.post("/login", data={"token": TOKEN})
        assert r.status_code == 303 and COOKIE in r.cookies


async def test_wrong_session_cookies_count_too(app: FastAPI) -> None:
    async with client(app, "10.0.0.5") as bad:
        bad.cookies.set(COOKIE, "0" * 64)
        for _ in range(LIMIT):
            assert (await bad.get("/admin/counters")).status_code == 401
        assert_limited(await bad.get("/admin/counters"))
        assert_limited(await bad.get("/"))


async def test_requests_without_credentials_are_not_counted(app: FastAPI) -> None:
    """Opening the dashboard or an API path with no credentials at all guesses nothing: 401 (the login form),
    however often, and the address can still log in."""
    async with client(app, "10.0.0.6") as person:
        for _ in range(2 * LIMIT):
            assert (await person.get("/")).status_code == 401
            assert (await person.get("/admin/counters")).status_code == 401
        assert (await person.get("/admin/counters", headers=BEARER)).status_code == 200
