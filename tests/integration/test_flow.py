"""End to end against the real RabbitMQ: submit → router → recipient servers → inboxes → statuses back."""

from __future__ import annotations

from pathlib import Path

import pytest

from axis.core import envelope
from axis.core.pki import load_certs, load_key
from axis.core.signing import sign
from axis.core.verify import Verifier, VerifyPolicy
from tests.integration.conftest import G01, G03, G22, H41, H53, Axis, wait_for

pytestmark = pytest.mark.rabbitmq


def unsigned(sender: str, recipients: list[str], subject: str = "V/v kết nối liên thông", **kw) -> bytes:  # type: ignore[no-untyped-def]
    return envelope.build(envelope.new_document(sender, recipients, subject, **kw))


def sign_as(env: Axis, code: str, data: bytes) -> bytes:
    a = env.agency(code)
    return sign(data, load_key(Path(a["key"]).read_bytes()), load_certs(Path(a["cert"]).read_bytes())[0])


async def inbox(env: Axis, code: str) -> list[dict]:  # type: ignore[type-arg]
    r = await env.client(code).get("/v1/inbox")
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def statuses(env: Axis, code: str, rid: str) -> list[dict]:  # type: ignore[type-arg]
    r = await env.client(code).get(f"/v1/documents/{rid}/status")
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_document_to_dedicated_and_shared_recipients(axis_env: Axis) -> None:
    env = axis_env
    sender = env.client(G22)
    r = await sender.post("/v1/documents", content=unsigned(G22, [H53, G01, G03]),
                          headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    sub = r.json()
    assert sub["recipients"] == [H53, G01, G03] and sub["document_id"].startswith(G22 + ",")
    signed = (await sender.get(f"/v1/documents/{sub['id']}")).content

    verifier = Verifier(VerifyPolicy.from_files(env.connections["ca"], env.connections["crl"]))
    for code in (H53, G01, G03):
        items = await wait_for(lambda code=code: inbox(env, code), what=f"{code} inbox")
        assert len(items) == 1
        item = items[0]
        assert (item["document_id"], item["from"], item["kind"]) == (sub["document_id"], G22, "edoc")
        data = (await env.client(code).get(f"/v1/documents/{item['id']}")).content
        assert data == signed  # the exact bytes the sender's server signed
        assert verifier.verify(data).signer == G22  # re-verified at the recipient
    assert await inbox(env, H41) == []  # same shared server, not a recipient

    # status 01 is automatic, once per recipient
    sts = await wait_for(lambda: _codes(env, sub["id"], "01", 3), what="three status 01")
    assert {s["from"] for s in sts if s["code"] == "01"} == {H53, G01, G03}

    # the recipient registers the document (03); the sender sees it
    g01_item = (await inbox(env, G01))[0]
    r = await env.client(G01).post(f"/v1/documents/{g01_item['id']}/status",
                                   json={"code": "03", "description": "vào sổ"})
    assert r.status_code == 202, r.text
    sts = await wait_for(lambda: _codes(env, sub["id"], "03", 1), what="status 03")
    three = [s for s in sts if s["code"] == "03"]
    assert three[0]["from"] == G01 and three[0]["description"] == "vào sổ"

    # counted: accepted once, delivered to three inboxes
    mem = env.counter.mem
    assert list(mem.accepted) == [f"{G22}|{sub['document_id']}|0"]
    acc = mem.accepted[f"{G22}|{sub['document_id']}|0"]
    assert acc.sender_kind == "dedicated" and set(acc.recipients) == {(H53, "dedicated"), (G01, "shared"),
                                                                      (G03, "shared")}
    assert {(d.recipient, d.recipient_kind) for d in mem.delivered.values()} == {
        (H53, "dedicated"), (G01, "shared"), (G03, "shared")}
    assert mem.refused == {}

    # ack marks it taken
    r = await env.client(G01).post(f"/v1/documents/{g01_item['id']}/ack")
    assert r.status_code == 200
    assert (await env.client(G01).get("/v1/inbox", params={"unread": "true"})).json()["items"] == []


async def test_a_status_needs_no_parse_and_an_older_row_still_gets_one(axis_env: Axis) -> None:
    """A delivery keeps what its statuses need (the hex SHA-256 of the stored bytes, Code, PromulgationDate), so
    ``POST /v1/documents/{id}/status`` reads no XML; a row stored before that was kept (NULL there) still gets its
    status, read from the stored bytes' head. Both reach the sender."""
    import hashlib
    import sqlite3

    env = axis_env
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [H53, H41]),
                                   headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    sub = r.json()
    signed = (await env.client(G22).get(f"/v1/documents/{sub['id']}")).content
    original = envelope.parse(signed)
    assert isinstance(original, envelope.DocumentMessage)
    rows = {}
    for code in (H53, H41):
        [item] = await wait_for(lambda code=code: inbox(env, code), what=f"{code} inbox")
        store = env.servers[env.agency(code)["server"]].store
        assert store is not None
        rows[code] = row = await store.received_row(code, item["id"])
        assert row is not None and row.head is not None
        assert row.head.sha256 == hashlib.sha256(signed).hexdigest()
        assert (row.head.doc_code, row.head.promulgation_date) == (
            envelope.response_for(original).code, original.promulgation_date)
    older = env.servers[env.agency(H41)["server"]].store
    db = sqlite3.connect(older.path, timeout=10)  # type: ignore[union-attr]
    with db:
        db.execute("UPDATE axis_received SET sha256 = NULL, doc_code = NULL, promulgation_date = NULL WHERE id = ?",
                   (rows[H41].id,))
    db.close()
    assert (await older.received_row(H41, rows[H41].id)).head is None  # type: ignore[union-attr]
    for code, description in ((H53, "kept"), (H41, "read")):
        r = await env.client(code).post(f"/v1/documents/{rows[code].id}/status",
                                        json={"code": "03", "description": description})
        assert r.status_code == 202, r.text
    sts = await wait_for(lambda: _codes(env, sub["id"], "03", 2), what="two statuses 03")
    assert {(s["from"], s["description"]) for s in sts if s["code"] == "03"} == {(H53, "kept"), (H41, "read")}


async def _codes(env: Axis, rid: str, code: str, n: int) -> list[dict] | None:  # type: ignore[type-arg]
    sts = await statuses(env, G22, rid)
    return sts if sum(1 for s in sts if s["code"] == code) >= n else None


async def test_duplicates_are_delivered_and_counted_once(axis_env: Axis) -> None:
    env = axis_env
    data = sign_as(env, G01, unsigned(G01, [H53, H41]))
    c = env.client(G01)
    ids = set()
    for _ in range(3):
        r = await c.post("/v1/documents", content=data, headers={"content-type": "application/xml"})
        assert r.status_code == 202, r.text
        ids.add(r.json()["id"])
    assert len(ids) == 1  # the same submission
    for code in (H53, H41):
        await wait_for(lambda code=code: inbox(env, code), what=f"{code} inbox")
    await wait_for(lambda: _n_delivered(env, 2), what="two deliveries counted")
    await wait_for(lambda: _processed(env, 3 + 3 * 2), what="all submissions and statuses routed")
    for code in (H53, H41):
        assert len(await inbox(env, code)) == 1
    assert len(env.counter.mem.accepted) == 1 and len(env.counter.mem.delivered) == 2
    sts = await statuses(env, G01, next(iter(ids)))
    assert sorted(s["from"] for s in sts if s["code"] == "01") == sorted([H53, H41])


async def _processed(env: Axis, n: int) -> bool:
    return env.router.processed >= n


async def _n_delivered(env: Axis, n: int) -> bool:
    return len(env.counter.mem.delivered) >= n


async def test_delivery_queued_for_an_old_server_is_forwarded(axis_env: Axis) -> None:
    """An agency moved to another server: deliveries still queued for the old one reach it (never lost)."""
    import aio_pika

    from axis.core.wire import EX_DELIVER, H_KIND, H_RECIPIENTS

    env = axis_env
    data = sign_as(env, G22, unsigned(G22, [H53]))
    conn = await aio_pika.connect(env.config.amqp_url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(EX_DELIVER)
        # as if H53 had been on the shared server when the router routed it
        await ex.publish(aio_pika.Message(data, headers={H_KIND: "document", H_RECIPIENTS: [H53]}), routing_key="sh")
    finally:
        await conn.close()
    [item] = await wait_for(lambda: inbox(env, H53), what="forwarded delivery")
    assert item["from"] == G22
    await wait_for(lambda: _n_delivered(env, 1), what="delivery counted")


async def test_a_status_is_stored_from_the_routers_fields_or_from_its_xml(axis_env: Axis) -> None:
    """The router hands the sender's server the fields it read from a status (``x-axis-status``); a delivery
    without them (a status the router forwarded, an earlier router) is read from its XML: both store the same."""
    import aio_pika

    from axis.core.wire import EX_DELIVER, H_KIND, StatusFields

    env = axis_env
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [H53]),
                                   headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    sub = r.json()
    await wait_for(lambda: _codes(env, sub["id"], "01", 1), what="status 01")  # through the router: the fields
    original = envelope.parse((await env.client(G22).get(f"/v1/documents/{sub['id']}")).content)
    assert isinstance(original, envelope.DocumentMessage)
    xml_only = envelope.build(envelope.new_status(H53, original, "04", "phân công xử lý"))
    fields = StatusFields(G22, H53, original.document_id, "05", "đang xử lý", "2019/05/10 08:00:00")
    conn = await aio_pika.connect(env.config.amqp_url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(EX_DELIVER)
        await ex.publish(aio_pika.Message(xml_only, headers={H_KIND: "status"}), routing_key="d1")
        # the fields win over the XML: the router, whose deliveries only it can publish, read them
        await ex.publish(aio_pika.Message(xml_only, headers={H_KIND: "status", **fields.header()}), routing_key="d1")
    finally:
        await conn.close()
    sts = await wait_for(lambda: _codes(env, sub["id"], "05", 1), what="status 05")
    sts = await wait_for(lambda: _codes(env, sub["id"], "04", 1), what="status 04")
    by_code = {s["code"]: s for s in sts}
    assert (by_code["04"]["from"], by_code["04"]["description"]) == (H53, "phân công xử lý")
    assert (by_code["05"]["from"], by_code["05"]["description"], by_code["05"]["timestamp"]) == (
        H53, "đang xử lý", "2019/05/10 08:00:00")
    assert (by_code["01"]["from"], by_code["01"]["description"]) == (H53, "arrived")
