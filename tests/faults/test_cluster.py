"""A quorum queue on a 3-node cluster loses nothing when the node holding its leader is killed mid-run.

Run: ``pytest -m faults tests/faults/test_cluster.py`` (starts and removes its own cluster on ports 5701-5703,
15701-15703, 25701-25703; the system broker on :5672 is not touched).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import aio_pika
import pytest

from tests.faults.cluster import Balancer, Cluster
from tests.faults.loadgen import Tally, consume, publish_until_confirmed, robust, wait_until

pytestmark = pytest.mark.faults

N = int(os.environ.get("AXIS_FAULTS_MESSAGES", "3000"))
RATE = 200  # messages per second
QUEUE = "axis.faults.replicated"


async def test_kill_queue_leader_midrun_loses_nothing(cluster: Cluster, cluster_vhost: str,
                                                      balancer: Balancer) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{balancer.port}/{cluster_vhost}"
    setup = await aio_pika.connect(url)
    ch = await setup.channel()
    await ch.declare_queue(QUEUE, durable=True,
                           arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": 3})
    await setup.close()
    leader = cluster.queue_leader(cluster_vhost, QUEUE)

    # the clients sit on a node that is NOT the queue leader, and both faults hit a node that matters:
    # first the leader (a new leader is elected), then the clients' own node (they must reconnect elsewhere)
    client_node = next(n for n in cluster.nodes if n is not leader)
    balancer.prefer = client_node.amqp_port
    tally = Tally()
    pub_conn = await robust(url, "faults-publisher")
    con_conn = await robust(url, "faults-consumer")
    balancer.prefer = None
    await consume(con_conn, QUEUE, tally)
    faults: list[str] = []
    background: list[asyncio.Task[None]] = []

    async def inject(done: int) -> None:
        await asyncio.sleep(64 / RATE)  # paced: faults land in the middle of a steady stream
        step = len(faults)
        if step == 0 and done >= N // 4:
            faults.append(f"kill -9 {leader.name} (queue leader) after {done} publishes")
            await asyncio.to_thread(cluster.kill, leader)
        elif step == 1 and done >= N // 2:
            faults.append(f"restart {leader.name} after {done} publishes (in the background)")
            background.append(asyncio.create_task(asyncio.to_thread(cluster.restart, leader)))
        elif step == 2 and done >= 3 * N // 4:
            await background[0]  # the cluster is whole again before the next node dies
            faults.append(f"kill -9 {client_node.name} (publisher's and consumer's node) after {done} publishes")
            await asyncio.to_thread(cluster.kill, client_node)
            background.append(asyncio.create_task(asyncio.to_thread(cluster.restart, client_node)))

    t0 = time.monotonic()
    ids = [f"m-{i:06d}" for i in range(N)]
    await publish_until_confirmed(pub_conn, QUEUE, ids, tally, on_progress=inject)
    complete = await wait_until(lambda: not tally.lost and len(tally.confirmed) == N, timeout=120)
    elapsed = time.monotonic() - t0
    for task in background:
        await task
    await pub_conn.close()
    await con_conn.close()

    new_leader = cluster.queue_leader(cluster_vhost, QUEUE)
    report = tally.summary() | {"sent": N, "faults": faults, "seconds": round(elapsed, 1),
                                "leader_before": leader.name, "leader_after": new_leader.name,
                                "balancer_connections": balancer.connections}
    print("FAULTS-REPORT cluster", json.dumps(report))
    assert len(faults) == 3, faults
    assert tally.publish_retries > 0 or tally.ack_failures > 0 or tally.duplicates > 0 or balancer.connections > 3
    assert len(tally.confirmed) == N
    assert complete, f"lost {len(tally.lost)}: {sorted(tally.lost)[:10]}"
    assert tally.lost == set()
    assert set(tally.received) == set(ids)  # nothing that was never sent
