"""Access: failed-authentication limit per client, admin endpoints behind the admin token.

(The tenant isolation matrix on a shared server — every endpoint × every other tenant's token → 404 FORBIDDEN,
wrong token → 401 — is tests/integration/test_isolation.py.)
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from axis.core.ratelimit import FailureLimiter, TooManyFailures
from endpoints.app import create_app
from tests.faults.harness import G01, G03, running_axis

pytestmark = pytest.mark.rabbitmq


def test_failure_limiter_window() -> None:
    lim = FailureLimiter(max_failures=3, window=10)
    for _ in range(3):
        lim.check("a", 0.0)
        lim.failed("a", 0.0)
    with pytest.raises(TooManyFailures) as info:
        lim.check("a", 1.0)
    assert 1 <= info.value.retry_after <= 10
    lim.check("b", 1.0)  # other clients are not affected
    lim.check("a", 10.5)  # the window has passed
    small = FailureLimiter(max_failures=1, window=10, max_clients=2)
    for c in ("x", "y", "z"):
        small.failed(c, 0.0)
    assert len(small) <= 2  # bounded memory under a spray of client addresses


async def test_token_guessing_is_stopped_per_client(tmp_path: Path, vhost_url: str) -> None:
    async with running_axis(tmp_path / "work", vhost_url) as env:
        a = env.agency(G01)
        app = create_app(env.servers[a["server"]])

        def client(ip: str, token: str) -> httpx.AsyncClient:
            c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)),
                                  base_url="http://sh", headers={"Authorization": f"Bearer {token}"})
            env.clients.append(c)
            return c

        attacker = client("10.0.0.66", "guess")
        codes = [(await attacker.get("/v1/inbox")).status_code for _ in range(25)]
        assert codes[:20] == [401] * 20 and codes[20:] == [429] * 5, codes
        blocked = await attacker.get("/v1/inbox")
        assert blocked.headers["content-type"].startswith("application/problem+json")
        assert blocked.json()["reason"] == "UNAUTHORIZED" and int(blocked.headers["retry-after"]) >= 1
        # even the right token is refused from the blocked address: a lucky guess is not confirmed
        assert (await client("10.0.0.66", a["token"]).get("/v1/inbox")).status_code == 429
        # everyone else is unaffected
        assert (await client("10.0.0.7", a["token"]).get("/v1/inbox")).status_code == 200
        assert (await client("10.0.0.8", env.agency(G03)["token"]).get("/v1/inbox")).status_code == 200
        print("FAULTS-REPORT access guesses=25 refused401=20 then429=5")


async def test_admin_endpoints_need_the_admin_token(tmp_path: Path, vhost_url: str) -> None:
    from axis.admin.app import create_app as admin_app

    async with running_axis(tmp_path / "work", vhost_url) as env:
        app = admin_app(env.config)
        admin_token = env.connections["admin"]["token"]
        agency_token = env.agency(G01)["token"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as http:
            for path in ("/admin/stats", "/admin/agencies", "/admin/servers"):
                for headers in ({}, {"Authorization": f"Bearer {agency_token}"}, {"Authorization": "Bearer x"},
                                {"Authorization": f"Basic {admin_token}"}):
                    r = await http.get(path, headers=headers)
                    assert r.status_code == 401, (path, headers, r.status_code)
                    assert r.json()["reason"] == "UNAUTHORIZED"
                r = await http.get(path, headers={"Authorization": f"Bearer {admin_token}"})
                assert r.status_code == 200, (path, r.text[:200])
