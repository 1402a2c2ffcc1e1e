"""Least-privilege broker users, checked against the real RabbitMQ: what each component may and may not do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.exceptions import ChannelClosed

from axis.broker import users as brokerauth
from axis.broker.transport import declare_topology
from axis.core.wire import EX_DELIVER, EX_DLX, EX_EVIDENCE, EX_SUBMIT, Q_DEAD, Q_EVIDENCE, Q_SUBMISSIONS, server_queue

pytestmark = pytest.mark.rabbitmq


def test_permission_regexes_are_exact() -> None:
    import re

    p = brokerauth.server_permissions("s1")
    assert re.fullmatch(p.read, "axis.server.s1")
    for other in ("axis.server.s10", "axis.server.s1x", "axis.server.s2", "axis.submissions", "axis.dead"):
        assert not re.fullmatch(p.read, other), other
    assert re.fullmatch(p.write, "axis.submit") and not re.fullmatch(p.write, "axis.deliver")
    assert re.fullmatch(p.write, "axis.evidence") and not re.fullmatch(p.read, "axis.evidence")
    assert p.configure == "^$"
    w = brokerauth.evidence_permissions()
    assert re.fullmatch(w.read, "axis.evidence") and w.write == w.configure == "^$"
    for other in ("axis.evidence2", "axis.submissions", "axis.dead", "axis.server.s1"):
        assert not re.fullmatch(w.read, other), other
    assert re.fullmatch(brokerauth.router_permissions().write, "axis.evidence")
    a = brokerauth.admin_permissions()
    # the admin app logs actions and keeps or resends dead letters (axis.admin.deadletters); it reads nothing else
    for name in ("axis.evidence", "axis.dlx", "axis.submit", "axis.deliver"):
        assert re.fullmatch(a.write, name), name
    assert re.fullmatch(a.read, "axis.dead") and a.configure == "^$"
    for other in ("axis.submissions", "axis.evidence", "axis.server.s1", "axis.dead2"):
        assert not re.fullmatch(a.read, other), other
    with pytest.raises(ValueError):
        brokerauth.server_permissions("s1|.*")
    assert brokerauth.server_of_user("axis-server-s1") == "s1"
    assert brokerauth.server_of_user("axis-router") is None


@pytest.fixture
def vhost(amqp_url: str, rabbit_mgmt: tuple[str, tuple[str, str], str]) -> Iterator[tuple[str, str]]:
    base, auth, _ = rabbit_mgmt
    name = f"axis-auth-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=base, auth=auth, timeout=30) as http:
        http.put(f"/api/vhosts/{name}").raise_for_status()
        http.put(f"/api/permissions/{name}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
                 ).raise_for_status()
        try:
            yield name, amqp_url.rsplit("/", 1)[0] + "/" + name
        finally:
            http.delete(f"/api/vhosts/{name}")


@pytest.fixture
async def users(vhost: tuple[str, str], rabbit_mgmt: tuple[str, tuple[str, str], str]
                ) -> AsyncIterator[dict[str, brokerauth.BrokerUser]]:
    name, url = vhost
    base, auth, _ = rabbit_mgmt
    conn = await aio_pika.connect(url)  # the provisioning account declares the topology, once
    await declare_topology(await conn.channel(), ["s1", "s2"])
    await conn.close()
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    made = brokerauth.provision(base, auth, name, ["s1", "s2"], prefix=prefix)
    try:
        yield {u.name.removeprefix(prefix): u for u in made}
    finally:
        with brokerauth.BrokerAdmin(base, auth) as admin:
            for u in made:
                admin.delete_user(u.name)


async def _ack(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    await message.ack()


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


def url_of(user: brokerauth.BrokerUser, vhost: str) -> str:
    return user.amqp_url("127.0.0.1", 5672, vhost)


async def refused(coro: Any, code: str = "ACCESS_REFUSED") -> str:
    """Await ``coro`` and require the broker to close the channel with ``code`` (403 or 406 PRECONDITION_FAILED)."""
    with pytest.raises(ChannelClosed) as info:
        await asyncio.wait_for(coro, 10)
    text = str(info.value)
    assert text.startswith(code), text
    return text


async def test_endpoint_server_least_privilege(vhost: tuple[str, str],
                                               users: dict[str, brokerauth.BrokerUser]) -> None:
    name, _ = vhost
    s1 = users["axis-server-s1"]
    conn = await aio_pika.connect(url_of(s1, name))
    try:
        # allowed: publish a submission and an event (confirmed), consume its own queue
        ch = await conn.channel(publisher_confirms=True)
        submit = await ch.get_exchange(EX_SUBMIT, ensure=False)
        await submit.publish(aio_pika.Message(b"<x/>", user_id=s1.name), routing_key="")
        evidence = await ch.get_exchange(EX_EVIDENCE, ensure=False)
        await evidence.publish(aio_pika.Message(b"[]", user_id=s1.name), routing_key="", mandatory=True)
        own = await ch.declare_queue(server_queue("s1"), passive=True)
        tag = await own.consume(_ack)
        await own.cancel(tag)

        # refused: another server's queue, the submissions, the dead letters, the evidence (write only)
        for queue in (server_queue("s2"), Q_SUBMISSIONS, "axis.dead", Q_EVIDENCE):
            ch = await conn.channel()
            q = await ch.declare_queue(queue, passive=True)
            assert "ACCESS_REFUSED" in await refused(q.consume(_ignore))
        # refused: delivering directly or dead-lettering
        for exchange in (EX_DELIVER, EX_DLX):
            ch = await conn.channel()
            ex = await ch.get_exchange(exchange, ensure=False)
            assert "ACCESS_REFUSED" in await refused(ex.publish(aio_pika.Message(b"x"), routing_key="s2"))
        # refused: declaring or deleting topology
        ch = await conn.channel()
        await refused(ch.declare_queue("axis.server.evil", durable=True))
        ch = await conn.channel()
        await refused(ch.queue_delete(server_queue("s2")))
    finally:
        await conn.close()


async def test_router_and_admin_least_privilege(vhost: tuple[str, str], users: dict[str, brokerauth.BrokerUser],
                                                rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    name, _ = vhost
    router = users["axis-router"]
    conn = await aio_pika.connect(url_of(router, name))
    try:
        ch = await conn.channel()
        subs = await ch.declare_queue(Q_SUBMISSIONS, passive=True)
        await subs.cancel(await subs.consume(_ignore))
        for exchange in (EX_DELIVER, EX_DLX, EX_SUBMIT, EX_EVIDENCE):
            ex = await ch.get_exchange(exchange, ensure=False)
            await ex.publish(aio_pika.Message(b"<x/>"), routing_key="s1")
        for queue in (server_queue("s1"), Q_EVIDENCE):
            ch = await conn.channel()
            q = await ch.declare_queue(queue, passive=True)
            await refused(q.consume(_ignore))
    finally:
        await conn.close()

    admin = users["axis-admin"]
    base, _, _ = rabbit_mgmt
    with httpx.Client(base_url=base, auth=(admin.name, admin.password), timeout=10) as http:
        queues = http.get(f"/api/queues/{name}")
        assert queues.status_code == 200
        assert {q["name"] for q in queues.json()} >= {"axis.submissions", "axis.server.s1", "axis.dead"}
        assert http.put(f"/api/vhosts/{name}-evil").status_code in (401, 403)
        assert http.delete(f"/api/queues/{name}/axis.dead").status_code in (401, 403)
    conn = await aio_pika.connect(url_of(admin, name))
    try:
        # an operator's action is an event of the log; a dead letter is kept (axis.dlx) or resent where it came
        # from (axis.submit, axis.deliver): the admin user may publish there (axis.admin.deadletters)
        ch = await conn.channel(publisher_confirms=True)
        evidence = await ch.get_exchange(EX_EVIDENCE, ensure=False)
        await evidence.publish(aio_pika.Message(b"[]"), routing_key="", mandatory=True)
        dead = await ch.declare_queue("axis.dead", passive=True)
        taken = await dead.get(fail=False)  # it may read the dead letters (not refused: no exception)
        if taken is not None:
            await taken.nack(requeue=True)
        # and no other queue
        for queue in ("axis.submissions", "axis.server.s1", Q_EVIDENCE):
            ch = await conn.channel()
            q = await ch.declare_queue(queue, passive=True)
            await refused(q.consume(_ignore))
    finally:
        await conn.close()


async def test_log_writer_least_privilege(vhost: tuple[str, str], users: dict[str, brokerauth.BrokerUser]) -> None:
    """The log writer reads axis.evidence — and nothing else; it publishes nowhere (its bad messages are
    dead-lettered by the broker, through the queue's dead-letter exchange, on its reject)."""
    name, guest_url = vhost
    writer = users[brokerauth.EVIDENCE_USER]
    assert writer.permissions == brokerauth.evidence_permissions()
    guest = await aio_pika.connect(guest_url)
    try:
        ch = await guest.channel(publisher_confirms=True)
        ex = await ch.get_exchange(EX_EVIDENCE, ensure=False)
        await ex.publish(aio_pika.Message(b"not events", message_id="bad"), routing_key="", mandatory=True)
    finally:
        await guest.close()
    conn = await aio_pika.connect(url_of(writer, name))
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(Q_EVIDENCE, passive=True)
        m = await q.get(timeout=5)
        assert m is not None and m.message_id == "bad"
        await m.reject(requeue=False)  # to the dead letters, without any write permission
        # refused: publishing anywhere (a submission, a delivery, a dead letter, an event)
        for exchange in (EX_SUBMIT, EX_DELIVER, EX_DLX, EX_EVIDENCE):
            ch = await conn.channel()
            ex = await ch.get_exchange(exchange, ensure=False)
            assert "ACCESS_REFUSED" in await refused(ex.publish(aio_pika.Message(b"<x/>"), routing_key="s1"))
        # refused: reading any other queue
        for queue in (Q_SUBMISSIONS, server_queue("s1"), Q_DEAD):
            ch = await conn.channel()
            q = await ch.declare_queue(queue, passive=True)
            await refused(q.consume(_ignore))
        # refused: declaring or deleting topology
        ch = await conn.channel()
        await refused(ch.declare_queue("axis.evidence.copy", durable=True))
        ch = await conn.channel()
        await refused(ch.queue_delete(Q_EVIDENCE))
    finally:
        await conn.close()
    guest = await aio_pika.connect(guest_url)
    try:
        dead = await (await guest.channel()).declare_queue(Q_DEAD, passive=True)
        for _ in range(50):
            got = await dead.get(no_ack=True, fail=False)
            if got is not None:
                break
            await asyncio.sleep(0.1)
        assert got is not None and got.message_id == "bad"
    finally:
        await guest.close()


async def test_user_id_is_validated_by_the_broker(vhost: tuple[str, str],
                                                  users: dict[str, brokerauth.BrokerUser]) -> None:
    """A server cannot claim to be another: RabbitMQ refuses a user_id other than the connection's user."""
    name, guest_url = vhost
    s1, s2 = users["axis-server-s1"], users["axis-server-s2"]
    conn = await aio_pika.connect(url_of(s1, name))
    try:
        ch = await conn.channel()
        submit = await ch.get_exchange(EX_SUBMIT, ensure=False)
        assert "PRECONDITION_FAILED" in await refused(
            submit.publish(aio_pika.Message(b"forged", user_id=s2.name, message_id="forged"), routing_key=""),
            "PRECONDITION_FAILED")
        ch = await conn.channel()
        submit = await ch.get_exchange(EX_SUBMIT, ensure=False)
        await submit.publish(aio_pika.Message(b"genuine", user_id=s1.name, message_id="genuine"), routing_key="")
    finally:
        await conn.close()

    guest = await aio_pika.connect(guest_url)
    try:
        q = await (await guest.channel()).declare_queue(Q_SUBMISSIONS, passive=True)
        got = []
        while (m := await q.get(no_ack=True, fail=False, timeout=5)) is not None:
            got.append((m.message_id, m.user_id))
        assert got == [("genuine", s1.name)]  # the forged one never reached the queue
        prefix = s1.name.removesuffix("axis-server-s1")
        assert brokerauth.server_of_user(got[0][1], prefix=prefix) == "s1"
    finally:
        await guest.close()
