"""The limit on failed authentication attempts: the pure limiter, and the 429 answers of a real app."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from axis.config import ConfigError, Limits, config_from_dict, generate_workdir, load_config
from axis.core.ratelimit import FailureLimiter, TooManyFailures
from endpoints.app import create_app
from endpoints.inbox import open_inbox
from endpoints.server import EndpointServer

G01, G03 = "000.00.00.G01", "000.00.00.G03"


def test_limiter_blocks_after_n_failures_until_the_window_ends() -> None:
    lim = FailureLimiter(max_failures=3, window=60)
    for t in range(3):
        lim.check("10.0.0.1", t)
        lim.failed("10.0.0.1", t)
    with pytest.raises(TooManyFailures) as exc:
        lim.check("10.0.0.1", 10)
    assert exc.value.retry_after == 50
    lim.check("10.0.0.2", 10)  # other addresses are not affected
    lim.check("10.0.0.1", 60)  # the window is over
    assert len(lim) == 0


def test_limiter_memory_is_bounded() -> None:
    lim = FailureLimiter(max_failures=2, window=60, max_clients=100)
    for i in range(10_000):
        lim.failed(f"10.0.{i // 256}.{i % 256}", i / 1000)
    assert len(lim) == 100
    lim.failed("10.9.9.9", 1000.0)  # every older window has expired: all dropped
    assert len(lim) == 1


def test_limits_in_the_config_file() -> None:
    cfg = config_from_dict({"limits": {"auth_failures": 5, "auth_window_seconds": 30}}, base=Path("."))
    assert (cfg.limits.auth_failures, cfg.limits.auth_window_seconds) == (5, 30.0)
    assert config_from_dict({}, base=Path(".")).limits == Limits()
    with pytest.raises(ConfigError):
        config_from_dict({"limits": {"auth_failures": 0}}, base=Path("."))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[EndpointServer, dict[str, str]]]:
    path, conn = generate_workdir(tmp_path, [(G01, "A", "sh"), (G03, "B", "sh")], [("sh", "shared")])
    config = dataclasses.replace(load_config(path), limits=Limits(auth_failures=4, auth_window_seconds=60))
    store = await open_inbox(f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}")
    try:
        tokens = {a["code"]: a["token"] for a in conn["agencies"]}
        yield EndpointServer(config, "sh", store=store), {**tokens, "admin": conn["admin"]["token"]}
    finally:
        await store.close()


def client(srv: EndpointServer, address: str, token: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(srv), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://sh", headers={"Authorization": f"Bearer {token}"})


async def test_429_after_failed_attempts_per_address(server: tuple[EndpointServer, dict[str, str]]) -> None:
    srv, tokens = server
    async with (client(srv, "10.0.0.1", "guess") as bad, client(srv, "10.0.0.1", tokens[G01]) as good_same,
                client(srv, "10.0.0.2", tokens[G03]) as good_other):
        assert (await good_same.get("/v1/inbox")).status_code == 200
        for _ in range(4):
            r = await bad.get("/v1/inbox")
            assert (r.status_code, r.json()["reason"]) == (401, "UNAUTHORIZED")
            assert (await good_other.get("/v1/inbox")).status_code == 200  # does not reset 10.0.0.1
        r = await bad.get("/v1/inbox")
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["reason"] == "UNAUTHORIZED" and 1 <= int(r.headers["Retry-After"]) <= 60
        # the token is not even checked: a valid one from the same address is turned away too
        assert (await good_same.get("/v1/inbox")).status_code == 429
        assert (await good_other.get("/v1/inbox")).status_code == 200
    async with client(srv, "10.0.0.3", tokens["admin"]) as prometheus:  # /metrics takes the admin token
        metrics = (await prometheus.get("/metrics")).text
    assert "axis_endpoint_auth_failed_total 4.0" in metrics
    assert "axis_endpoint_auth_limited_total 2.0" in metrics
