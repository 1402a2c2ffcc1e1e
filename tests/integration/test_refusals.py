"""Refusals against the real RabbitMQ: unknown recipients, tampered envelopes, forged statuses, HTTP checks."""

from __future__ import annotations

import asyncio
import dataclasses

import aio_pika
import pytest

from axis.core import envelope
from axis.core.wire import EX_SUBMIT, H_DOC_TYPE, H_KIND, H_REASON, H_SENDER, H_SERVER, H_SUBMITTED_AT, Q_DEAD
from axis.stats.counting import Refused
from tests.integration.conftest import G01, G03, G22, H41, H53, Axis, wait_for
from tests.integration.test_flow import inbox, sign_as, statuses, unsigned

pytestmark = pytest.mark.rabbitmq
G99 = "000.00.00.G99"
XML = {"content-type": "application/xml"}


async def dead_letters(env: Axis, n: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    conn = await aio_pika.connect(env.config.amqp_url)
    try:
        ch = await conn.channel()
        q = await ch.get_queue(Q_DEAD, ensure=False)
        got = []

        async def check() -> bool:
            m = await q.get(fail=False, no_ack=True)
            if m is not None:
                got.append(m)
            return len(got) >= n

        await wait_for(check, what=f"{n} dead letters")
        return got
    finally:
        await conn.close()


async def publish_raw(env: Axis, body: bytes, *, as_server: str | None = None, **headers: object) -> None:
    """Straight onto axis.submit: as the provisioning account, or ``as_server`` (that endpoint server's own broker
    user, with its AMQP user_id — how the router knows who published a status)."""
    from axis.broker import users as brokerauth

    url, user_id = env.config.amqp_url, None
    if as_server is not None:
        user = brokerauth.server_user(as_server)
        url, user_id = brokerauth.component_url(env.config, user), env.config.broker.user_prefix + user
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(EX_SUBMIT, ensure=as_server is None)
        await ex.publish(aio_pika.Message(body, headers=dict(headers), message_id="raw-1", user_id=user_id,
                                          delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")
    finally:
        await conn.close()


async def sent(env: Axis, sender: str, recipients: list[str]) -> str:
    """The DocumentId of a document ``sender`` sent through its server, once every recipient's 01 is back."""
    r = await env.client(sender).post("/v1/documents", content=unsigned(sender, recipients), headers=XML)
    assert r.status_code == 202, r.text

    async def arrived() -> bool:
        return len(await statuses(env, sender, r.json()["id"])) == len(recipients)

    await wait_for(arrived, what="the 01s of the document")
    return str(r.json()["document_id"])


async def test_unknown_recipient_does_not_block_others(axis_env: Axis) -> None:
    env = axis_env
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [H53, G99, G01]), headers=XML)
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    for code in (H53, G01):
        await wait_for(lambda code=code: inbox(env, code), what=f"{code} inbox")

    async def refusal() -> list[dict] | None:  # type: ignore[type-arg]
        sts = [s for s in await statuses(env, G22, rid) if s["code"] == "02"]
        return sts or None

    sts = await wait_for(refusal, what="status 02 UNKNOWN_RECIPIENT")
    assert sts[0]["reason"] == "UNKNOWN_RECIPIENT" and G99 in sts[0]["description"] and sts[0]["from"] == "axis"
    # the router publishes (deliveries, the refusal) before it records the count: wait for the count too

    async def accepted() -> dict | None:  # type: ignore[type-arg]
        return env.counter.mem.accepted or None

    acc = next(iter((await wait_for(accepted, what="the accepted count")).values()))
    assert {c for c, _ in acc.recipients} == {H53, G01}


async def test_only_unknown_recipients_is_refused(axis_env: Axis) -> None:
    env = axis_env
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [G99]), headers=XML)
    assert r.status_code == 202
    [dead] = await dead_letters(env, 1)
    assert dead.headers[H_REASON] == "UNKNOWN_RECIPIENT"
    sts = await wait_for(lambda: statuses(env, G22, r.json()["id"]), what="status 02")
    assert sts[0]["code"] == "02" and sts[0]["reason"] == "UNKNOWN_RECIPIENT"
    await wait_for(lambda: asyncio.sleep(0, len(env.counter.mem.refused) == 1), what="the refusal count")
    assert env.counter.mem.accepted == {} and [r.sender for r in env.counter.mem.refused.values()] == [G22]


async def test_tampered_envelope_is_dead_lettered_with_reason(axis_env: Axis) -> None:
    env = axis_env
    signed = sign_as(env, G22, unsigned(G22, [H53], subject="Original subject"))
    tampered = signed.replace(b"Original subject", b"Altered subject!")
    assert tampered != signed
    # Through HTTP the endpoint refuses it before publishing
    r = await env.client(G22).post("/v1/documents", content=tampered, headers=XML)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["reason"] == "SIGNATURE_INVALID"
    # Straight onto the broker (a compromised server d1): the router refuses it
    await publish_raw(env, tampered, as_server="d1", **{H_KIND: "document"})
    [dead] = await dead_letters(env, 1)
    assert dead.headers[H_REASON] == "SIGNATURE_INVALID" and dead.headers[H_SENDER] == G22
    assert dead.body == tampered
    assert await inbox(env, H53) == []

    async def counted() -> list[Refused] | None:  # the router records its count after publishing the dead letter
        return list(env.counter.mem.refused.values()) or None

    # nobody proved G22 sent it: counted against the server that published it, not against G22
    [refused] = await wait_for(counted, what="the refusal count")
    assert (refused.reason, refused.sender, refused.server) == ("SIGNATURE_INVALID", None, "d1")
    # d1 never submitted those bytes for G22 (the door refused them): no status of G22's changes
    await asyncio.sleep(0.5)
    assert await env.servers["d1"].store.statuses_for(G22, envelope.parse(signed).document_id) == []  # type: ignore[union-attr]


async def test_an_unverified_document_never_touches_the_claimed_senders_statuses(axis_env: Axis) -> None:
    """Finding 4: an unsigned document claiming to be G22's, re-using G22's real DocumentId, published with
    server sh's credential, must not make G22's status list show a refusal for a document that was delivered,
    nor be counted against G22."""
    env = axis_env
    real = envelope.new_document(G22, [H53], "Công văn thật")
    r = await env.client(G22).post("/v1/documents", content=envelope.build(real), headers=XML)
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    await wait_for(lambda: statuses(env, G22, rid), what="the status 01 of the real document")
    fake = envelope.build(dataclasses.replace(real, subject="giả mạo"))  # same DocumentId, not signed by G22
    await publish_raw(env, fake, as_server="sh", **{H_KIND: "document"})
    [dead] = await dead_letters(env, 1)
    assert dead.headers[H_REASON] == "SIGNATURE_MISSING"

    async def counted() -> list[Refused] | None:
        return list(env.counter.mem.refused.values()) or None

    [refused] = await wait_for(counted, what="the refusal count")
    assert (refused.sender, refused.server) == (None, "sh")
    await asyncio.sleep(0.5)  # the notice went to sh, which did not submit those bytes: nothing stored anywhere
    assert [s["code"] for s in await statuses(env, G22, rid)] == ["01"]
    assert env.servers["sh"].metrics.unverified_refusals.labels("SIGNATURE_MISSING")._value.get() == 1


async def test_a_status_about_a_document_never_received_is_refused(axis_env: Axis) -> None:
    """Finding 7: G01's server (sh) publishes a status from G01 about G22's document sent only to H53: the sender's
    server refuses it (dead letter) and G22's status list does not show it."""
    env = axis_env
    real = envelope.new_document(G22, [H53], "Chỉ gửi H53")
    r = await env.client(G22).post("/v1/documents", content=envelope.build(real), headers=XML)
    rid = r.json()["id"]
    await wait_for(lambda: statuses(env, G22, rid), what="the status 01 of the real document")
    forged = envelope.build(envelope.new_status(G01, real, "05", "đã xử lý"))
    await publish_raw(env, forged, as_server="sh", **{H_KIND: "status", H_DOC_TYPE: 0})
    [dead] = await dead_letters(env, 1)
    assert dead.headers.get("x-death")  # rejected by d1's consumer (an endpoint may not publish to axis.dlx)
    assert [s["code"] for s in await statuses(env, G22, rid)] == ["01"]
    # a real recipient's status still goes through
    [item] = await inbox(env, H53)
    r = await env.client(H53).post(f"/v1/documents/{item['id']}/status", json={"code": "05"})
    assert r.status_code == 202, r.text

    async def two() -> list[str] | None:
        codes = sorted(s["code"] for s in await statuses(env, G22, rid))
        return codes if len(codes) == 2 else None

    assert await wait_for(two, what="the recipient's status 05") == ["01", "05"]


async def test_malformed_submission_goes_to_dead_letters(axis_env: Axis) -> None:
    await publish_raw(axis_env, b"<edXML><unclosed>", **{H_KIND: "document", H_SERVER: "d1"})
    [dead] = await dead_letters(axis_env, 1)
    assert dead.headers[H_REASON] == "XML_MALFORMED"

    async def counted() -> list[str | None] | None:  # recorded after the dead letter is published
        return [r.sender for r in axis_env.counter.mem.refused.values()] or None

    assert await wait_for(counted, what="the refusal count") == [None]


async def test_status_from_the_wrong_server_is_refused(axis_env: Axis) -> None:
    env = axis_env
    fake = envelope.build(envelope.new_status(H53, envelope.ResponseFor(G22, f"{G22},2019/03/12,1/VPCP"), "03"))
    # H53 lives on d2; a status claiming H53 published by server sh is refused
    await publish_raw(env, fake, **{H_KIND: "status", H_SERVER: "sh", H_DOC_TYPE: 0, H_SUBMITTED_AT: 0})
    [dead] = await dead_letters(env, 1)
    assert dead.headers[H_REASON] == "FORBIDDEN"
    assert await env.servers["d1"].store.statuses_for(G22, f"{G22},2019/03/12,1/VPCP") == []  # type: ignore[union-attr]


async def test_revocation_is_linked_to_the_original(axis_env: Axis) -> None:
    env = axis_env
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [G03]), headers=XML)
    original = r.json()["document_id"]
    rev = unsigned(G22, [G03], subject="Thu hồi", doc_type=1, related_document_id=original)
    r2 = await env.client(G22).post("/v1/documents", content=rev, headers=XML)
    assert r2.status_code == 202, r2.text

    async def two() -> list[dict] | None:  # type: ignore[type-arg]
        items = await inbox(env, G03)
        return items if len(items) == 2 else None

    items = await wait_for(two, what="original and revocation")
    kinds = {i["kind"]: i for i in items}
    assert kinds["revocation"]["related_document_id"] == original
    assert kinds["revocation"]["related_id"] == kinds["edoc"]["id"]
    assert kinds["edoc"]["related_document_id"] is None and kinds["edoc"]["related_id"] is None


async def test_only_the_sender_may_revoke_update_or_replace(axis_env: Axis) -> None:
    """Finding 3: H53 names G22's DocumentId as the document its revocation/update/replacement acts on. The door
    refuses it (FORBIDDEN); published past the door (H53's server's credential), it reaches G03 signed by H53
    but is never linked to G22's document."""
    env = axis_env
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [G03]), headers=XML)
    victim = r.json()["document_id"]
    for kind in (1, 2, 3):
        attack = unsigned(H53, [G03], subject="Thu hồi", doc_type=kind, related_document_id=victim)
        r2 = await env.client(H53).post("/v1/documents", content=attack, headers=XML)
        assert (r2.status_code, r2.json()["reason"]) == (403, "FORBIDDEN"), r2.text
    await publish_raw(env, sign_as(env, H53, unsigned(H53, [G03], subject="Thu hồi", doc_type=1,
                                                        related_document_id=victim)),
                      as_server="d2", **{H_KIND: "document"})

    async def two() -> list[dict] | None:  # type: ignore[type-arg]
        items = await inbox(env, G03)
        return items if len(items) == 2 else None

    kinds = {i["kind"]: i for i in await wait_for(two, what="the document and the stray revocation")}
    assert kinds["revocation"]["from"] == H53 and kinds["revocation"]["related_document_id"] == victim
    assert kinds["revocation"]["related_id"] is None  # not G22's document: H53 never sent one with that id


async def test_http_checks(axis_env: Axis) -> None:
    env = axis_env
    c = env.client(G01)
    limit = env.config.limits.max_envelope_bytes
    r = await c.post("/v1/documents", content=b"<" + b"x" * limit, headers=XML)
    assert (r.status_code, r.json()["reason"]) == (413, "TOO_LARGE")
    r = await c.post("/v1/documents", content=b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", headers=XML)
    assert (r.status_code, r.json()["reason"]) == (422, "XML_FORBIDDEN")
    r = await c.post("/v1/documents", content=unsigned(G03, [H41]), headers=XML)  # G01 posing as G03
    assert (r.status_code, r.json()["reason"]) == (403, "FORBIDDEN")
    # status codes: 01 is automatic, unknown codes are refused
    await c.post("/v1/documents", content=unsigned(G01, [H41]), headers=XML)
    [item] = await wait_for(lambda: inbox(env, H41), what="H41 inbox")
    h41 = env.client(H41)
    r = await h41.post(f"/v1/documents/{item['id']}/status", json={"code": "01"})
    assert (r.status_code, r.json()["reason"]) == (403, "FORBIDDEN")
    r = await h41.post(f"/v1/documents/{item['id']}/status", json={"code": "99"})
    assert (r.status_code, r.json()["reason"]) == (422, "SCHEMA_INVALID")
    assert (await c.get("/healthz")).json()["kind"] == "shared"
    admin = env.client(G01, token=env.connections["admin"]["token"])  # /metrics takes the admin token
    assert 'axis_endpoint_submitted_total{agency="000.00.00.G01"} 1.0' in (await admin.get("/metrics")).text


async def test_a_forged_status_in_a_bundle_is_refused_alone(axis_env: Axis) -> None:
    from axis.core.bundle import Item, pack
    from axis.core.wire import H_DETAIL

    env = axis_env
    doc_id = await sent(env, G22, [G01])  # a status is accepted only from a recipient of a real document
    good = envelope.build(envelope.new_status(G01, envelope.ResponseFor(G22, doc_id), "03", "processing"))
    forged = envelope.build(envelope.new_status(H53, envelope.ResponseFor(G22, doc_id), "03", "forged"))
    # published by server sh: G01 lives there, H53 does not (d2)
    await publish_raw(env, pack([Item(good), Item(forged), Item(b"<not-xml")]), as_server="sh",
                      **{H_KIND: "status-bundle"})
    dead = await dead_letters(env, 2)
    assert sorted((m.headers[H_REASON], m.message_id) for m in dead) == [("FORBIDDEN", "raw-1#1"),
                                                                           ("XML_MALFORMED", "raw-1#2")]
    assert all(m.headers[H_DETAIL] for m in dead)
    assert {m.message_id: m.body for m in dead}["raw-1#1"] == forged  # the refused item alone, as it was sent

    async def stored() -> list[dict] | None:  # type: ignore[type-arg]
        got = await env.servers["d1"].store.statuses_for(G22, doc_id)  # type: ignore[union-attr]
        return [x for x in got if x["code"] == "03"] or None

    [st] = await wait_for(stored, what="the good status at the sender's server")
    assert (st["from"], st["code"]) == (G01, "03")

    async def counted() -> list[str] | None:  # counts are settled up to 250 ms after the outcome (axis.router.settle)
        return sorted(env.counter.mem.refused) or None

    assert await wait_for(counted, what="the refusals counted") == ["raw-1#1", "raw-1#2"]


async def test_an_endpoint_stores_the_good_items_of_a_bundle_and_dead_letters_it(axis_env: Axis) -> None:
    from axis.core.bundle import Item, pack
    from axis.core.wire import EX_DELIVER

    env = axis_env
    doc_id = await sent(env, G22, [G01])
    good = envelope.build(envelope.new_status(G01, envelope.ResponseFor(G22, doc_id), "03"))
    stray = envelope.build(envelope.new_status(G01, envelope.ResponseFor(G99, doc_id), "03"))  # G99: nowhere
    conn = await aio_pika.connect(env.config.amqp_url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(EX_DELIVER)
        body = pack([Item(stray), Item(good)])
        await ex.publish(aio_pika.Message(body, headers={H_KIND: "status-bundle"}, message_id="fw-1"),
                         routing_key="d1", mandatory=True)
    finally:
        await conn.close()
    # An endpoint server may not publish to axis.dlx (least privilege): the bundle is rejected whole into the
    # dead letters (x-death names the queue) after its good statuses were stored; the log names the bad item.
    [dead] = await dead_letters(env, 1)
    assert (dead.message_id, dead.body) == ("fw-1", body)
    assert dead.headers["x-death"][0]["queue"] == "axis.server.d1"

    async def stored() -> list[dict] | None:  # type: ignore[type-arg]
        got = await env.servers["d1"].store.statuses_for(G22, doc_id)  # type: ignore[union-attr]
        return [x for x in got if x["code"] == "03"] or None

    assert [s["from"] for s in await wait_for(stored, what="the good status stored")] == [G01]


async def test_a_document_bundle_is_stored_item_by_item_and_a_bad_item_dead_letters_it(axis_env: Axis) -> None:
    """The router packs the deliveries of a batch bound for one server into a document bundle: each item is
    checked and stored as a single delivery would be (with its own recipients), their 01s are counted; an item
    that fails the check sends the whole bundle to the dead letters, after the good ones were stored."""
    from axis.core.bundle import Item, pack
    from axis.core.wire import EX_DELIVER, H_RECIPIENTS

    env = axis_env
    one = sign_as(env, G22, unsigned(G22, [G01, G03], "bundle 1"))
    two = sign_as(env, G22, unsigned(G22, [H41], "bundle 2"))
    tampered = sign_as(env, G22, unsigned(G22, [G03], "bundle 3")).replace(b"bundle 3", b"bundle 4")
    conn = await aio_pika.connect(env.config.amqp_url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(EX_DELIVER)
        body = pack([Item(one, {H_KIND: "document", H_RECIPIENTS: [G01, G03]}),
                     Item(tampered, {H_KIND: "document", H_RECIPIENTS: [G03]}),
                     Item(two, {H_KIND: "document", H_RECIPIENTS: [H41]})])
        await ex.publish(aio_pika.Message(body, headers={H_KIND: "document-bundle"}, message_id="db-1"),
                         routing_key="sh", mandatory=True)
    finally:
        await conn.close()
    [dead] = await dead_letters(env, 1)
    assert (dead.message_id, dead.body) == ("db-1", body)
    assert dead.headers["x-death"][0]["queue"] == "axis.server.sh"
    assert [i["subject"] for i in await inbox(env, G01)] == ["bundle 1"]
    assert [i["subject"] for i in await inbox(env, G03)] == ["bundle 1"]  # never the tampered one
    assert [i["subject"] for i in await inbox(env, H41)] == ["bundle 2"]

    async def counted() -> bool:
        return len(env.counter.mem.delivered) >= 3

    await wait_for(counted, what="the three good deliveries counted from their 01s")
    assert sorted(d.recipient for d in env.counter.mem.delivered.values()) == sorted([G01, G03, H41])
