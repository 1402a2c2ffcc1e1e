"""Uncollected documents and their reminders against real servers: an in-process SMTP server with STARTTLS
(aiosmtpd, its certificate from the axis CA), a real HTTP receiver (uvicorn on 127.0.0.1) that checks the
signature, and the endpoint servers' real inbox stores (SQLite files named by config.yaml)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from axis.admin.app import AdminSettings, create_app
from axis.admin.reminders import ReminderScheduler
from axis.admin.uncollected import UncollectedApi
from axis.config import generate_workdir, load_config
from axis.core.reminders import verify_webhook
from endpoints.inbox import open_inbox
from tests.stats.stats_live import serve

A, B, C, S = "000.00.00.H01", "000.00.00.H02", "000.00.00.H03", "000.00.00.G22"
H = 3600.0
SECRET = "webhook-key-for-tests"


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], email.message.EmailMessage, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg, session.ssl is not None))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp(work: Path) -> Iterator[tuple[int, Mailbox]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(work / "pki/tls/server/cert.pem", work / "pki/tls/server/key.pem")
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


@dataclass
class Receiver:
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 0
    status: int = 204


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    rec = Receiver()

    async def hook(request: Request) -> Response:
        rec.calls.append((dict(request.headers), await request.body()))
        if len(rec.calls) <= rec.fail_first:
            return Response(status_code=503)
        return Response(status_code=rec.status)

    with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        yield url + "/hook", rec


@pytest.fixture
def work(tmp_path: Path) -> Path:
    generate_workdir(tmp_path, [(A, "UBND tỉnh A", "s1"), (B, "UBND tỉnh B", "sh"), (C, "C", "sh"), (S, "G22", "sh")],
                     [("s1", "dedicated"), ("sh", "shared")])
    return tmp_path


NOW = time.time()


def inbox_row(n: int, agency: str, age: float, acked: bool = False) -> dict[str, Any]:
    return {"id": f"{n:032x}", "agency": agency, "sender": S, "document_id": f"doc-{n}", "doc_type": 0,
            "related_document_id": None, "kind": "document", "subject": "secret subject", "size": 8,
            "data": b"<edXML/>", "received_at": NOW - age, "acked_at": NOW if acked else None}


@pytest.fixture
async def filled(work: Path, smtp: tuple[int, Mailbox], receiver: tuple[str, Receiver]) -> AsyncIterator[Path]:
    config_path = work / "config.yaml"
    config = load_config(config_path)
    rows = {"s1": [inbox_row(1, A, 30 * H), inbox_row(2, A, 2 * H)],
            "sh": [inbox_row(3, B, 26 * H), inbox_row(4, B, 25 * H, acked=True), inbox_row(5, C, 40 * H)]}
    for sid, items in rows.items():
        store = await open_inbox(config.server(sid).inbox_url)
        await store.insert_rows("axis_received", items)
        await store.close()
    (work / "hook.key").write_text(SECRET)
    raw = yaml.safe_load(config_path.read_text())
    raw["reminders"] = {
        "after": "24h", "interval": "1h",
        "smtp": {"host": "127.0.0.1", "port": smtp[0], "from": "axis@axis.example", "ca": "pki/ca.cert.pem",
                 "timeout": 10},
        "webhook": {"secret_file": "hook.key", "retries": 3, "backoff": 1},
        "contacts": {A: {"email": ["van-thu@h01.example"], "webhook": receiver[0]},
                     B: {"email": "van-thu@h02.example"}},
    }
    config_path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    yield config_path


def scheduler(config_path: Path, slept: list[float]) -> ReminderScheduler:
    settings = AdminSettings.from_config(load_config(config_path))
    uncollected = UncollectedApi.for_settings(settings)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    s = ReminderScheduler.for_settings(settings, uncollected)
    s.sleep = sleep
    return s


async def test_reminders_by_email_and_webhook_once_per_period(filled: Path, smtp: tuple[int, Mailbox],
                                                              receiver: tuple[str, Receiver]) -> None:
    _, box = smtp
    _url, rec = receiver
    rec.fail_first = 2  # the receiver is down twice: retried with back-off
    slept: list[float] = []
    first = scheduler(filled, slept)
    try:
        report = await first.run_once(NOW)
        assert report["waiting"] == 3  # doc-1 (A), doc-3 (B), doc-5 (C: no contact); doc-2 too young, doc-4 acked
        assert report["sent"] == {"email": 2, "webhook": 1} and report["failed"] == []
        assert report["documents"] == {"email": 2, "webhook": 1}
    finally:
        await first.stop()
    # e-mail: over STARTTLS, one digest per agency, its documents only, no subject of a document
    assert len(box.messages) == 2
    by_to = {tuple(rcpt): (sender, msg, tls) for sender, rcpt, msg, tls in box.messages}
    sender, msg, tls = by_to[("van-thu@h01.example",)]
    assert tls and sender == "axis@axis.example"
    assert msg["Subject"] == f"[axis] 1 văn bản chưa nhận / 1 document waiting to be collected by {A}"
    assert msg["X-Axis-Agency"] == A
    text = msg.get_content()
    assert "UBND tỉnh A" in text and "doc-1" in text and "doc-2" not in text and "secret subject" not in text
    assert f"id {1:032x}" in text and "(waiting 1 d 6 h)" in text
    assert "doc-3" in by_to[("van-thu@h02.example",)][1].get_content()
    # webhook: three attempts, back-off 1 s then 2 s, each signed over its own timestamp
    assert len(rec.calls) == 3 and slept == [1.0, 2.0]
    headers, body = rec.calls[-1]
    assert headers["x-axis-event"] == "axis.uncollected"
    assert verify_webhook(SECRET.encode(), headers["x-axis-timestamp"], body, headers["x-axis-signature"],
                          now=time.time())
    assert not verify_webhook(b"another key", headers["x-axis-timestamp"], body, headers["x-axis-signature"],
                              now=time.time())
    data = orjson.loads(body)
    assert data["agency"] == A and [i["document_id"] for i in data["items"]] == ["doc-1"]

    # the same period, after a restart (a new scheduler on the same state file): nothing again
    again = scheduler(filled, slept)
    try:
        assert (await again.run_once(NOW + 2 * H))["sent"] == {"email": 0, "webhook": 0}
        assert len(box.messages) == 2 and len(rec.calls) == 3
        # a day later: doc-1 and doc-3 are in their next period, doc-2 is now waiting too
        report = await again.run_once(NOW + 23 * H)
        assert report["sent"] == {"email": 2, "webhook": 1}
        assert report["documents"] == {"email": 3, "webhook": 2}
        texts = [m.get_content() for _, rcpt, m, _ in box.messages[2:] if rcpt == ["van-thu@h01.example"]]
        assert len(texts) == 1 and "doc-1" in texts[0] and "doc-2" in texts[0]
    finally:
        await again.stop()


async def test_a_refused_webhook_is_tried_again_next_round(filled: Path, receiver: tuple[str, Receiver]) -> None:
    _url, rec = receiver
    rec.status = 400  # refused: final for the round (no retry), not recorded
    slept: list[float] = []
    s = scheduler(filled, slept)
    try:
        report = await s.run_once(NOW)
        assert report["sent"]["webhook"] == 0 and slept == []
        assert report["failed"] == [{"agency": A, "channel": "webhook", "error": "HTTP 400"}]
        assert len(rec.calls) == 1
        rec.status = 204
        report = await s.run_once(NOW + 60)
        assert report["sent"] == {"email": 0, "webhook": 1}  # the e-mails went out in the first round
        assert len(rec.calls) == 2
        registry = CollectorRegistry()
        s.register_metrics(registry)
        assert s.gauges is not None
        s.gauges.register_metrics(registry)
        text = generate_latest(registry).decode()
        assert 'axis_reminders_failed_total{channel="webhook"} 1.0' in text
        assert 'axis_reminders_sent_total{channel="email"} 2.0' in text
        assert 'axis_uncollected_documents{after_seconds="86400"} 3.0' in text
    finally:
        await s.stop()


async def test_smtp_without_starttls_is_refused(filled: Path) -> None:
    box = Mailbox()
    port = free_port()
    plain = Controller(box, hostname="127.0.0.1", port=port)  # offers no STARTTLS
    plain.start()
    try:
        raw = yaml.safe_load(filled.read_text())
        raw["reminders"]["smtp"]["port"] = port
        raw["reminders"]["contacts"] = {B: {"email": ["van-thu@h02.example"]}}
        filled.write_text(yaml.safe_dump(raw))
        s = scheduler(filled, [])
        try:
            report = await s.run_once(NOW)
        finally:
            await s.stop()
        assert report["sent"]["email"] == 0 and "STARTTLS" in report["failed"][0]["error"]
        assert box.messages == []  # nothing went out in clear
    finally:
        plain.stop()


async def test_admin_uncollected_route(filled: Path) -> None:
    settings = AdminSettings.from_config(load_config(filled), token="t", token_sha256="")
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin",
                                 headers={"Authorization": "Bearer t"}) as c:
        r = await c.get("/admin/uncollected")
        assert r.status_code == 200
        body = r.json()
        assert [i["document_id"] for i in body["items"]] == ["doc-5", "doc-1", "doc-3", "doc-2"]
        assert body["next_offset"] is None
        assert body["items"][1] == {"id": f"{1:032x}", "document_id": "doc-1", "sender": S, "recipient": A,
                                    "received_at": body["items"][1]["received_at"], "server": "s1"}
        r = await c.get("/admin/uncollected", params={"older_than": 24 * H})
        assert [i["document_id"] for i in r.json()["items"]] == ["doc-5", "doc-1", "doc-3"]
        r = await c.get("/admin/uncollected", params={"limit": 2})
        assert [i["document_id"] for i in r.json()["items"]] == ["doc-5", "doc-1"] and r.json()["next_offset"] == 2
        r = await c.get("/admin/uncollected", params={"limit": 2, "offset": 2})
        assert [i["document_id"] for i in r.json()["items"]] == ["doc-3", "doc-2"] and r.json()["next_offset"] is None
        r = await c.get("/admin/uncollected", params={"agency": B})
        assert [i["document_id"] for i in r.json()["items"]] == ["doc-3"]
        r = await c.get("/admin/uncollected", params={"server": "sh"})
        assert [i["document_id"] for i in r.json()["items"]] == ["doc-5", "doc-3"]
        r = await c.get("/admin/uncollected", params={"older_than": "-5"})
        assert r.status_code == 400 and r.json()["reason"] == "SCHEMA_INVALID"
        assert (await c.get("/admin/reminders")).json()["enabled"] is True
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as anonymous:
        assert (await anonymous.get("/admin/uncollected")).status_code == 401


async def test_without_reminders_the_gauges_still_follow(filled: Path) -> None:
    raw = yaml.safe_load(filled.read_text())
    del raw["reminders"]
    filled.write_text(yaml.safe_dump(raw, allow_unicode=True))
    s = scheduler(filled, [])
    assert not s.enabled and s.gauges is not None
    await s.start()
    try:
        for _ in range(300):  # 15 s: the first scan opens every store, slow on a loaded machine
            if s.gauges.last_count is not None:
                break
            await asyncio.sleep(0.05)
        count, oldest, after = s.gauges.last_count or (None, None, None)
        assert (count, after) == (3, 86400.0) and oldest == pytest.approx(40 * H, abs=120)
        assert (await s.run_once())["enabled"] is False
    finally:
        await s.stop()


async def test_a_changed_configuration_is_followed(filled: Path, smtp: tuple[int, Mailbox]) -> None:
    """Contacts added to config.yaml are used at the next round; a server added is listed by the route."""
    _, box = smtp
    s = scheduler(filled, [])
    try:
        assert (await s.run_once(NOW))["sent"]["email"] == 2
        raw = yaml.safe_load(filled.read_text())
        raw["reminders"]["contacts"][C] = {"email": ["c@h03.example"]}
        raw["servers"].append({"id": "s9", "kind": "dedicated", "port": free_port(),
                               "inbox_url": "sqlite+aiosqlite:///inbox-s9.db"})
        raw["agencies"].append({"code": "000.00.00.H09", "name": "H09", "server": "s9"})
        filled.write_text(yaml.safe_dump(raw, allow_unicode=True))
        store = await open_inbox(f"sqlite+aiosqlite:///{filled.parent / 'inbox-s9.db'}")
        await store.insert_rows("axis_received", [inbox_row(9, "000.00.00.H09", 50 * H)])
        await store.close()
        report = await s.run_once(NOW + 60)
        assert report["sent"]["email"] == 1 and report["waiting"] == 4
        assert box.messages[-1][1] == ["c@h03.example"] and "doc-5" in box.messages[-1][2].get_content()
        assert s.gauges is not None
        source = await s.gauges.current()
        assert source is not None and "s9" in {sid for ids in source.stores.values() for sid in ids}
    finally:
        await s.stop()


def test_cli_uncollected_and_reminders(filled: Path, smtp: tuple[int, Mailbox]) -> None:
    from typer.testing import CliRunner

    from axis.cli import app as cli

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.stdout + result.stderr

    settings = AdminSettings.from_config(load_config(filled), token="t", token_sha256="")
    with serve(create_app(settings)) as url:
        code, out = run("uncollected", "--admin", url, "--token", "t", "--older-than", "1d", "--json")
        assert code == 0, out
        assert [i["document_id"] for i in orjson.loads(out)["items"]] == ["doc-5", "doc-1", "doc-3"]
        code, out = run("uncollected", "--admin", url, "--token", "t", "--agency", A, "--limit", "1")
        assert code == 0 and "doc-1" in out and "doc-2" not in out and "--offset 1" in out
        code, out = run("reminders", "--admin", url, "--token", "t", "--run", "--json")
        # the admin app's own first round (at its start) may have sent them already: never twice
        assert code == 0 and orjson.loads(out)["waiting"] == 3 and len(smtp[1].messages) == 2
        code, out = run("reminders", "--admin", url, "--token", "t")
        assert code == 0 and "digests sent" in out and "2 agencies with a" in out and "3 waiting" in out
        assert run("uncollected", "--admin", url, "--token", "wrong", "--json")[0] == 1
        assert run("uncollected", "--admin", url, "--token", "t", "--older-than", "soon")[0] == 2
