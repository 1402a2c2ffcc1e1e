"""Fixtures of the fault tests: a private 3-node RabbitMQ cluster (session-wide, only when a test asks for it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.cluster import Balancer, Cluster, rabbit_available


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not rabbit_available():
        pytest.skip("RabbitMQ server binaries not found (AXIS_RABBIT_BIN)")
    port_base = int(os.environ.get("AXIS_FAULTS_PORT_BASE", "5701"))
    c = Cluster(Path(tmp_path_factory.mktemp("cluster")), size=3, port_base=port_base)
    try:
        c.start()
    except Exception:
        c.destroy()
        raise
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture
def cluster_vhost(cluster: Cluster) -> Iterator[str]:
    """A fresh vhost on the cluster for one test (every node back up first)."""
    for n in cluster.nodes:
        if not cluster.is_up(n):
            cluster.restart(n)
    vhost = f"axis-faults-{uuid.uuid4().hex[:8]}"
    base = cluster.live_mgmt()
    with httpx.Client(base_url=base, auth=("guest", "guest"), timeout=30) as http:
        http.put(f"/api/vhosts/{vhost}").raise_for_status()
        http.put(f"/api/permissions/{vhost}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
                 ).raise_for_status()
    try:
        yield vhost
    finally:
        with httpx.Client(base_url=cluster.live_mgmt(), auth=("guest", "guest"), timeout=30) as http:
            http.delete(f"/api/vhosts/{vhost}")


@pytest.fixture
def balancer(cluster: Cluster) -> Iterator[Balancer]:
    with Balancer([n.amqp_port for n in cluster.nodes]) as b:
        yield b
