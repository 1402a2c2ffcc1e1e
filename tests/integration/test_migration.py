"""Moving an agency from a shared server to its own dedicated server mid-run, against the real RabbitMQ:
every document lands exactly once in its inbox, and the new server shows the agency's full inbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from axis.broker.setup import prepare_broker
from axis.broker.transport import connect
from axis.config import generate_workdir, load_config, move_agency
from axis.core import envelope
from axis.router.service import RouterService
from axis.stats.counting import open_counter
from endpoints.app import create_app
from endpoints.migrate import move_agency_rows
from endpoints.server import EndpointServer
from tests.integration.conftest import G01, G03, G22, TeeCounter, wait_for

pytestmark = pytest.mark.rabbitmq
XML = {"content-type": "application/xml"}


def doc(i: int) -> bytes:
    return envelope.build(envelope.new_document(G22, [G03, G01], f"document {i}"))


async def post(srv: EndpointServer, token: str, data: bytes) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(srv)), base_url="http://x",
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        r = await c.post("/v1/documents", content=data, headers=XML)
        assert r.status_code == 202, r.text
        return str(r.json()["document_id"])


async def inbox(srv: EndpointServer, token: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(srv)), base_url="http://x",
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        return await c.get("/v1/inbox", params={"limit": 1000})


async def test_agency_moves_to_a_dedicated_server_mid_run(tmp_path: Path, vhost_url: str) -> None:
    agencies = [(G22, "VPCP", "d1"), (G01, "BCA", "sh"), (G03, "BGDĐT", "sh")]
    path, conn = generate_workdir(tmp_path / "w", agencies, [("d1", "dedicated"), ("sh", "shared")],
                                  base_port=18801, amqp_url=vhost_url)
    tokens = {a["code"]: a["token"] for a in conn["agencies"]}
    v1 = load_config(path)
    await prepare_broker(v1)  # least-privilege users: the old server may not deliver, it forwards via the router
    counter = TeeCounter(await open_counter(v1.stats_url))
    connection = await connect(vhost_url)
    router = RouterService(v1, counter=counter, batch=8)
    await router.start()
    servers = {sid: EndpointServer(v1, sid) for sid in ("d1", "sh")}
    for s in servers.values():
        await s.start(connection)
    sent: list[str] = []
    try:
        async def send(n: int) -> None:
            for _ in range(n):
                sent.append(await post(servers["d1"], tokens[G22], doc(len(sent))))

        await send(6)  # batch A: routed to "sh", some still queued when the move starts

        async def one_at_sh() -> bool:
            return await servers["sh"].store.count_received(G03) >= 1  # type: ignore[union-attr]

        await wait_for(one_at_sh, timeout=60, what="a document delivered at the shared server before the move")

        # 1. the new configuration: G03 on its own dedicated server "d-g03" (key moves with it)
        v2 = move_agency(path, G03, "d-g03", port=18810)
        assert v2.directory.server_of(G03).id == "d-g03" and G03 in v2.server("d-g03").keys  # type: ignore[union-attr]
        # 2. start the new server first (its queue must exist before anything is routed or forwarded to it)
        await prepare_broker(v2)  # the new server's queue and broker user
        servers["d-g03"] = EndpointServer(v2, "d-g03")
        await servers["d-g03"].start(connection)
        # 3. routers pick up the new directory one at a time (competing consumers: no pause in routing)
        await send(3)
        new_router = RouterService(v2, counter=counter, batch=8)
        await new_router.start()
        await router.stop()
        router = new_router
        await send(3)  # batch B: routed straight to d-g03
        # 4. restart the old server with the new configuration: what is still queued for G03 is forwarded
        await servers["sh"].stop()
        servers["sh"] = EndpointServer(v2, "sh")
        await servers["sh"].start(connection)
        await send(3)
        # 5. move G03's rows (documents delivered before the move) to the new server's store
        assert servers["sh"].store is not None and servers["d-g03"].store is not None
        moved = await move_agency_rows(servers["sh"].store, servers["d-g03"].store, G03)
        await send(3)  # batch C
        n = len(sent)

        async def all_in() -> list[dict] | None:  # type: ignore[type-arg]
            r = await inbox(servers["d-g03"], tokens[G03])
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            return items if len(items) >= n else None

        items = await wait_for(all_in, timeout=60, what=f"{n} documents in G03's inbox at d-g03")
        async def counted() -> bool:
            return len(counter.mem.delivered) >= 2 * n

        await wait_for(counted, timeout=60, what="every delivery counted")
        await asyncio.sleep(1.0)  # nothing more may arrive (no duplicate behind the last one)
        items = (await inbox(servers["d-g03"], tokens[G03])).json()["items"]
        assert sorted(i["document_id"] for i in items) == sorted(sent)  # each exactly once
        assert moved.received >= 1  # some had been delivered at "sh" before the move
        # the old server no longer hosts G03 and holds none of its rows; G01 (still shared) got everything
        assert (await inbox(servers["sh"], tokens[G03])).status_code == 401
        assert await servers["sh"].store.count_received(G03) == 0  # type: ignore[union-attr]
        assert await servers["sh"].store.count_received(G01) == n  # type: ignore[union-attr]
        # statistics: one delivery per (document, recipient), none twice
        assert len(counter.mem.accepted) == n
        assert sorted(k for k, r in counter.mem.delivered if r == G03) == sorted(counter.mem.accepted)
    finally:
        for s in servers.values():
            await s.stop()
        await router.stop()
        await connection.close()
        await counter.close()
