"""Uncollected documents and reminders on a running axis (`axis up` processes, the real RabbitMQ): documents
delivered and not acked show in GET /admin/uncollected; the admin app's scheduler e-mails the agency a digest over
STARTTLS (an in-process aiosmtpd server) and calls its webhook (a real HTTP receiver checking the signature), once
per document; an ack takes the document off the list."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from axis.client import Client
from axis.config import generate_workdir
from axis.core import envelope
from axis.core.reminders import verify_webhook
from axis.core.tlsconfig import client_context
from axis.ops.up import start
from tests.integration.conftest import AGENCIES, G22, H53, SERVERS
from tests.stats.stats_live import serve
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
SECRET = "reminder webhook key"


class Box:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg, session.ssl is not None))
        return "250 OK"


def test_reminders_on_a_running_axis(tmp_path: Path, vhost_url: str) -> None:
    base = free_port_block(len(SERVERS) + 1)
    work = tmp_path / "work"
    path, known = generate_workdir(work, AGENCIES, SERVERS, base_port=base + 1, admin_port=base, amqp_url=vhost_url)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(work / "pki/tls/server/cert.pem", work / "pki/tls/server/key.pem")
    box = Box()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        smtp_port = s.getsockname()[1]
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port, tls_context=context, require_starttls=True)
    smtp.start()
    calls: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: Request) -> Response:
        calls.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    try:
        with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
            (work / "hook.key").write_text(SECRET)
            raw = yaml.safe_load(path.read_text())
            raw["reminders"] = {"after": "1s", "period": "1h", "interval": "1s",
                                "smtp": {"host": "127.0.0.1", "port": smtp_port, "from": "axis@axis.example",
                                         "ca": "pki/ca.cert.pem"},
                                "webhook": {"secret_file": "hook.key"},
                                "contacts": {H53: {"email": ["van-thu@h53.example"], "webhook": receiver + "/hook"}}}
            path.write_text(yaml.safe_dump(raw, allow_unicode=True))
            run = start(path, work, known, routers=1, servers_per_host=3)
            try:
                conn = orjson.loads((work / "connections.json").read_bytes())
                with Client.from_connections(conn, G22) as c:
                    ids = [c.submit(envelope.build(envelope.new_document(G22, [H53], f"nhắc {i}")))["document_id"]
                           for i in range(2)]
                admin = httpx.Client(base_url=conn["admin"]["url"], verify=client_context(conn["ca"]),
                                     headers={"Authorization": f"Bearer {conn['admin']['token']}"}, trust_env=False,
                                     timeout=30)
                deadline = time.monotonic() + 60
                while True:  # delivered, not acked: on the list; then reminded by both channels
                    items = admin.get("/admin/uncollected").json()["items"]
                    mailed = {d for _, m, _ in box.messages for d in ids if d in m.get_content()}
                    hooked = {i["document_id"] for _, body in calls for i in orjson.loads(body)["items"]}
                    if len(items) == 2 and mailed == set(ids) and hooked == set(ids):
                        break
                    assert time.monotonic() < deadline, (items, mailed, hooked)
                    time.sleep(0.5)
                assert sorted(i["document_id"] for i in items) == sorted(ids)
                assert {(i["recipient"], i["sender"], i["server"]) for i in items} == {(H53, G22, "d2")}
                assert all(tls for _, _, tls in box.messages)
                assert all(rcpt == ["van-thu@h53.example"] for rcpt, _, _ in box.messages)
                for headers, body in calls:
                    assert verify_webhook(SECRET.encode(), headers["x-axis-timestamp"], body,
                                          headers["x-axis-signature"], now=time.time())
                # once per document and period: more rounds send nothing more
                sent_mail, sent_hooks = len(box.messages), len(calls)
                time.sleep(3)
                assert (len(box.messages), len(calls)) == (sent_mail, sent_hooks)
                status = admin.get("/admin/reminders").json()
                assert status["enabled"] and status["last_round"]["waiting"] == 2
                metrics = admin.get("/metrics").text
                assert 'axis_reminded_documents_total{channel="email"} 2.0' in metrics
                # an ack takes the document off the list
                with Client.from_connections(conn, H53) as c:
                    first = next(i for i in c.inbox() if i["document_id"] == ids[0])
                    c.ack(first["id"])
                left = admin.get("/admin/uncollected").json()["items"]
                assert [i["document_id"] for i in left] == [ids[1]]
                admin.close()
            finally:
                run.stop()
    finally:
        smtp.stop()
