"""Poison messages: processing that raises an unexpected exception (a bug, not a Refusal) is retried a bounded
number of times (quorum queue ``x-delivery-limit``), then dead-lettered by RabbitMQ; everything else keeps
flowing. Faults are injected by wrapping the real code for one message only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aio_pika
import pytest

from axis.core import envelope
from axis.core.wire import DELIVERY_LIMIT, EX_SUBMIT, H_KIND, H_SERVER, KIND_DOCUMENT, Q_DEAD
from tests.faults.harness import G01, G22, H53, Env, drain, running_axis, wait_for
from tests.support.testing import make_edxml

pytestmark = pytest.mark.rabbitmq


def _death(m: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    deaths = (m.headers or {}).get("x-death") or []
    assert deaths, m.headers
    d = deaths[0]
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in d.items()}


async def _received(env: Env, n: int) -> bool:
    return await env.received() == n


async def test_router_poison_message_is_dead_lettered_and_the_router_keeps_going(tmp_path: Path,
                                                                                 vhost_url: str) -> None:
    async with running_axis(tmp_path / "work", vhost_url) as env:
        assert env.router is not None
        real = env.router.core.process
        attempts = {"poison": 0}

        def process(body: bytes, headers: Any, message_id: str) -> Any:
            if message_id == "poison":
                attempts["poison"] += 1
                raise ZeroDivisionError("injected bug")
            return real(body, headers, message_id)

        env.router.core.process = process  # type: ignore[method-assign]
        conn = await aio_pika.connect(vhost_url)
        try:
            ex = await (await conn.channel()).get_exchange(EX_SUBMIT, ensure=False)
            good = env.pki.sign(make_edxml(G22, [H53], number=7), G22)
            poison = env.pki.sign(make_edxml(G22, [H53], number=8), G22)
            headers = {H_KIND: KIND_DOCUMENT, H_SERVER: "d1"}
            await ex.publish(aio_pika.Message(poison, message_id="poison", headers=headers,
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")
        finally:
            await conn.close()
        # the good one through its sender's server (which records it: its recipient's status 01 is then accepted)
        assert (await env.client(G22).post("/v1/documents", content=good,
                                           headers={"content-type": "application/xml"})).status_code == 202
        await wait_for(lambda: _received(env, 1), timeout=30, what="the good document delivered")
        dead = await wait_for(lambda: drain(vhost_url, Q_DEAD), timeout=60, what="the poison message dead-lettered")
        assert [m.message_id for m in dead] == ["poison"]
        death = _death(dead[0])
        assert death["reason"] == "delivery_limit" and death["queue"] == "axis.submissions", death
        assert attempts["poison"] == DELIVERY_LIMIT + 1  # first try + DELIVERY_LIMIT redeliveries, then no more
        assert dead[0].body == poison  # the evidence is kept byte for byte
        print(f"FAULTS-REPORT poison-router attempts={attempts['poison']} death={death['reason']}")


async def test_endpoint_poison_delivery_is_dead_lettered(tmp_path: Path, vhost_url: str) -> None:
    async with running_axis(tmp_path / "work", vhost_url) as env:
        store = env.servers["sh"].store
        assert store is not None
        real = store.store_received
        attempts = {"n": 0}

        async def store_received(agencies: Any, **kw: Any) -> Any:
            if kw.get("subject") == "poison":
                attempts["n"] += 1
                raise OSError("injected: disk full")
            return await real(agencies, **kw)

        store.store_received = store_received  # type: ignore[method-assign]
        http = env.client(G22)
        poison = env.pki.sign(make_edxml(G22, [G01], number=9, subject="poison"), G22)
        good = env.pki.sign(make_edxml(G22, [G01], number=10), G22)
        for doc in (poison, good):
            assert (await http.post("/v1/documents", content=doc)).status_code == 202
        await wait_for(lambda: _received(env, 1), timeout=30, what="the good document delivered")
        dead = await wait_for(lambda: drain(vhost_url, Q_DEAD), timeout=60, what="the poison delivery dead-lettered")
        assert len(dead) == 1
        death = _death(dead[0])
        assert death["reason"] == "delivery_limit" and death["queue"] == "axis.server.sh", death
        assert attempts["n"] == DELIVERY_LIMIT + 1
        assert envelope.parse(dead[0].body).subject == "poison"
        print(f"FAULTS-REPORT poison-endpoint attempts={attempts['n']} death={death['reason']}")
