"""An axis running in-process (router + endpoint servers with their real delivery consumers) on a fresh vhost,
with a :class:`TestPKI` view of its own CA so the hostile corpus is signed by keys the axis trusts."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from axis.broker.setup import prepare_broker
from axis.broker.transport import connect
from axis.broker.users import default_host_groups
from axis.config import Config, Limits, generate_workdir, load_config
from axis.config.model import BROKER_AUTH_USERS
from axis.core import envelope
from axis.core import pki as pkimod
from axis.router.service import RouterService
from axis.stats.counting import MemoryCounter
from endpoints.app import create_app
from endpoints.link import HostLink
from endpoints.server import EndpointServer
from tests.support.testing import TestPKI

G22, H53, G01, G03, H41 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01", "000.00.00.G03", "000.00.00.H41"
AGENCIES = [
    (G22, "Văn phòng Chính phủ", "d1"),
    (H53, "UBND tỉnh Tây Ninh", "d2"),
    (G01, "Bộ Công an", "sh"),
    (G03, "Bộ Giáo dục và Đào tạo", "sh"),
    (H41, "UBND tỉnh Nghệ An", "sh"),
]
SERVERS = [("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared")]
CODES = [a[0] for a in AGENCIES]


def pki_of(work: Path, codes: list[str]) -> TestPKI:
    """A TestPKI over the CA and agency keys that ``generate_workdir`` wrote."""
    ca = pkimod.CertificateAuthority(work / "pki")
    t = TestPKI(dir=work / "pki", ca=ca, algorithm="ec", codes=list(codes))
    for code in codes:
        t._keys[code] = pkimod.load_key(t.key_path(code).read_bytes())
        t._certs[code] = pkimod.load_certs(t.cert_path(code).read_bytes())[0]
    return t


@dataclass
class Env:
    work: Path
    config: Config
    connections: dict[str, Any]
    pki: TestPKI
    counter: MemoryCounter
    amqp_url: str
    router: RouterService | None = None
    servers: dict[str, EndpointServer] = field(default_factory=dict)
    connection: Any = None
    links: list[HostLink] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def agency(self, code: str) -> dict[str, Any]:
        return next(a for a in self.connections["agencies"] if a["code"] == code)

    def client(self, code: str, token: str | None = None) -> httpx.AsyncClient:
        a = self.agency(code)
        app = create_app(self.servers[a["server"]])
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=f"http://{a['server']}",
                              headers={"Authorization": f"Bearer {token if token is not None else a['token']}"})
        self.clients.append(c)
        return c

    async def received(self) -> int:
        return sum([await s.store.count_received() for s in self.servers.values()])  # type: ignore[union-attr]

    async def start_router(self) -> RouterService:
        self.router = RouterService(self.config, counter=self.counter, batch=16)
        await self.router.start()
        return self.router

    async def start_servers(self, *, linked: bool = False) -> None:
        """With per-component broker users each server connects as itself, or — ``linked`` — the servers of each
        host group ``axis up`` would start share its host link (endpoints.link); a shared connection in dev mode."""
        self.connection = None if self.config.broker.per_component else await connect(self.amqp_url)
        self.servers = {sid: EndpointServer(self.config, sid) for sid, _ in SERVERS}
        for group in default_host_groups(self.config) if linked else [[sid] for sid, _ in SERVERS]:
            link = await HostLink.open(self.config, group) if linked else None
            if link is not None:
                self.links.append(link)
            for sid in group:
                await self.servers[sid].start(self.connection, link=link)


#: size limit of the test axes (the default is 25 MiB; smaller keeps TOO_LARGE tests light)
MAX_BYTES = 1024 * 1024


def prepare(work: Path, amqp_url: str, *, server_signs: bool = False,
            broker_auth: str = BROKER_AUTH_USERS) -> tuple[Config, dict[str, Any], TestPKI]:
    path, connections = generate_workdir(work, AGENCIES, SERVERS, base_port=18801, amqp_url=amqp_url,
                                         server_signs=server_signs, broker_auth=broker_auth)
    config = dataclasses.replace(load_config(path), limits=Limits(max_envelope_bytes=MAX_BYTES))
    return config, connections, pki_of(work, CODES)


@asynccontextmanager
async def running_axis(work: Path, amqp_url: str, *, server_signs: bool = False, linked: bool = False,
                       broker_auth: str = BROKER_AUTH_USERS,
                       before_start: Callable[[TestPKI], None] | None = None) -> AsyncIterator[Env]:
    """Router + every endpoint server (``linked``: on the host links ``axis up`` gives them; ``broker_auth``: the
    config's ``broker.auth``). ``before_start`` runs before any verifier is built (e.g. it may revoke)."""
    config, connections, pki = prepare(work, amqp_url, server_signs=server_signs, broker_auth=broker_auth)
    if before_start is not None:
        before_start(pki)
    env = Env(work, config, connections, pki, MemoryCounter(), amqp_url)
    await prepare_broker(config)  # topology + one least-privilege broker user per component, as `axis up` does
    await env.start_router()
    await env.start_servers(linked=linked)
    try:
        yield env
    finally:
        for c in env.clients:
            await c.aclose()
        for s in env.servers.values():
            await s.stop()
        if env.connection is not None:
            await env.connection.close()
        for link in env.links:
            await link.close()
        if env.router is not None:
            await env.router.stop()


async def deliver_all(env: Env, docs: list[tuple[str, list[str]]]) -> int:
    """Sign and POST every (sender, recipients) document at once, each answered 202; wait until every delivery is
    counted, and check that each document was accepted once, nothing refused, every delivery in an inbox. Returns
    the deliveries."""
    signed = [(sender, env.pki.sign(envelope.build(envelope.new_document(sender, to, f"Về việc {i}")), sender))
              for i, (sender, to) in enumerate(docs)]
    posted = await asyncio.gather(*(env.client(sender).post("/v1/documents", content=body,
                                                            headers={"content-type": "application/xml"})
                                    for sender, body in signed))
    assert [r.status_code for r in posted] == [202] * len(docs)
    deliveries = sum(len(to) for _, to in docs)
    await wait_for(lambda: len(env.counter.delivered) >= deliveries, 30, "every delivery counted")
    assert len(env.counter.accepted) == len(docs) and not env.counter.refused
    assert await env.received() == deliveries
    return deliveries


async def wait_for(check: Callable[[], Awaitable[Any] | Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.05)


async def drain(amqp_url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message currently in ``queue`` (acked)."""
    conn = await aio_pika.connect(amqp_url)
    try:
        q = await (await conn.channel()).declare_queue(queue, passive=True)
        out = []
        while (m := await q.get(no_ack=True, fail=False, timeout=5)) is not None:
            out.append(m)
        return out
    finally:
        await conn.close()


async def queue_depths(mgmt: str, auth: tuple[str, str], amqp_url: str) -> dict[str, int]:
    vhost = amqp_url.rsplit("/", 1)[1]
    async with httpx.AsyncClient(base_url=mgmt, auth=auth, timeout=10) as http:
        r = await http.get(f"/api/queues/{vhost}", params={"columns": "name,messages"})
        return {q["name"]: q.get("messages", 0) or 0 for q in r.json()}
