"""The router's settler against the real RabbitMQ: documents go out the moment they are decided; their counts, the
statuses about them and their evidence wait for the settlement, which covers every batch of the window in one
evidence message."""

from __future__ import annotations

import aio_pika
import pytest

from axis.core import envelope
from axis.core.wire import Q_EVIDENCE, read_events
from tests.integration.conftest import G01, G22, H53, Axis, wait_for

pytestmark = pytest.mark.rabbitmq

XML = {"content-type": "application/xml"}
WINDOW = 5.0  # long enough that the deliveries are in the inboxes well before it ends, on a slow machine too


async def evidence_messages(env: Axis) -> list[list[str]]:
    """The event types of each message waiting in axis.evidence (no log writer runs here), left in the queue."""
    conn = await aio_pika.connect(env.config.amqp_url)
    out: list[list[str]] = []
    try:
        queue = await (await conn.channel()).declare_queue(Q_EVIDENCE, passive=True)
        while (m := await queue.get(fail=False)) is not None:
            out.append([e.type for e in read_events(m.body)])  # unacked: back to the queue with the channel
    finally:
        await conn.close()
    return out


async def test_documents_go_out_at_once_and_one_settlement_covers_the_window(axis_env: Axis) -> None:
    env = axis_env
    assert env.router.settler is not None
    env.router.settler.linger = WINDOW
    sender = env.client(G22)
    sent = []
    for i in range(3):
        r = await sender.post("/v1/documents", content=envelope.build(envelope.new_document(G22, [H53, G01],
                                                                                            f"số {i}")), headers=XML)
        assert r.status_code == 202, r.text
        sent.append(r.json()["id"])

    async def delivered() -> bool:
        for code in (H53, G01):
            if len((await env.client(code).get("/v1/inbox")).json()["items"]) < 3:
                return False
        return True

    await wait_for(delivered, what="three documents in both inboxes")
    # delivered, and nothing settled yet: no count, no evidence, no status 01 at the sender's server
    assert env.counter.mem.accepted == {} and env.counter.mem.delivered == {}
    assert await evidence_messages(env) == []
    for rid in sent:
        assert (await sender.get(f"/v1/documents/{rid}/status")).json()["items"] == []

    async def counted() -> bool:
        return len(env.counter.mem.accepted) == 3 and len(env.counter.mem.delivered) == 6

    await wait_for(counted, timeout=WINDOW + 10, what="the settlement")
    messages = await evidence_messages(env)
    assert len(messages) == 1  # three documents, six deliveries: one evidence message
    # each document submitted and routed; each delivery stored, its status 01 a status event
    assert sorted(messages[0]) == ["routed"] * 3 + ["status"] * 6 + ["stored"] * 6 + ["submitted"] * 3
    for rid in sent:  # the 01s went to the sender's server with the settlement
        items = (await sender.get(f"/v1/documents/{rid}/status")).json()["items"]
        assert sorted(s["from"] for s in items if s["code"] == "01") == sorted([H53, G01])
