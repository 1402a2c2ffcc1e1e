"""Documents a server's door submits together travel as one document-bundle, and each is decided, delivered and
counted as if it had come alone (a bad one refused alone): against the real RabbitMQ."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from axis.core import envelope
from axis.core.pki import load_certs, load_key
from axis.core.signing import sign
from axis.core.wire import H_SUBMITTED_AT, now_ms
from tests.integration.conftest import G01, G22, H53, Axis, wait_for

pytestmark = pytest.mark.rabbitmq


def signed(env: Axis, code: str, to: list[str], subject: str) -> bytes:
    a = env.agency(code)
    data = envelope.build(envelope.new_document(code, to, subject))
    return sign(data, load_key(Path(a["key"]).read_bytes()), load_certs(Path(a["cert"]).read_bytes())[0])


async def test_documents_submitted_together_share_a_message_and_arrive_alone(axis_env: Axis) -> None:
    env = axis_env
    door = env.servers["d1"]  # G22's server
    docs = [signed(env, G22, [H53, G01], f"cùng lúc {i}") for i in range(5)]
    forged = envelope.build(envelope.new_document(G22, [H53], "không ký"))  # past a door that would refuse it
    before = door.submissions.messages
    # all six handed over in one event-loop turn: one message (the coalescer's first flush takes them all)
    await asyncio.gather(*(door.submit(d, {H_SUBMITTED_AT: now_ms()}) for d in [*docs, forged]))
    assert door.submissions.messages - before == 1

    async def delivered() -> bool:
        for code in (H53, G01):
            if len((await env.client(code).get("/v1/inbox")).json()["items"]) < 5:
                return False
        return len(env.counter.mem.accepted) == 5 and len(env.counter.mem.refused) == 1

    await wait_for(delivered, timeout=20, what="five documents in both inboxes, counted; the forged one refused")
    [refused] = env.counter.mem.refused.values()
    assert refused.reason == "SIGNATURE_MISSING"
    got = sorted([(await env.client(H53).get(f"/v1/documents/{i['id']}")).content
                  for i in (await env.client(H53).get("/v1/inbox")).json()["items"]])
    assert got == sorted(docs)  # the exact bytes, each its own delivery
