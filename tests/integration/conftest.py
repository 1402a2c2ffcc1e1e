"""An axis running in-process against the real RabbitMQ: router + endpoint servers (real delivery consumers),
the HTTP apps reached through httpx's ASGI transport. Each test gets its own vhost and work directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from axis.broker.setup import prepare_broker
from axis.broker.transport import connect
from axis.config import Config, generate_workdir, load_config
from axis.router.service import RouterService
from axis.stats.counting import Accepted, Delivered, MemoryCounter, Refused, open_counter
from endpoints.app import create_app
from endpoints.server import EndpointServer

G22, H53, G01, G03, H41 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01", "000.00.00.G03", "000.00.00.H41"
AGENCIES = [
    (G22, "Văn phòng Chính phủ", "d1"),
    (H53, "UBND tỉnh Tây Ninh", "d2"),
    (G01, "Bộ Công an", "sh"),
    (G03, "Bộ Giáo dục và Đào tạo", "sh"),
    (H41, "UBND tỉnh Nghệ An", "sh"),
]
SERVERS = [("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared")]


class TeeCounter:
    """The real statistics store, plus an in-memory copy the tests can inspect."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.mem = MemoryCounter()

    async def record(self, *, accepted: Sequence[Accepted] = (), delivered: Sequence[Delivered] = (),
                     refused: Sequence[Refused] = ()) -> None:
        await self.real.record(accepted=accepted, delivered=delivered, refused=refused)
        await self.mem.record(accepted=accepted, delivered=delivered, refused=refused)

    async def close(self) -> None:
        await self.real.close()


@dataclass
class Axis:
    config: Config
    connections: dict[str, Any]
    counter: TeeCounter
    router: RouterService
    servers: dict[str, EndpointServer]
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def agency(self, code: str) -> dict[str, Any]:
        return next(a for a in self.connections["agencies"] if a["code"] == code)

    def client(self, code: str, token: str | None = None) -> httpx.AsyncClient:
        """An HTTP client for agency ``code`` on its own server (``token`` overrides its token)."""
        a = self.agency(code)
        app = create_app(self.servers[a["server"]])
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{a['server']}",
                              headers={"Authorization": f"Bearer {token or a['token']}"})
        self.clients[f"{code}/{token}/{id(c)}"] = c
        return c


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def axis_env(tmp_path: Path, vhost_url: str) -> AsyncIterator[Axis]:
    path, connections = generate_workdir(tmp_path / "work", AGENCIES, SERVERS, base_port=18701, amqp_url=vhost_url)
    config = load_config(path)
    await prepare_broker(config)  # topology + one least-privilege broker user per component, as `axis up` does
    counter = TeeCounter(await open_counter(config.stats_url))
    router = RouterService(config, counter=counter, batch=16)
    servers = {sid: EndpointServer(config, sid) for sid, _ in SERVERS}
    await router.start()
    connection = await connect(vhost_url)
    for s in servers.values():
        await s.start(connection)
    env = Axis(config, connections, counter, router, servers)
    try:
        yield env
    finally:
        for c in env.clients.values():
            await c.aclose()
        for s in servers.values():
            await s.stop()
        await connection.close()
        await router.stop()
        await counter.close()
