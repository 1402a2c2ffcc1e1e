"""`axis demo` starts from empty queues, as from an empty work dir: its own vhost, re-created at every run — no dead
letter or half-routed document of an earlier run is seen again (the default vhost, where another axis may run, is
never touched)."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import httpx
import pytest

from axis.sim.demo import fresh_demo_vhost
from tests.conftest import RABBIT_AUTH, RABBIT_MGMT

pytestmark = pytest.mark.rabbitmq


async def _leave_a_message(url: str) -> None:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue("axis.dead", durable=True)
        await channel.default_exchange.publish(aio_pika.Message(b"left by an earlier run"), routing_key=queue.name)
    finally:
        await conn.close()


def test_every_demo_run_gets_an_empty_vhost() -> None:
    vhost = f"axis-demo-test-{uuid.uuid4().hex[:8]}"
    try:
        url = fresh_demo_vhost(vhost=vhost)
        assert url is not None and url.endswith("/" + vhost)
        asyncio.run(_leave_a_message(url))
        queues = httpx.get(f"{RABBIT_MGMT}/api/queues/{vhost}", auth=RABBIT_AUTH, timeout=30).json()
        assert [q["name"] for q in queues] == ["axis.dead"]
        assert fresh_demo_vhost(vhost=vhost) == url  # the next run
        assert httpx.get(f"{RABBIT_MGMT}/api/queues/{vhost}", auth=RABBIT_AUTH, timeout=30).json() == []
        asyncio.run(_leave_a_message(url))  # and the provisioning account may use it at once
    finally:
        httpx.delete(f"{RABBIT_MGMT}/api/vhosts/{vhost}", auth=RABBIT_AUTH, timeout=30)


def test_without_a_management_api_the_default_vhost_is_used() -> None:
    assert fresh_demo_vhost(host="127.0.0.1", auth=("nobody", "wrong"), vhost="axis-demo-x") is None
