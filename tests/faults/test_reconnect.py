"""The router and the endpoint servers keep working after the broker drops their connections.

The broker closes every connection of the axis (as it does when a node restarts or fails over); the processes
must reconnect AND resume consuming by themselves: a document submitted afterwards is delivered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.faults.harness import G01, G22, H53, Env, queue_depths, running_axis, wait_for
from tests.support.testing import make_edxml

pytestmark = pytest.mark.rabbitmq


def connections(mgmt: str, auth: tuple[str, str], vhost: str) -> list[str]:
    with httpx.Client(base_url=mgmt, auth=auth, timeout=10) as http:
        return [c["name"] for c in http.get(f"/api/vhosts/{vhost}/connections").json()]


def force_close(mgmt: str, auth: tuple[str, str], names: list[str]) -> int:
    closed = 0
    with httpx.Client(base_url=mgmt, auth=auth, timeout=10) as http:
        for name in names:
            r = http.delete(f"/api/connections/{quote(name, safe='')}", headers={"X-Reason": "axis fault test"})
            closed += r.status_code == 204
    return closed


@pytest.mark.parametrize("linked", [False, True], ids=["own-connections", "host-link"])
async def test_consumers_resume_after_the_broker_drops_every_connection(
        tmp_path: Path, vhost_url: str, rabbit_mgmt: tuple[str, tuple[str, str], str], linked: bool) -> None:
    """Every connection closed by the broker, twice: each server on its own, or sh and d2 on their host's link
    (endpoints.link: one connection for both, their consumers restored together)."""
    base, auth, _ = rabbit_mgmt
    vhost = vhost_url.rsplit("/", 1)[1]
    async with running_axis(tmp_path / "work", vhost_url, linked=linked) as env:
        assert len(env.links) == int(linked)
        seen: set[str] = set()
        for round_ in range(2):
            # the management API lists connections with a delay: wait for the current (new) ones
            old = frozenset(seen)
            live = await wait_for(lambda old=old: [c for c in connections(base, auth, vhost) if c not in old],
                                  timeout=60, what="the axis' connections listed")
            seen |= set(live)
            assert force_close(base, auth, live) == len(live) >= 2
            doc = env.pki.sign(make_edxml(G22, [H53, G01], subject=f"after drop {round_}", number=round_ + 1), G22)
            # agency software retries a submission the server could not take (5xx) — until the axis is back
            statuses = []
            for _ in range(120):
                r = await env.client(G22).post("/v1/documents", content=doc)
                statuses.append(r.status_code)
                if r.status_code == 202:
                    break
                # while the broker is away: 503 problem+json with Retry-After, never a bare 500
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.headers["retry-after"] == "1"
                await asyncio.sleep(0.5)
            assert statuses[-1] == 202, statuses
            try:
                await wait_for(lambda n=2 * (round_ + 1): _received_is(env, n), timeout=60,
                               what=f"both recipients got document {round_} after the reconnect")
            except AssertionError:
                depths = await queue_depths(base, auth, vhost_url)
                raise AssertionError(f"round {round_}: not delivered; queues {depths}; accepted "
                                     f"{len(env.counter.accepted)} processed {env.router.processed}; "
                                     f"received {await env.received()}") from None
            print(f"FAULTS-REPORT reconnect round={round_} connections_closed={len(live)} http={statuses}")
        await wait_for(lambda: len(env.counter.accepted) >= 2, what="both documents counted")  # axis.router.settle
        assert len(env.counter.accepted) == 2


async def _received_is(env: Env, n: int) -> bool:
    return await env.received() == n
