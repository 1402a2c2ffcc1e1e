"""Replay, idempotency, a recipient server that is away, and queue length limits (what the sender sees)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
import pytest

from axis.broker import users as brokerauth
from axis.core import envelope
from axis.core.wire import EX_SUBMIT, H_KIND, H_SERVER, KIND_STATUS, Q_SUBMISSIONS, server_queue
from tests.faults.harness import G01, G03, G22, H53, Env, queue_depths, running_axis, wait_for
from tests.support.testing import make_edxml

pytestmark = pytest.mark.rabbitmq


async def _received(env: Env, n: int) -> bool:
    return await env.received() == n


async def test_replayed_envelope_is_delivered_once(tmp_path: Path, vhost_url: str) -> None:
    """The same signed envelope submitted again (HTTP, and straight onto the queue) lands in each inbox once."""
    async with running_axis(tmp_path / "work", vhost_url) as env:
        doc = env.pki.sign(make_edxml(G22, [H53, G01], number=42), G22)
        http = env.client(G22)
        for _ in range(3):
            assert (await http.post("/v1/documents", content=doc)).status_code == 202
        conn = await aio_pika.connect(vhost_url)
        ex = await (await conn.channel()).get_exchange(EX_SUBMIT, ensure=False)
        await ex.publish(aio_pika.Message(doc, headers={H_KIND: "document", H_SERVER: "d1"}), routing_key="")
        await conn.close()
        await wait_for(lambda: len(env.counter.delivered) >= 2, timeout=20, what="deliveries confirmed")
        await wait_for(lambda: env.router is not None and env.router.processed >= 4, timeout=20,
                       what="all four submissions processed")
        assert await env.received() == 2  # H53 once, G01 once
        assert len(env.counter.accepted) == 1
        inbox = (await env.client(H53).get("/v1/inbox")).json()["items"]
        assert len(inbox) == 1


async def test_status_redelivered_is_stored_once(tmp_path: Path, vhost_url: str) -> None:
    async with running_axis(tmp_path / "work", vhost_url) as env:
        doc = env.pki.sign(make_edxml(G22, [H53], number=43), G22)
        sub = (await env.client(G22).post("/v1/documents", content=doc)).json()
        await wait_for(lambda: _received(env, 1), what="delivery")
        st = envelope.new_status(H53, envelope.parse(doc), "03", "đã tiếp nhận",
                                 timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
        body = envelope.build(st)
        # as server d2 (H53's server) would: its own broker user, user_id set (the router authenticates by it)
        d2 = brokerauth.server_user("d2")
        conn = await aio_pika.connect(brokerauth.component_url(env.config, d2))
        ex = await (await conn.channel()).get_exchange(EX_SUBMIT, ensure=False)
        for _ in range(3):  # the same status message redelivered (at-least-once)
            await ex.publish(aio_pika.Message(body, headers={H_KIND: KIND_STATUS, H_SERVER: "d2"},
                                              user_id=brokerauth.publisher_user_id(env.config, d2)), routing_key="")
        await conn.close()

        async def codes() -> list[str]:
            r = await env.client(G22).get(f"/v1/documents/{sub['id']}/status")
            return [s["code"] for s in r.json()["items"]]

        await wait_for(lambda: _has(codes, "03"), what="status 03 stored")
        await wait_for(lambda: env.router is not None and env.router.processed >= 5, what="all statuses routed")
        assert sorted(await codes()) == ["01", "03"]


async def _has(codes: object, code: str) -> bool:
    return code in await codes()  # type: ignore[operator]


async def test_documents_wait_for_a_server_that_is_away(tmp_path: Path, vhost_url: str,
                                                        rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    base, auth, _ = rabbit_mgmt
    async with running_axis(tmp_path / "work", vhost_url) as env:
        away = env.servers["d2"]
        await away.stop()
        http = env.client(G22)
        for i in range(5):
            doc = env.pki.sign(make_edxml(G22, [H53], number=100 + i), G22)
            assert (await http.post("/v1/documents", content=doc)).status_code == 202
        await wait_for(lambda: len(env.counter.accepted) == 5, what="routed")

        async def waiting() -> bool:  # the router may pack documents of one batch into one message (a bundle)
            return 1 <= ((await queue_depths(base, auth, vhost_url)).get(server_queue("d2")) or 0) <= 5

        await wait_for(waiting, timeout=30, what="the 5 documents waiting durably in axis.server.d2")
        await asyncio.sleep(0.5)
        assert 1 <= (await queue_depths(base, auth, vhost_url))[server_queue("d2")] <= 5
        assert await env.received() == 0
        await away.start(env.connection)
        await wait_for(lambda: _received(env, 5), timeout=30, what="delivered after the server came back")


async def test_queue_length_limit_is_backpressure_not_loss(tmp_path: Path, vhost_url: str,
                                                           rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    """A max-length policy with overflow reject-publish on axis.submissions: the broker nacks the publish, the
    endpoint answers 503 + Retry-After (nothing accepted, nothing lost); once the router drains, the retry
    succeeds."""
    base, auth, _ = rabbit_mgmt
    vhost = vhost_url.rsplit("/", 1)[1]
    async with running_axis(tmp_path / "work", vhost_url) as env:
        assert env.router is not None
        await env.router.stop()
        with httpx.Client(base_url=base, auth=auth, timeout=10) as admin:
            admin.put(f"/api/policies/{vhost}/axis-submissions-limit", json={
                "pattern": f"^{Q_SUBMISSIONS}$", "apply-to": "queues", "priority": 10,
                "definition": {"max-length": 3, "overflow": "reject-publish"}}).raise_for_status()
        http = env.client(G03)
        docs = [env.pki.sign(make_edxml(G03, [G22], number=200 + i), G03) for i in range(5)]
        statuses = []
        for doc in docs:
            statuses.append(await http.post("/v1/documents", content=doc))
        codes = [r.status_code for r in statuses]
        # quorum queues apply the limit approximately (one message may slip past it): 202s, then 503s
        accepted = codes.count(202)
        assert accepted >= 3 and codes == [202] * accepted + [503] * (5 - accepted) and accepted < 5, codes
        assert statuses[-1].headers["retry-after"] == "1"
        assert statuses[-1].headers["content-type"].startswith("application/problem+json")
        await env.start_router()
        await wait_for(lambda: _received(env, accepted), timeout=30, what="the accepted documents delivered")
        print(f"FAULTS-REPORT backpressure max-length=3 http={codes}")
        for doc in docs[accepted:]:
            assert (await http.post("/v1/documents", content=doc)).status_code == 202
        await wait_for(lambda: _received(env, 5), timeout=30, what="the retried documents delivered")
