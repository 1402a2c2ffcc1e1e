"""Crash safety: kill -9 routers and endpoint servers (and, on the private cluster, RabbitMQ nodes) while
documents flow; afterwards every accepted document is in every recipient's inbox exactly once, the statistics
are exact, and no message is left in a queue.

- CI-sized (default run, system broker, own vhost): 300 documents, 2 router kills, 1 endpoint-host kill, one
  broker-side drop of every connection.
- ``-m faults``: on the private 3-node cluster behind the balancer; ``AXIS_FAULTS_DOCUMENTS`` documents (default
  2000; the full size is 20000), a router kill every 2 s, endpoint-host kills, a node killed and restarted, the
  RabbitMQ application of another node restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.faults.cluster import Balancer, Cluster
from tests.faults.crash import Axis, Plan, Report, audit, documents, inject_faults, publish_flood, submit_all
from tests.faults.harness import queue_depths
from tests.support.testing import free_port_block


async def _run(axis: Axis, plan: Plan, depths: object, extra: object = None) -> Report:
    report = Report(dead_expected=plan.poison)
    docs = await asyncio.to_thread(documents, axis, plan)
    t0 = time.monotonic()
    await asyncio.to_thread(axis.start)
    done = asyncio.Event()
    faults = asyncio.create_task(inject_faults(axis, plan, report, done, extra))  # type: ignore[arg-type]
    try:
        await submit_all(axis, docs, plan, report)
        done.set()
        await faults
        await audit(axis, docs, report, depths, timeout=180)  # type: ignore[arg-type]
    finally:
        done.set()
        await asyncio.to_thread(axis.stop)
    report.seconds = round(time.monotonic() - t0, 1)
    return report


def _check(report: Report, plan: Plan, *, refused: int = 0) -> None:
    print("FAULTS-REPORT crash", json.dumps(report.__dict__))
    assert report.accepted == plan.documents
    assert len([f for f in report.faults if "router" in f]) == plan.router_kills
    assert len([f for f in report.faults if "endpoint host" in f]) == plan.host_kills
    assert report.lost == 0 and report.duplicates == 0
    assert report.inbox_rows == report.deliveries_expected
    assert report.stats == {"sent": plan.documents, "received": report.deliveries_expected, "refused": refused}
    assert report.queues_settled(), report.queues
    # the evidence log exact: every accepted document and delivery logged once, nothing twice
    assert (report.log_missing, report.log_duplicates) == (0, 0), report.log
    assert report.log["routed"] == plan.documents and report.log["stored"] == report.deliveries_expected


@pytest.mark.rabbitmq
@pytest.mark.timeout(600)
async def test_crash_safety_ci(tmp_path: Path, vhost_url: str, rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    base, auth, _ = rabbit_mgmt
    vhost = vhost_url.rsplit("/", 1)[1]
    axis = Axis(tmp_path / "work", vhost_url, free_port_block(4))
    plan = Plan(documents=300, router_kills=2, host_kills=1, kill_interval=2.0, poison=1)

    async def drop_connections(step: int, total: int) -> str | None:
        if step == 2:  # the poison of finding 1, while documents flow and routers restart
            return await publish_flood(axis)
        if step == 3:  # the evidence log's one writer, mid-batch
            axis.kill9("log-writer")
            axis.spawn("log-writer")
            return "kill -9 log-writer (restarted at once)"
        if step != 1:
            return None
        async with httpx.AsyncClient(base_url=base, auth=auth, timeout=10) as http:
            names: list[str] = []
            for _ in range(100):  # the management API lists new connections a few seconds late
                names = [c["name"] for c in (await http.get(f"/api/vhosts/{vhost}/connections")).json()]
                if names:
                    break
                await asyncio.sleep(0.2)
            for n in names:
                await http.delete(f"/api/connections/{quote(n, safe='')}")
        return f"broker closed all {len(names)} connections"

    report = await _run(axis, plan, lambda: queue_depths(base, auth, vhost_url), drop_connections)
    _check(report, plan, refused=plan.poison)  # the flood refused alone (TOO_LARGE), every other document delivered
    assert any("broker closed all" in f and "all 0 " not in f for f in report.faults), report.faults
    assert any("past the door" in f for f in report.faults), report.faults
    assert any("log-writer" in f for f in report.faults), report.faults


@pytest.mark.faults
@pytest.mark.timeout(3600)
async def test_crash_safety_on_cluster(tmp_path: Path, cluster: Cluster, cluster_vhost: str,
                                       balancer: Balancer) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{balancer.port}/{cluster_vhost}"
    n = int(os.environ.get("AXIS_FAULTS_DOCUMENTS", "2000"))
    axis = Axis(tmp_path / "work", url, free_port_block(4), management_url=cluster.live_mgmt())
    plan = Plan(documents=n, router_kills=max(4, n // 250), host_kills=max(2, n // 1000), kill_interval=2.0)
    victim, app_node = cluster.nodes[0], cluster.nodes[1]
    pending: list[asyncio.Task[None]] = []

    async def broker_faults(step: int, total: int) -> str | None:
        if step == 2:
            await asyncio.to_thread(cluster.kill, victim)
            pending.append(asyncio.create_task(asyncio.to_thread(cluster.restart, victim)))
            return f"kill -9 RabbitMQ node {victim.name} (restarted in the background)"
        if step == total - 1:
            await pending[0]  # the killed node is back before another one goes down
            await asyncio.to_thread(cluster.restart_app, app_node)
            return f"rabbitmqctl stop_app/start_app on {app_node.name}"
        return None

    async def depths() -> dict[str, int]:
        return await queue_depths(cluster.live_mgmt(), ("guest", "guest"), f"amqp://x/{cluster_vhost}")

    report = await _run(axis, plan, depths, broker_faults)
    for t in pending:
        await t
    _check(report, plan)
    assert any("RabbitMQ node" in f for f in report.faults)
    assert any("stop_app" in f for f in report.faults)
