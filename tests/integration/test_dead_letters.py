"""Dead letters against the real RabbitMQ (issue 14 item 1): a refused document is listed with its reason;
resent after the cause is fixed (the directory entry added) it is delivered; discarded it is gone; both actions
leave an `admin` leaf for the evidence log and are counted. The admin app's user is the least-privilege
``axis-admin`` (broker.auth: users), as under `axis up`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest

from axis.admin.deadletters import DeadLetterApi
from axis.broker.users import ADMIN_USER, component_url
from axis.config import Config
from axis.core.directory import Directory
from axis.core.evidence import Event
from axis.core.wire import Q_DEAD, Q_EVIDENCE, read_events
from tests.integration.conftest import G01, G22, H41, H53, Axis, wait_for
from tests.integration.test_flow import inbox, unsigned

pytestmark = pytest.mark.rabbitmq
XML = {"content-type": "application/xml"}
G99 = "000.00.00.G99"


def without(config: Config, code: str) -> Config:
    d = config.directory
    return dataclasses.replace(config, directory=Directory(d.servers.values(),
                                                           [a for c, a in d.agencies.items() if c != code]))


@pytest.fixture
async def admin(axis_env: Axis) -> AsyncIterator[tuple[DeadLetterApi, httpx.AsyncClient]]:
    api = DeadLetterApi.for_config(component_url(axis_env.config, ADMIN_USER), axis_env.config,
                                   scan_seconds=0.2)
    app = FastAPI()
    api.install(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
        yield api, client
    await api.stop()


async def listed(client: httpx.AsyncClient, n: int, **params: str) -> list[dict]:  # type: ignore[type-arg]
    async def check() -> list[dict] | None:  # type: ignore[type-arg]
        r = await client.get("/admin/dead-letters", params=params)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        return items if len(items) >= n else None

    return await wait_for(check, what=f"{n} dead letters")


async def admin_events(env: Axis) -> list[Event]:
    """The `admin` events published for the log writer (no log writer runs here: read its queue)."""
    conn = await aio_pika.connect(env.config.amqp_url)
    out: list[Event] = []
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(Q_EVIDENCE, passive=True)
        while (m := await q.get(fail=False)) is not None:
            out += [e for e in read_events(m.body) if e.type == "admin"]
            # left unacked: they return to the queue with the channel
    finally:
        await conn.close()
    return out


async def queue_depth(env: Axis) -> int:
    conn = await aio_pika.connect(env.config.amqp_url)
    try:
        q = await (await conn.channel()).declare_queue(Q_DEAD, passive=True)
        return int(q.declaration_result.message_count or 0)
    finally:
        await conn.close()


async def test_refused_document_is_listed_and_resent_after_the_directory_is_fixed(
        axis_env: Axis, admin: tuple[DeadLetterApi, httpx.AsyncClient]) -> None:
    env = axis_env
    api, client = admin
    await env.router.reload(without(env.config, H41))  # the router does not know H41 yet
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [H41], subject="to H41"), headers=XML)
    assert r.status_code == 202, r.text
    document_id = r.json()["document_id"]

    [item] = await listed(client, 1)
    assert (item["reason"], item["sender"], item["document_id"], item["server"], item["source"]) == (
        "UNKNOWN_RECIPIENT", G22, document_id, "d1", "router")
    assert H41 in item["detail"] and item["at"].endswith("Z") and item["kind"] == "document"
    # filters
    assert (await client.get("/admin/dead-letters", params={"sender": H53})).json()["items"] == []
    assert [i["id"] for i in (await client.get("/admin/dead-letters", params={"server": "d1"})).json()["items"]] \
        == [item["id"]]
    assert (await client.get("/admin/dead-letters", params={"reason": "CERT_REVOKED"})).json()["total"] == 0
    # headers, then the bytes exactly as refused
    shown = (await client.get(f"/admin/dead-letters/{item['id']}")).json()
    assert shown["headers"]["x-axis-reason"] == "UNKNOWN_RECIPIENT" and shown["id"] == item["id"]
    raw = await client.get(f"/admin/dead-letters/{item['id']}/bytes")
    assert raw.status_code == 200 and hashlib.sha256(raw.content).hexdigest() == item["sha256"]
    assert H41.encode() in raw.content and document_id.encode() in raw.content
    # listing and showing kept it: still one dead letter in the queue, the same id
    assert await queue_depth(env) == 1
    assert [i["id"] for i in await listed(client, 1)] == [item["id"]]

    await env.router.reload(env.config)  # the directory entry is added
    r = await client.post(f"/admin/dead-letters/{item['id']}/resend", json={"admin": "ops on duty"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["action"], done["admin"], done["sender"], done["document_id"], done["copies"]) == (
        "resend", "ops on duty", G22, document_id, 1)
    delivered = await wait_for(lambda: inbox(env, H41), what="the resent document in H41's inbox")
    assert [d["document_id"] for d in delivered] == [document_id]
    empty = (await client.get("/admin/dead-letters")).json()
    assert (empty["items"], empty["next_offset"], empty["total"]) == ([], None, 0) and empty["scanned_at"]
    assert (await client.post(f"/admin/dead-letters/{item['id']}/resend")).status_code == 404

    [event] = await wait_for(lambda: admin_events(env), what="the admin event")
    assert (event.action, event.admin, event.sender, event.document_id, event.reason) == (
        "resend", "ops on duty", G22, document_id, "UNKNOWN_RECIPIENT")
    assert event.sha256 == item["sha256"]
    registry = CollectorRegistry()
    api.register_metrics(registry)
    text = generate_latest(registry).decode()
    assert 'axis_dead_letter_actions_total{action="resend"} 1.0' in text
    assert 'axis_dead_letter_actions_total{action="discard"} 0.0' in text


async def test_discard_removes_one_and_keeps_the_others_in_order(
        axis_env: Axis, admin: tuple[DeadLetterApi, httpx.AsyncClient]) -> None:
    env = axis_env
    api, client = admin
    ids = []
    for i in range(3):
        r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [G99], subject=f"n{i}"), headers=XML)
        assert r.status_code == 202
        ids.append(r.json()["document_id"])
        await listed(client, i + 1)  # one after the other: the queue's order is the submissions'
    items = await listed(client, 3)
    assert [i["document_id"] for i in items] == ids
    page = (await client.get("/admin/dead-letters", params={"limit": 2})).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2 and page["total"] == 3
    page2 = (await client.get("/admin/dead-letters", params={"limit": 2, "offset": 2})).json()
    assert [i["document_id"] for i in page2["items"]] == ids[2:] and page2["next_offset"] is None

    r = await client.post(f"/admin/dead-letters/{items[1]['id']}/discard")
    assert r.status_code == 200 and r.json()["admin"] == "admin" and r.json()["message_id"] is None
    assert [i["document_id"] for i in await listed(client, 2)] == [ids[0], ids[2]]
    assert await queue_depth(env) == 2
    assert (await client.post(f"/admin/dead-letters/{items[1]['id']}/discard")).status_code == 404
    assert (await client.get(f"/admin/dead-letters/{items[1]['id']}")).status_code == 404
    [event] = await wait_for(lambda: admin_events(env), what="the admin event")
    assert (event.action, event.admin, event.sender, event.document_id) == ("discard", "admin", G22, ids[1])
    # nothing was delivered to anyone, and bad requests are problems, not tracebacks
    assert await inbox(env, G01) == []
    bad = await client.post(f"/admin/dead-letters/{items[0]['id']}/discard", content=b'{"admin": "x|y"}')
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert (await client.get("/admin/dead-letters", params={"limit": 0})).status_code == 400
    assert api.actions == {"resend": 0, "discard": 1}


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a real port (uvicorn in a thread, its own event loop): what the CLI talks to."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def test_the_cli_lists_shows_resends_and_discards(axis_env: Axis, tmp_path: Path) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from typer.testing import CliRunner

    from axis.cli import build_app

    env = axis_env
    api = DeadLetterApi.for_config(component_url(env.config, ADMIN_USER), env.config, scan_seconds=0.2)
    app = FastAPI()

    @app.middleware("http")
    async def token(request: Request, call_next: Any) -> Any:  # the admin app's token check, in short
        if request.headers.get("authorization") != "Bearer t0k":
            return JSONResponse({"detail": "missing or wrong admin token"}, status_code=401)
        return await call_next(request)

    api.install(app)
    await env.router.reload(without(env.config, H41))
    for recipient in (H41, G99):
        r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [recipient]), headers=XML)
        assert r.status_code == 202
    runner = CliRunner()

    def axis(*args: str) -> Any:
        return runner.invoke(build_app(), [*args], catch_exceptions=False)

    with served(app) as url:
        common = ["--admin", url, "--token", "t0k"]

        async def two() -> Any:
            res = await asyncio.to_thread(axis, "dead", "list", "--json", *common)
            return res if res.exit_code == 0 and len(orjson.loads(res.stdout)["items"]) == 2 else None

        listed_ = orjson.loads((await wait_for(two, what="two dead letters through the CLI")).stdout)
        assert listed_["ok"] is True and {i["reason"] for i in listed_["items"]} == {"UNKNOWN_RECIPIENT"}
        to_h41 = next(i for i in listed_["items"] if H41 in i["detail"])
        to_g99 = next(i for i in listed_["items"] if G99 in i["detail"])
        table = await asyncio.to_thread(axis, "dead", "list", *common)
        assert table.exit_code == 0 and to_h41["id"][:10] in table.stdout and "dead letters (2 of 2)" in table.stdout
        out = tmp_path / "letter.xml"
        shown = await asyncio.to_thread(axis, "dead", "show", to_h41["id"], "-o", str(out), "--json", *common)
        assert shown.exit_code == 0, shown.stdout
        assert orjson.loads(shown.stdout)["headers"]["x-axis-reason"] == "UNKNOWN_RECIPIENT"
        assert hashlib.sha256(out.read_bytes()).hexdigest() == to_h41["sha256"]

        await env.router.reload(env.config)
        res = await asyncio.to_thread(axis, "dead", "resend", to_h41["id"], "--as", "cli-ops", "--json", *common)
        assert res.exit_code == 0 and orjson.loads(res.stdout)["admin"] == "cli-ops"
        res = await asyncio.to_thread(axis, "dead", "discard", to_g99["id"], *common)
        assert res.exit_code == 0 and "discarded" in res.stdout
        # no such dead letter any more: exit 1, JSON says why; a wrong token: exit 1 too; bad usage: 2
        res = await asyncio.to_thread(axis, "dead", "discard", to_g99["id"], "--json", *common)
        assert res.exit_code == 1 and orjson.loads(res.stdout)["status"] == 404
        res = await asyncio.to_thread(axis, "dead", "list", "--admin", url, "--token", "wrong", "--json")
        assert res.exit_code == 1 and orjson.loads(res.stdout)["status"] == 401
        assert (await asyncio.to_thread(axis, "dead", "list", "--admin", url)).exit_code == 2
    await wait_for(lambda: inbox(env, H41), what="the resent document in H41's inbox")
    events = await wait_for(lambda: admin_events(env), what="the admin events")
    assert sorted((e.action, e.admin) for e in events) == [("discard", _login_name()), ("resend", "cli-ops")]
    await api.stop()


def _login_name() -> str:
    import getpass

    return getpass.getuser()
