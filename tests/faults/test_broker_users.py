"""Least privilege in a running axis: every component on its own broker user (as ``axis up`` provisions them),
attacked with one endpoint server's leaked credentials (issue 7, item 5).

The axis here is the in-process harness (router + the three endpoint servers, ``broker.auth: users``); the
attacker connects with the password the provisioning step wrote for server ``d1`` (``broker-users.json``).
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.exceptions import ChannelClosed

from axis.broker import users as brokerauth
from axis.core import envelope
from axis.core.wire import (
    EX_DELIVER,
    EX_DLX,
    EX_SUBMIT,
    H_FORWARD_KIND,
    H_KIND,
    H_REASON,
    H_RECIPIENTS,
    H_SERVER,
    KIND_FORWARD,
    KIND_STATUS,
    Q_DEAD,
    Q_EVIDENCE,
    Q_SUBMISSIONS,
    server_queue,
)
from tests.faults.harness import G01, G03, G22, H53, Env, deliver_all, drain, running_axis, wait_for

pytestmark = pytest.mark.rabbitmq


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


async def refused(coro: Any, code: str = "ACCESS_REFUSED") -> None:
    with pytest.raises(ChannelClosed) as info:
        await asyncio.wait_for(coro, 10)
    assert str(info.value).startswith(code), str(info.value)


def leaked(env: Env, server_id: str) -> tuple[str, str]:
    """(AMQP URL, broker user) of an endpoint server, as a thief who read its credentials would have them."""
    user = brokerauth.server_user(server_id)
    return brokerauth.component_url(env.config, user), env.config.broker.user_prefix + user


async def test_components_run_on_their_own_users(tmp_path: Path, vhost_url: str,
                                                 rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    import httpx

    async with running_axis(tmp_path / "work", vhost_url) as env:
        users_file = env.config.broker.users_file
        assert env.config.broker.per_component and users_file.is_file()
        assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o600
        names = set(brokerauth.load_passwords(users_file))
        prefix = env.config.broker.user_prefix
        # and the host user of the host process axis up would start for sh and d2 (endpoints.link)
        assert names == {prefix + n for n in ("axis-router", "axis-admin", "axis-evidence", "axis-server-d1",
                                              "axis-server-d2", "axis-server-sh", brokerauth.host_user(["sh", "d2"]))}
        base, auth, _ = rabbit_mgmt
        vhost = vhost_url.rsplit("/", 1)[1]

        async def users_connected() -> set[str]:
            async with httpx.AsyncClient(base_url=base, auth=auth, timeout=10) as http:
                r = await http.get(f"/api/vhosts/{vhost}/connections")
                return {c["user"] for c in r.json()}

        # the router and each logical server (even in one process) connect as themselves, nobody as guest
        expected = {prefix + n for n in ("axis-router", "axis-server-d1", "axis-server-d2", "axis-server-sh")}

        async def all_connected() -> bool:
            return await users_connected() == expected

        await wait_for(all_connected, 20, "the management API to list every connection")


async def test_leaked_server_credentials(tmp_path: Path, vhost_url: str) -> None:
    async with running_axis(tmp_path / "work", vhost_url) as env:
        url, _ = leaked(env, "d1")
        _, other = leaked(env, "sh")
        conn = await aio_pika.connect(url)
        tried = 0
        try:
            # another server's deliveries, the router's work queue, the dead letters, the evidence: not readable
            for queue in (server_queue("d2"), server_queue("sh"), Q_SUBMISSIONS, Q_DEAD, Q_EVIDENCE):
                for take in ("consume", "get"):
                    ch = await conn.channel()
                    q = await ch.declare_queue(queue, passive=True)
                    await refused(q.consume(_ignore) if take == "consume" else q.get(timeout=5))
                    tried += 1
            # no direct delivery to anyone, no dead letters, no topology changes
            for exchange in (EX_DELIVER, EX_DLX):
                ch = await conn.channel()
                ex = await ch.get_exchange(exchange, ensure=False)
                await refused(ex.publish(aio_pika.Message(b"<x/>"), routing_key="d2"))
                tried += 1
            for attempt in ("declare", "bind", "delete", "purge"):
                ch = await conn.channel()
                if attempt == "declare":
                    await refused(ch.declare_queue("axis.server.evil", durable=True))
                elif attempt == "bind":
                    q = await ch.declare_queue(server_queue("d1"), passive=True)
                    await refused(q.bind(EX_SUBMIT))  # a copy of every submission into its own queue
                elif attempt == "delete":
                    await refused(ch.queue_delete(server_queue("d2")))
                else:
                    q = await ch.declare_queue(server_queue("d2"), passive=True)
                    await refused(q.purge())
                tried += 1
            # no posing as another server: the broker checks user_id
            ch = await conn.channel()
            submit = await ch.get_exchange(EX_SUBMIT, ensure=False)
            await refused(submit.publish(aio_pika.Message(b"<x/>", user_id=other), routing_key=""),
                          "PRECONDITION_FAILED")
            tried += 1
        finally:
            await conn.close()
        print(f"FAULTS-REPORT broker-users leaked-credential attempts={tried} refused={tried}")


def _status(reporter: str, about: envelope.DocumentMessage, code: str) -> bytes:
    return envelope.build(envelope.new_status(reporter, about, code, "forged?"))


_ids = iter(range(1_000_000))


async def _publish_as(url: str, user_id: str | None, body: bytes, headers: dict[str, Any]) -> None:
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        submit = await ch.get_exchange(EX_SUBMIT, ensure=False)
        await submit.publish(aio_pika.Message(body, headers=headers, user_id=user_id, message_id=f"m-{next(_ids)}"),
                             routing_key="", mandatory=True)
    finally:
        await conn.close()


async def test_status_origin_is_the_broker_user_not_the_header(tmp_path: Path, vhost_url: str) -> None:
    """Server d1's credentials cannot report for an agency on server sh, whatever header they write."""
    async with running_axis(tmp_path / "work", vhost_url) as env:
        doc = envelope.new_document(G22, [G01, H53], "Về việc thử")
        # really sent (a status is stored only from a recipient of a document its sender's server recorded)
        signed = env.pki.sign(envelope.build(doc), G22)
        assert (await env.client(G22).post("/v1/documents", content=signed,
                                           headers={"content-type": "application/xml"})).status_code == 202
        d1_url, d1_user = leaked(env, "d1")
        sh_url, sh_user = leaked(env, "sh")
        forged = _status(G01, doc, "03")  # G01 is on sh
        # 1. d1 claims to be sh in the header (its own broker user, as the broker requires)
        await _publish_as(d1_url, d1_user, forged, {H_KIND: KIND_STATUS, H_SERVER: "sh"})
        # 2. no user_id at all, only the header
        await _publish_as(d1_url, None, forged, {H_KIND: KIND_STATUS, H_SERVER: "sh"})
        # 3. a forward for an agency that never moved from d1
        await _publish_as(d1_url, d1_user, forged, {H_KIND: KIND_FORWARD, H_FORWARD_KIND: KIND_STATUS,
                                                    H_RECIPIENTS: [G22], H_SERVER: "sh"})
        got: list[Any] = []

        async def three_dead() -> bool:
            got.extend(await drain(env.amqp_url, Q_DEAD))
            return len(got) >= 3

        await wait_for(three_dead, 30, "three dead letters")
        dead = got
        assert [(m.headers or {}).get(H_REASON) for m in dead] == ["FORBIDDEN"] * 3
        assert {(m.headers or {}).get(H_SERVER) for m in dead} <= {"d1", ""}  # the authenticated origin
        await wait_for(lambda: len(env.counter.refused) >= 3, what="three refusals counted")  # axis.router.settle
        assert {r.reason for r in env.counter.refused.values()} == {"FORBIDDEN"} and len(env.counter.refused) == 3
        statuses = env.servers["d1"].metrics.statuses
        assert statuses.labels(G22, "03")._value.get() == 0  # nothing reached G22's server

        # control: the same status from sh's own user is genuine and arrives
        await _publish_as(sh_url, sh_user, forged, {H_KIND: KIND_STATUS})
        await wait_for(lambda: statuses.labels(G22, "03")._value.get() == 1, 20, "the genuine status")
        print("FAULTS-REPORT broker-users forged-statuses=3 refused=3 (FORBIDDEN) genuine=1 delivered=1")


async def test_a_host_link_bundles_its_servers_and_speaks_for_them_alone(tmp_path: Path, vhost_url: str) -> None:
    """Servers sh and d2 on their host's link (one connection as the host's user, endpoints.link), d1 on its own:
    documents and statuses of both servers travel in the host's bundles and arrive; the host's credentials cannot
    speak for d1 — not by naming it in an item, not by adding it to the list, not by its user_id — nor read its
    queue; and d1's credentials cannot borrow the host's list."""
    from axis.core.bundle import Item, pack
    from axis.core.wire import H_DOC_TYPE, H_HOST_SERVERS, KIND_STATUS_BUNDLE

    async with running_axis(tmp_path / "work", vhost_url, linked=True) as env:
        [link] = env.links
        assert sorted(link.server_ids) == ["d2", "sh"] and env.servers["d1"].link is None
        # traffic from both of the host's servers at once, to d1 (its 01s travel on d1's own connection) and across
        docs = [(G01, [G22, H53]), (H53, [G22, G03]), (G03, [H53]), (H53, [G01])] * 3
        deliveries = await deliver_all(env, docs)  # each accepted once, every delivery counted and in an inbox
        assert link.documents.messages < len(docs)  # several submissions of the two servers in one message

        host_user = brokerauth.host_user(["sh", "d2"])
        host_url = brokerauth.component_url(env.config, host_user)
        host_id = env.config.broker.user_prefix + host_user
        about = envelope.new_document(G22, [G01, H53], "Về việc thử")
        signed = env.pki.sign(envelope.build(about), G22)
        assert (await env.client(G22).post("/v1/documents", content=signed,
                                           headers={"content-type": "application/xml"})).status_code == 202
        forged = _status(G22, about, "03")  # G22 is on d1, not on the host
        genuine = _status(G01, about, "03")
        listed = ["d2", "sh"]
        # 1. an item naming d1, under the host's own (true) list
        await _publish_as(host_url, host_id, pack([Item(forged, {H_SERVER: "d1", H_DOC_TYPE: 0})]),
                          {H_KIND: KIND_STATUS_BUNDLE, H_HOST_SERVERS: listed})
        # 2. d1 added to the list: the list is no longer the one the host user's name commits to
        await _publish_as(host_url, host_id, forged, {H_KIND: KIND_STATUS, H_SERVER: "d1",
                                                      H_HOST_SERVERS: [*listed, "d1"]})
        # 3. d1's own credentials with the host's list, claiming sh per item
        d1_url, d1_user = leaked(env, "d1")
        await _publish_as(d1_url, d1_user, pack([Item(genuine, {H_SERVER: "sh", H_DOC_TYPE: 0})]),
                          {H_KIND: KIND_STATUS_BUNDLE, H_HOST_SERVERS: listed})
        got: list[Any] = []

        async def three_dead() -> bool:
            got.extend(await drain(env.amqp_url, Q_DEAD))
            return len(got) >= 3

        await wait_for(three_dead, 30, "three dead letters")
        assert [(m.headers or {}).get(H_REASON) for m in got] == ["FORBIDDEN"] * 3
        statuses = env.servers["d1"].metrics.statuses
        assert statuses.labels(G22, "03")._value.get() == 0  # nothing reached G22's server
        # 4. the host's user reads only its servers' queues, and cannot pose as d1's user
        conn = await aio_pika.connect(host_url)
        try:
            ch = await conn.channel()
            q = await ch.declare_queue(server_queue("d1"), passive=True)
            await refused(q.get(timeout=5))
            ch = await conn.channel()
            submit = await ch.get_exchange(EX_SUBMIT, ensure=False)
            await refused(submit.publish(aio_pika.Message(forged, user_id=d1_user), routing_key=""),
                          "PRECONDITION_FAILED")
        finally:
            await conn.close()
        # control: the host's genuine status for its own server sh arrives
        await _publish_as(host_url, host_id, pack([Item(genuine, {H_SERVER: "sh", H_DOC_TYPE: 0})]),
                          {H_KIND: KIND_STATUS_BUNDLE, H_HOST_SERVERS: listed})
        await wait_for(lambda: statuses.labels(G22, "03")._value.get() == 1, 20, "the genuine status")
        print(f"FAULTS-REPORT host-link documents={len(docs)} messages={link.documents.messages} "
              f"deliveries={deliveries} forged=3 refused=3 (FORBIDDEN) genuine=1 delivered=1")
