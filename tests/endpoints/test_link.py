"""The host link (endpoints.link) with shared broker users (development mode): one connection per host, its servers'
submissions and statuses bundled, the router trusting the headers as it does there — end to end against RabbitMQ.
With per-component users (what `axis up` runs) the link is tested in tests/faults/test_broker_users.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from axis.config.model import BROKER_AUTH_SHARED
from axis.core import envelope
from tests.faults.harness import G01, G03, G22, H53, running_axis, wait_for

pytestmark = pytest.mark.rabbitmq


async def test_a_link_with_shared_users_bundles_and_delivers(tmp_path: Path, vhost_url: str) -> None:
    async with running_axis(tmp_path / "work", vhost_url, linked=True, broker_auth=BROKER_AUTH_SHARED) as env:
        assert not env.config.broker.per_component
        assert sorted(sorted(link.server_ids) for link in env.links) == [["d1"], ["d2", "sh"]]
        assert all(link.publisher.user_id is None for link in env.links)  # no broker user to name
        docs = [(G01, [G22, H53]), (H53, [G22, G03]), (G03, [H53]), (G22, [G01])] * 3
        signed = [(s, env.pki.sign(envelope.build(envelope.new_document(s, to, f"Về việc {i}")), s))
                  for i, (s, to) in enumerate(docs)]
        posted = await asyncio.gather(*(env.client(s).post("/v1/documents", content=body,
                                                           headers={"content-type": "application/xml"})
                                        for s, body in signed))
        assert [r.status_code for r in posted] == [202] * len(docs)
        deliveries = sum(len(to) for _, to in docs)
        await wait_for(lambda: len(env.counter.delivered) >= deliveries, 30, "every delivery counted")
        assert len(env.counter.accepted) == len(docs) and not env.counter.refused
        assert await env.received() == deliveries
        [host] = [link for link in env.links if len(link.server_ids) == 2]
        assert 0 < host.documents.messages < 9  # sh's and d2's 9 submissions in fewer messages
