"""The host link (endpoints.link) with shared broker users (development mode): one connection per host, its servers'
submissions and statuses bundled, the router trusting the headers as it does there — end to end against RabbitMQ;
and the list of a host's servers at the largest size a message's headers take. With per-component users (what
`axis up` runs) the link is tested in tests/faults/test_broker_users.py."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aio_pika
import pytest

from axis.broker.transport import Publisher, declare_topology
from axis.config import generate_workdir, load_config
from axis.config.model import BROKER_AUTH_SHARED
from axis.core.wire import EX_SUBMIT, H_HOST_SERVERS, H_KIND, Q_SUBMISSIONS, Outgoing
from endpoints.link import HOST_LIST_BYTES, HostLink, list_fits
from tests.faults.harness import G01, G03, G22, H53, deliver_all, running_axis


def _ids(count: int, length: int) -> list[str]:
    return [f"{i:05d}-" + "x" * (length - 6) for i in range(count)]


@pytest.mark.rabbitmq
async def test_a_link_with_shared_users_bundles_and_delivers(tmp_path: Path, vhost_url: str) -> None:
    async with running_axis(tmp_path / "work", vhost_url, linked=True, broker_auth=BROKER_AUTH_SHARED) as env:
        assert not env.config.broker.per_component
        assert sorted(sorted(link.server_ids) for link in env.links) == [["d1"], ["d2", "sh"]]
        assert all(link.publisher.user_id is None for link in env.links)  # no broker user to name
        await deliver_all(env, [(G01, [G22, H53]), (H53, [G22, G03]), (G03, [H53]), (G22, [G01])] * 3)
        [host] = [link for link in env.links if len(link.server_ids) == 2]
        assert 0 < host.documents.messages < 9  # sh's and d2's 9 submissions in fewer messages


async def test_a_list_too_long_for_the_headers_gets_no_link(tmp_path: Path) -> None:
    """Hundreds of servers with long ids (RabbitMQ allows a queue name, so an id, of ~240 bytes): their list would
    not fit a message's headers, so the host has no link — it does not try to connect (the broker here is
    unreachable) and its servers connect each as themselves."""
    longest = _ids(HOST_LIST_BYTES // 245, 240)
    assert list_fits(longest) and not list_fits([*longest, "x" * 240])
    assert not list_fits(_ids(1001, 8))  # more ids than a header list may hold, however short
    path, _ = generate_workdir(tmp_path, [(G01, "A", "sh")], [("sh", "shared")], tls=False,
                               amqp_url="amqp://guest:guest@127.0.0.1:1/", broker_auth=BROKER_AUTH_SHARED)
    config = load_config(path)
    assert await asyncio.wait_for(HostLink.open(config, [*longest, "x" * 240]), 5) is None
    users = dataclasses.replace(config, broker=dataclasses.replace(config.broker, auth="users"))
    assert await asyncio.wait_for(HostLink.open(users, [*longest, "x" * 240]), 5) is None


@pytest.mark.rabbitmq
async def test_the_longest_list_that_fits_crosses_the_broker_whole(vhost_url: str) -> None:
    """A message of the link with the longest list that fits, beside a header of 300 more values: published,
    confirmed and consumed with the list intact — no frame too large, nothing cut."""
    longest = _ids(HOST_LIST_BYTES // 245, 240)
    assert list_fits(longest)
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchanges = await declare_topology(channel)
        publisher = Publisher(exchanges, headers={H_HOST_SERVERS: longest})
        await publisher.publish(Outgoing(EX_SUBMIT, "", b"AXB1", {H_KIND: "status-bundle",
                                                                  "x-axis-unknown": _ids(300, 40)}))
        queue = await channel.declare_queue(Q_SUBMISSIONS, passive=True)
        message = await queue.get(timeout=10, no_ack=True)
        assert message is not None
        assert list((message.headers or {})[H_HOST_SERVERS]) == longest
    finally:
        await connection.close()
