"""Components wait for a slow broker on their first connection (issue 14 item 7), against the real RabbitMQ:
a vhost created late, a broker port closed at first and opened later, and a clear error after the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from axis.broker.transport import connect
from axis.broker.waiting import BrokerUnavailable, wait_for_broker
from axis.config import generate_workdir, load_config
from axis.core.backoff import Backoff
from axis.core.wire import Q_SUBMISSIONS
from axis.router.service import RouterService
from axis.stats.counting import MemoryCounter

pytestmark = pytest.mark.rabbitmq
FAST = Backoff(first=0.1, factor=2, cap=0.5, deadline=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def forwarder(port: int, target: int = 5672) -> AsyncIterator[None]:
    """A TCP relay 127.0.0.1:port → the broker (the broker's port 'opening' late)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_the_first_connection_waits_for_the_port_to_open(vhost_url: str) -> None:
    port = _free_port()
    url = vhost_url.replace("127.0.0.1:5672", f"127.0.0.1:{port}")
    task = asyncio.create_task(connect(url, backoff=FAST))
    await asyncio.sleep(1.0)
    assert not task.done(), "connect gave up (or connected) while nothing listened"
    async with forwarder(port):
        connection = await asyncio.wait_for(task, 20)
        try:
            channel = await connection.channel()
            await channel.close()
        finally:
            await connection.close()


async def test_gives_up_at_the_deadline_naming_the_broker_without_its_password() -> None:
    url = f"amqp://someone:s3cret@127.0.0.1:{_free_port()}/axis"
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(BrokerUnavailable) as info:
        await connect(url, backoff=Backoff(first=0.1, cap=0.2, deadline=1.0))
    assert 0.9 <= loop.time() - began < 5
    message = str(info.value)
    assert f"amqp://127.0.0.1:{url.split(':')[3].split('/')[0]}/axis" in message and "within 1s" in message
    assert "s3cret" not in message and "someone" not in message


async def test_wait_for_broker_reports_progress_until_the_vhost_exists(
        rabbit_mgmt: tuple[str, tuple[str, str], str], amqp_url: str) -> None:
    base, auth, _ = rabbit_mgmt
    vhost = f"axis-test-late-{uuid.uuid4().hex[:8]}"
    url = amqp_url.rsplit("/", 1)[0] + "/" + vhost
    seen: list[tuple[float, float, str]] = []
    task = asyncio.create_task(wait_for_broker(url, backoff=FAST,
                                               progress=lambda w, d, e: seen.append((w, d, type(e).__name__))))
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=30) as http:
        try:
            await asyncio.sleep(1.0)
            assert not task.done()
            await (await http.put(f"/api/vhosts/{vhost}")).aread()
            await http.put(f"/api/permissions/{vhost}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})
            waited = await asyncio.wait_for(task, 20)
        finally:
            await http.delete(f"/api/vhosts/{vhost}")
    assert waited >= 1.0
    assert len(seen) >= 3 and all(d == 30 for _, d, _ in seen)
    assert [w for w, _, _ in seen] == sorted(w for w, _, _ in seen)


async def test_a_router_started_before_its_vhost_exists_starts_once_it_does(
        tmp_path: Path, rabbit_mgmt: tuple[str, tuple[str, str], str], amqp_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A real component (the router, development mode: it declares what it uses) started before its vhost
    exists waits, then consumes; before this it raised at once and its process exited with status 1."""
    base, auth, _ = rabbit_mgmt
    vhost = f"axis-test-late-{uuid.uuid4().hex[:8]}"
    url = amqp_url.rsplit("/", 1)[0] + "/" + vhost
    path, _ = generate_workdir(tmp_path / "work", [("000.00.00.G22", "VPCP", "d1")], [("d1", "dedicated")],
                               base_port=18801, amqp_url=url, broker_auth="shared")
    monkeypatch.setenv("AXIS_BROKER_WAIT", "60")
    router = RouterService(load_config(path), counter=MemoryCounter())
    task = asyncio.create_task(router.start())
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=30) as http:
        try:
            await asyncio.sleep(1.5)
            assert not task.done(), f"the router did not wait: {task.exception() if task.done() else ''}"
            await http.put(f"/api/vhosts/{vhost}")
            await http.put(f"/api/permissions/{vhost}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})
            await asyncio.wait_for(task, 40)
            for _ in range(100):  # the management API's statistics lag a little
                q = (await http.get(f"/api/queues/{vhost}/{Q_SUBMISSIONS}")).json()
                if q.get("consumers") == 1:
                    break
                await asyncio.sleep(0.2)
            assert q.get("consumers") == 1
        finally:
            await router.stop()
            await http.delete(f"/api/vhosts/{vhost}")
