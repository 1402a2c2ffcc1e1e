"""AMQPS with certificate-authenticated components (issue 18 item 3, contract section 6), against a RabbitMQ node
of its own whose only AMQP listener is the TLS one that ``axis pki rabbitmq-conf`` describes
(:func:`axis.broker.tlsconf.rabbitmq_tls_conf`): a whole ``axis up`` works over it, every component on its own
least-privilege user named by its certificate; no certificate (or a foreign one, or a password) gets no
connection; a leaked endpoint-server certificate has only that server's rights; plain AMQP is off.

Runs in CI (marked ``rabbitmq``, not ``faults``): the private node costs ~15 s to start, once per module."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx
import pytest
import yaml
from aio_pika.connection import make_url
from aiormq.exceptions import AMQPConnectionError, ChannelAccessRefused

from axis.broker.tlsconf import EXTERNAL_AUTH_PLUGIN, rabbitmq_tls_conf
from axis.broker.users import ROUTER_USER, default_host_groups, host_user, server_user
from axis.client import Client
from axis.config import generate_workdir, load_config
from axis.core import envelope
from axis.core import pki as pkimod
from axis.core.wire import EX_DELIVER, EX_SUBMIT, server_queue
from axis.ops.up import start
from tests.faults.cluster import Cluster, Node, rabbit_available
from tests.integration.conftest import AGENCIES, G01, G22, H53, SERVERS
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


class TlsNode:
    """The private broker, the axis work directory whose CA it trusts, and that axis's configuration."""

    def __init__(self, node: Cluster, work: Path, config_path: Path, known: dict[str, Any]) -> None:
        self.cluster = node
        self.work = work
        self.config_path = config_path
        self.known = known

    @property
    def node(self) -> Node:
        return self.cluster.nodes[0]

    @property
    def mgmt(self) -> str:
        return self.cluster.mgmt_url(self.node)

    def url(self, user: str, certs: Path | None, *, ca: Path | None = None, auth: str = "external",
            password: str = "") -> str:
        """An amqps:// URL to the node as ``user`` with the key and certificate in ``certs`` (none: no client
        certificate) — what a component's :func:`axis.broker.users.tls_url` builds, or a forgery of it."""
        query = {"auth": auth, "cafile": str(ca or self.work / "pki" / "ca.cert.pem")}
        if certs is not None:
            query |= {"certfile": str(certs / "cert.pem"), "keyfile": str(certs / "key.pem")}
        cred = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"amqps://{cred}@127.0.0.1:{self.node.amqp_port}/?" + "&".join(f"{k}={quote(v)}" for k, v in
                                                                               query.items())


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    if not rabbit_available():
        pytest.skip("RabbitMQ server binaries not found (AXIS_RABBIT_BIN)")
    root = tmp_path_factory.mktemp("amqps")
    base = free_port_block(len(SERVERS) + 1)
    work = root / "work"
    # the axis first: its CA and server certificate are what the broker presents and trusts
    path, known = generate_workdir(work, AGENCIES, SERVERS, base_port=base + 1, admin_port=base)
    pki = work / "pki"
    port_base = int(os.environ.get("AXIS_AMQPS_PORT_BASE", "5791"))
    cluster = Cluster(root / "node", size=1, port_base=port_base, prefix="axis-tls", plugins=[EXTERNAL_AUTH_PLUGIN],
                      listeners=lambda n: rabbitmq_tls_conf(ca=pki / "ca.cert.pem", cert=pki / "tls/server/cert.pem",
                                                            key=pki / "tls/server/key.pem", port=n.amqp_port))
    try:
        cluster.start()
    except Exception:
        cluster.destroy()
        raise
    raw = yaml.safe_load(path.read_text())
    raw["amqp_url"] = f"amqps://guest@127.0.0.1:{cluster.nodes[0].amqp_port}/"
    raw["broker"] = {**raw.get("broker", {}), "tls": True, "management_url": cluster.mgmt_url(cluster.nodes[0])}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        yield TlsNode(cluster, work, path, known)
    finally:
        cluster.destroy()


def test_the_broker_speaks_only_amqps(tls_node: TlsNode) -> None:
    """Plain AMQP is switched off: the node's only AMQP listener is TLS."""
    overview = httpx.get(f"{tls_node.mgmt}/api/overview", auth=("guest", "guest"), timeout=10).json()
    amqp = sorted(x["protocol"] for x in overview["listeners"] if x["protocol"].startswith("amqp"))
    assert amqp == ["amqp/ssl"]


def test_axis_up_over_amqps(tls_node: TlsNode, tmp_path: Path) -> None:
    run = start(tls_node.config_path, tls_node.work, tls_node.known, routers=1, servers_per_host=2)
    try:
        config = load_config(tls_node.config_path)
        # only axis-admin keeps a password (the management API knows no certificates); no component has one
        users_file = json.loads(config.broker.users_file.read_text())["users"]
        assert set(users_file) == {"axis-admin"}
        conn = json.loads(run.connections_path.read_text())
        by = {a["code"]: a for a in conn["agencies"]}
        doc = envelope.build(envelope.new_document(G22, [H53, G01], "Qua AMQPS"))
        with Client(by[G22]["endpoint"], by[G22]["token"], ca=conn["ca"]) as sender:
            sub = sender.submit(doc)
        for code in (H53, G01):
            with Client(by[code]["endpoint"], by[code]["token"], ca=conn["ca"]) as c:
                deadline = time.monotonic() + 30
                while not (items := c.inbox()) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert [i["document_id"] for i in items] == [sub["document_id"]]
        # every component is on AMQPS, authenticated by EXTERNAL as the user its certificate names: a host process
        # of two servers as its host user (endpoints.link), a host of one as that server's user
        groups = default_host_groups(config, servers_per_host=2)
        assert sorted(len(g) for g in groups) == [1, 2]
        expected = {"axis-router", "axis-evidence",
                    *(host_user(g) if len(g) > 1 else server_user(g[0]) for g in groups)}
        deadline = time.monotonic() + 30
        while True:
            conns = httpx.get(f"{tls_node.mgmt}/api/connections", auth=("guest", "guest"), timeout=10).json()
            components = [c for c in conns if c["user"] != "guest"]
            if expected <= {c["user"] for c in components} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # (the admin app connects as axis-admin when it has something to publish or read)
        assert expected <= {c["user"] for c in components} <= expected | {"axis-admin"}
        assert all(c["ssl"] and c["auth_mechanism"] == "EXTERNAL" for c in components), components
        assert {c["ssl_protocol"] for c in components} <= {"tlsv1.3", "tlsv1.2"}
    finally:
        run.stop()


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


async def _connect(url: str) -> aio_pika.abc.AbstractConnection:
    """``aio_pika.connect``, closing the connection object itself when the broker refuses it: aio-pika's own
    ``__del__`` would schedule that close from the garbage collector, where no loop runs ("coroutine
    'Connection.close' was never awaited")."""
    connection = aio_pika.Connection(make_url(url))
    try:
        await connection.connect(timeout=10)
    except BaseException:
        await connection.close()
        raise
    return connection


async def test_no_valid_certificate_no_connection(tls_node: TlsNode, tmp_path: Path) -> None:
    certs = tls_node.work / "pki" / "tls" / "broker"
    # a client certificate from another CA, with the router's name in its CN
    other = pkimod.CertificateAuthority.init(tmp_path / "other-ca")
    rogue = pkimod.issue_broker_certificates(other.dir, ["axis-router"])[0]
    attempts = {
        "no certificate": tls_node.url(ROUTER_USER, None),
        "a certificate of another CA": tls_node.url(ROUTER_USER, rogue.cert_path.parent),
        "a password instead of EXTERNAL": tls_node.url("guest", certs / "guest", auth="plain", password="guest"),
    }
    if not (certs / "guest").is_dir():  # when this test runs alone: the provisioning account's own certificate
        pkimod.issue_broker_certificates(tls_node.work / "pki", ["guest"])
    for what, url in attempts.items():
        with pytest.raises((AMQPConnectionError, ConnectionError, ssl.SSLError, OSError, asyncio.TimeoutError)):
            conn = await _connect(url)
            await conn.close()
            pytest.fail(f"connected with {what}")
    # and plain AMQP to the TLS port gets no broker either
    with pytest.raises((AMQPConnectionError, ConnectionError, OSError, asyncio.TimeoutError)):
        await _connect(f"amqp://guest:guest@127.0.0.1:{tls_node.node.amqp_port}/")


async def test_a_leaked_server_certificate_has_only_that_servers_rights(tls_node: TlsNode) -> None:
    from axis.broker.setup import prepare_broker

    config = load_config(tls_node.config_path)
    await prepare_broker(config)  # users, topology and certificates, as `axis up` does
    leaked = config.broker.certs_dir / server_user("d1")  # type: ignore[operator]
    conn = await _connect(tls_node.url(server_user("d1"), leaked))
    try:
        # its own queue: yes
        channel = await conn.channel()
        await channel.get_queue(server_queue("d1"), ensure=True)
        await channel.close()
        # another server's documents: no
        channel = await conn.channel()
        queue = await channel.get_queue(server_queue("d2"), ensure=False)
        with pytest.raises(ChannelAccessRefused):
            await queue.consume(_ignore)
        # delivering around the router: no
        channel = await conn.channel(publisher_confirms=True)
        deliver = await channel.get_exchange(EX_DELIVER, ensure=False)
        with pytest.raises(ChannelAccessRefused):
            await deliver.publish(aio_pika.Message(b"x"), routing_key="d2")
        # declaring anything: no
        channel = await conn.channel()
        with pytest.raises(ChannelAccessRefused):
            await channel.declare_queue("rogue", durable=True)
        # submitting (what a server does): yes
        channel = await conn.channel(publisher_confirms=True)
        submit = await channel.get_exchange(EX_SUBMIT, ensure=False)
        await submit.publish(aio_pika.Message(b"not an envelope", user_id=server_user("d1")), routing_key="")
    finally:
        await conn.close()
