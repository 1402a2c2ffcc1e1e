"""The VPCP SDK facade against the real RabbitMQ: the exact requests the SDK sends (tests/support/vpcp_sdk.py),
the exact answers it parses; a document sent through /vxp is received through /v1 and the other way round,
counted and logged the same; statuses both ways; updateStatus; the agency list."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from axis.core import envelope
from axis.evidence.writer import LogWriter
from axis.stats.query import query_stats
from axis.stats.store import StatsStore
from endpoints.app import create_app
from tests.integration.conftest import G01, G03, G22, H41, H53, Axis, wait_for
from tests.integration.conftest import axis_env as axis_env
from tests.integration.test_flow import inbox, sign_as, statuses, unsigned
from tests.support.vpcp_sdk import SdkService

pytestmark = pytest.mark.rabbitmq
XML = {"content-type": "application/xml"}


def sdk(env: Axis, code: str, secret: str | None = None, system_id: str | None = None) -> SdkService:
    """One SDK service object of agency ``code``, configured as README says: endpoint = <endpoint>/vxp."""
    a = env.agency(code)
    app = create_app(env.servers[a["server"]])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{a['server']}")
    env.clients[f"sdk/{code}/{id(client)}"] = client
    return SdkService(client, f"http://{a['server']}/vxp", system_id or code, secret or a["token"])


@pytest.fixture
async def logged(axis_env: Axis) -> AsyncIterator[Axis]:
    config = dataclasses.replace(axis_env.config,
                                 evidence=dataclasses.replace(axis_env.config.evidence, sth_interval_seconds=0.2))
    writer = LogWriter(config)
    await writer.start()
    try:
        yield axis_env
    finally:
        await writer.stop()


async def trace_types(env: Axis, code: str, rid: str, want: list[str]) -> list[str]:
    async def complete() -> list[str] | None:
        r = await env.client(code).get(f"/v1/documents/{rid}/trace")
        assert r.status_code == 200, r.text
        types = sorted(e["type"] for e in r.json()["events"])
        return types if types == sorted(want) else None

    return await wait_for(complete, what=f"trace {want}")


async def test_vxp_to_v1_and_back(logged: Axis) -> None:
    env = logged
    g01 = sdk(env, G01)  # shared server
    signed = sign_as(env, G01, unsigned(G01, [H53], subject="Công văn qua SDK"))

    # sendEdoc: the signed file, through /vxp → H53 (dedicated) receives it through /v1
    sent = await g01.send_edoc(signed)
    assert sent["status"] == "OK" and sent["ErrorCode"] == "0" and sent["ErrorDesc"] == "Success", sent
    doc_id = sent["DocId"]
    assert doc_id and all(ch.isalnum() or ch in "._-" for ch in doc_id)
    [item] = await wait_for(lambda: inbox(env, H53), what="H53 inbox")
    assert item["from"] == G01 and item["kind"] == "edoc"
    assert (await env.client(H53).get(f"/v1/documents/{item['id']}")).content == signed  # exact bytes
    # the sender sees its submission through /v1 as well, and the router counted it like any other
    assert (await env.client(G01).get(f"/v1/documents/{doc_id}")).content == signed
    # status 01 comes back; the sender's log holds the same events as for a /v1 submission
    await trace_types(env, G01, doc_id, ["submitted", "routed", "stored", "status"])

    # H53 answers through /v1; G01 receives through /vxp
    r = await env.client(H53).post("/v1/documents", content=unsigned(H53, [G01], subject="Trả lời"), headers=XML)
    assert r.status_code == 202, r.text
    reply_document_id = r.json()["document_id"]

    async def listed() -> list[dict]:  # type: ignore[type-arg]
        answer = await g01.get_received_edoc_list("edoc")
        assert (answer["status"], answer["ErrorCode"]) == ("OK", "0"), answer
        return answer["data"]  # type: ignore[no-any-return]

    [entry] = await wait_for(listed, what="G01's received list")
    assert set(entry) == {"docId", "serviceType", "messageType", "created_time", "updated_time", "from", "to",
                          "status", "status_desc"}
    assert (entry["serviceType"], entry["messageType"], entry["from"], entry["to"], entry["status"]) == (
        "eDoc", "edoc", H53, G01, "new")
    got = await g01.get_edoc(entry["docId"])
    assert got["status"] == "OK"
    data = base64.b64decode(got["data"])
    assert data == (await env.client(G01).get(f"/v1/documents/{entry['docId']}")).content
    assert envelope.parse(data).document_id == reply_document_id  # type: ignore[union-attr]
    download = await g01.download_edoc(entry["docId"])
    assert download.status_code == 200 and download.content == data
    assert (await g01.count_receive_edoc())["count"] == 1

    # a status through /vxp (sendEdoc messagetype status) reaches H53's /v1 status list
    status_xml = envelope.build(envelope.new_status(G01, envelope.ResponseFor(H53, reply_document_id), "03",
                                                    "Đã tiếp nhận"))
    st = await g01.send_edoc(status_xml, messagetype="status")
    assert (st["status"], st["DocId"]) == ("OK", entry["docId"]), st

    async def h53_statuses() -> list[dict]:  # type: ignore[type-arg]
        return [s for s in await statuses(env, H53, r.json()["id"]) if s["code"] == "03"]

    [s03] = await wait_for(h53_statuses, what="H53 sees G01's status 03")
    assert (s03["from"], s03["description"]) == (G01, "Đã tiếp nhận")

    # processing keeps it listed; done = the /v1 ack: it leaves the list (and /v1 says acked)
    assert (await g01.update_status(entry["docId"], "processing"))["status"] == "OK"
    [again] = await listed()
    assert again["status"] == "processing"
    assert (await g01.update_status(entry["docId"], "done"))["status"] == "OK"
    assert await listed() == []
    assert [i["acked"] for i in await inbox(env, G01)] == [True]
    await trace_types(env, H53, r.json()["id"], ["submitted", "routed", "stored", "status", "status", "acked"])

    # G01's status items: H53's 01 about G01's document, rendered as a status edXML
    status_list = await g01.get_received_edoc_list("status")
    [s01] = [s for s in status_list["data"] if s["from"] == H53]
    assert s01["messageType"] == "status" and s01["docId"].startswith("st-")
    assert (await g01.count_receive_status())["count"] == len(status_list["data"])
    rendered = envelope.parse(base64.b64decode((await g01.get_edoc(s01["docId"]))["data"]))
    assert isinstance(rendered, envelope.StatusMessage)
    assert (rendered.sender.organ_id, rendered.status_code) == (H53, "01")
    assert (rendered.response_for.organ_id, rendered.response_for.document_id) == (G01, item["document_id"])
    assert (await g01.update_status(s01["docId"], "done"))["status"] == "OK"
    assert all(s["docId"] != s01["docId"] for s in (await g01.get_received_edoc_list("status"))["data"])

    # getSentEdocList: one row per recipient, the recipient's view when its inbox is elsewhere
    rows = (await g01.get_sent_edoc_list(doc_id))["data"]
    assert [(x["senderDocId"], x["fromCode"], x["toCode"], x["title"], x["sendStatus"], x["receiveStatus"])
            for x in rows] == [(doc_id, G01, H53, "Công văn qua SDK", "OK", "new")]
    assert rows[0]["receivedTime"] and rows[0]["receiverDocId"] == ""  # H53's inbox is on another server

    # counted alike: two documents accepted (one per door), none refused
    async with await StatsStore.open(env.config.stats_url) as store:
        stats = await query_stats(store, env.config.directory)
    assert (stats["sent"], stats["refused"]) == (2, 0)


async def test_shared_server_sent_list_knows_the_local_recipient(axis_env: Axis) -> None:
    env = axis_env
    g01 = sdk(env, G01)
    sent = await g01.send_edoc(sign_as(env, G01, unsigned(G01, [G03, H41], subject="Nội bộ")))
    assert sent["status"] == "OK", sent
    [g03_item] = await wait_for(lambda: inbox(env, G03), what="G03 inbox")
    g03 = sdk(env, G03)
    assert (await g03.update_status(g03_item["id"], "processing"))["status"] == "OK"

    async def rows() -> list[dict] | None:  # type: ignore[type-arg]
        data = (await g01.get_sent_edoc_list(sent["DocId"]))["data"]
        return data if all(r["receivedTime"] for r in data) else None

    by_recipient = {r["toCode"]: r for r in await wait_for(rows, what="both 01s")}
    assert by_recipient[G03]["receiverDocId"] == g03_item["id"]
    assert by_recipient[G03]["receiveStatus"] == "processing"
    assert by_recipient[H41]["receiveStatus"] == "new"
    # a stale docId of another call (the SDK never removes parameters) lists nothing rather than failing
    stale = await g01.get_sent_edoc_list("0123456789abcdef0123456789abcdef")
    assert (stale["status"], stale["data"]) == ("OK", [])


async def test_agencies_and_operator_calls(axis_env: Axis) -> None:
    env = axis_env
    h53 = sdk(env, H53)
    agencies = await h53.get_agencies_list()
    assert agencies["status"] == "OK"
    assert {a["code"] for a in agencies["data"]} == {G22, H53, G01, G03, H41}
    assert set(agencies["data"][0]) == {"code", "id", "mail", "name", "pid", "oldCode"}
    # Vietnamese names survive the ASCII answer (\\uXXXX escapes)
    assert h53.last is not None and h53.last.content.isascii()
    assert {a["name"] for a in agencies["data"] if a["code"] == G01} == {"Bộ Công an"}
    qd20 = (await h53.get_agencies_list_qd20())["data"]
    assert {(a["code"], a["code102"]) for a in qd20} == {(c, c) for c in (G22, H53, G01, G03, H41)}
    sync = await h53.get_synchronize_unit()
    units = {u["code"]: u for u in sync["data"]}
    assert units[G01]["centerCode"] == "sh" and units[G01]["isAgency"] is True and units[G01]["deleted"] is False
    directory = (await env.client(H53).get("/v1/directory")).json()  # the same directory, the same version
    assert {u["version"] for u in units.values()} == {directory["version"]} and directory["version"] >= 1
    for refused in (await h53.register_agency({"id": "", "pcode": "", "code": "000.00.00.X99", "name": "x",
                                               "mail": "", "mobile": "", "fax": ""}),
                    await h53.delete_agency(G01)):
        assert (refused["status"], refused["ErrorCode"]) == ("FAIL", "FORBIDDEN")


async def test_revocation_through_vxp(axis_env: Axis) -> None:
    """messagetype revocation = BussinessDocType 1: sent through /vxp, listed by its kind at the recipient."""
    env = axis_env
    g01 = sdk(env, G01)
    original = envelope.new_document(G01, [H53], "Bản gốc")
    assert (await g01.send_edoc(sign_as(env, G01, envelope.build(original))))["status"] == "OK"
    revocation = envelope.build(envelope.new_document(G01, [H53], "Thu hồi", doc_type="revocation",
                                                      related_document_id=original.document_id))
    sent = await g01.send_edoc(sign_as(env, G01, revocation), messagetype="revocation")
    assert sent["status"] == "OK", sent
    h53 = sdk(env, H53)

    async def revocations() -> list[dict]:  # type: ignore[type-arg]
        return (await h53.get_received_edoc_list("revocation"))["data"]  # type: ignore[no-any-return]

    [entry] = await wait_for(revocations, what="H53's revocation")
    assert (entry["messageType"], entry["from"]) == ("revocation", G01)
    kinds = [e["messageType"] for e in (await h53.get_received_edoc_list("edoc"))["data"]]
    assert kinds == ["edoc"]
    assert (await h53.count_receive_edoc())["count"] == 2  # any document type
    rows = (await g01.get_sent_edoc_list(sent["DocId"]))["data"]
    assert [(r["messageType"], r["toCode"]) for r in rows] == [("revocation", H53)]
