"""Finding 1 of the outside review: one agency must not be able to stall the router and lose other agencies'
documents (against the real RabbitMQ).

Before the fix a signed document naming one known recipient and 3,500 unknown 35-character codes was accepted;
the router put every unknown code into one AMQP header (~140 KB, over RabbitMQ's 131,072-byte frame), the broker
closed its connection, the whole batch was requeued again and again, and another agency's document was
dead-lettered after 5 redeliveries.
"""

from __future__ import annotations

import httpx
import pytest

from axis.core.wire import H_KIND, H_REASON, server_queue
from tests.conftest import RABBIT_AUTH, RABBIT_MGMT
from tests.integration.conftest import G01, G03, G22, H53, Axis, wait_for
from tests.integration.test_flow import inbox, sign_as, unsigned
from tests.integration.test_refusals import XML, dead_letters, publish_raw

pytestmark = pytest.mark.rabbitmq

UNKNOWN = [f"{i:08d}.{i:08d}.{i:08d}.ABCDEFGH"[:35] for i in range(3500)]  # 35 characters, in no directory


def flood(env: Axis) -> bytes:
    return sign_as(env, G22, unsigned(G22, [H53, *UNKNOWN], subject="3,500 unknown recipients"))


async def test_too_many_recipients_are_refused_at_the_door(axis_env: Axis) -> None:
    r = await axis_env.client(G22).post("/v1/documents", content=flood(axis_env), headers=XML)
    assert r.status_code == 413 and r.json()["reason"] == "TOO_LARGE", r.text
    assert "3501 recipients" in r.json()["detail"]


async def test_a_flood_past_the_door_is_refused_alone_and_others_are_delivered(axis_env: Axis) -> None:
    env = axis_env
    assert all(len(c) == 35 for c in UNKNOWN)
    # published with G22's server's own credential, as a compromised server would, then another agency's document
    await publish_raw(env, flood(env), as_server="d1", **{H_KIND: "document"})
    r = await env.client(G01).post("/v1/documents", content=unsigned(G01, [H53], subject="bình thường"),
                                   headers=XML)
    assert r.status_code == 202, r.text
    [dead] = await dead_letters(env, 1)
    assert dead.headers[H_REASON] == "TOO_LARGE"

    async def delivered() -> list[dict] | None:  # type: ignore[type-arg]
        return [i for i in await inbox(env, H53) if i["from"] == G01] or None

    await wait_for(delivered, what="the other agency's document in H53's inbox")
    assert [i["from"] for i in await inbox(env, H53)] == [G01]  # the flood delivered nothing
    # G22's server heard of the refusal, with the reason (the signature proved G22 sent it)
    async def refused() -> list[tuple[str, str | None]] | None:  # counted up to 250 ms later (axis.router.settle)
        return [(r.reason, r.sender) for r in env.counter.mem.refused.values()] or None

    assert await wait_for(refused, what="the refusal counted") == [("TOO_LARGE", G22)]


async def test_an_unpublishable_message_does_not_take_its_batch_with_it(axis_env: Axis) -> None:
    """A message whose outcome the broker will not take (here: its recipient's queue is gone, so the mandatory
    publish is returned) goes back to the queue alone and, after its delivery limit, to the dead letters; the
    other documents of its batch are delivered and counted once."""
    env = axis_env
    vhost = env.config.amqp_url.rsplit("/", 1)[1]
    async with httpx.AsyncClient(base_url=RABBIT_MGMT, auth=RABBIT_AUTH) as http:
        (await http.delete(f"/api/queues/{vhost}/{server_queue('d2')}")).raise_for_status()
    goods = [sign_as(env, G22, unsigned(G22, [G03], subject=f"good {i}")) for i in range(5)]
    poison = sign_as(env, G22, unsigned(G22, [H53], subject="to a server whose queue is gone"))
    g22 = env.client(G22)
    await env.router.stop()  # they wait in the queue, then reach the router together: one batch
    for body in [*goods[:2], poison, *goods[2:]]:
        assert (await g22.post("/v1/documents", content=body, headers=XML)).status_code == 202
    await env.router.start()

    async def five() -> list[dict] | None:  # type: ignore[type-arg]
        items = await inbox(env, G03)
        return items if len(items) >= 5 else None

    items = await wait_for(five, what="the five good documents")
    assert sorted(i["subject"] for i in items) == [f"good {i}" for i in range(5)]
    [dead] = await dead_letters(env, 1)  # the poison alone, after its delivery limit (RabbitMQ's x-death)
    assert dead.body == poison and dead.headers.get("x-death")

    async def counted() -> bool:
        return len(env.counter.mem.delivered) == 5

    await wait_for(counted, what="five deliveries counted")
    assert len(env.counter.mem.accepted) == 5  # the poison was never counted as routed
