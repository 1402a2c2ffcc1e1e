"""The VPCP SDK facade refuses in the SDK's own shape (HTTP 200, JSON {"status": "FAIL", "ErrorCode": <reason>}),
never a 500: wrong secrets, unknown or foreign systemIds, tampered headers, other tenants' documents, bodies that do
not match hash-file, messagetypes that disagree with the document (counted like any door refusal)."""

from __future__ import annotations

import json

import pytest

from axis.stats.query import query_stats
from axis.stats.store import StatsStore
from tests.endpoints.test_vxp_flow import sdk
from tests.integration.conftest import G01, G03, G22, H41, H53, Axis, wait_for
from tests.integration.conftest import axis_env as axis_env
from tests.integration.test_flow import inbox, sign_as, unsigned

pytestmark = pytest.mark.rabbitmq


def refused(answer: dict, code: str) -> None:  # type: ignore[type-arg]
    assert (answer["status"], answer["ErrorCode"]) == ("FAIL", code), answer
    assert answer["ErrorDesc"]


async def test_wrong_credentials_get_the_sdk_error_shape(axis_env: Axis) -> None:
    env = axis_env
    other_server_token = env.agency(G22)["token"]
    for service in (sdk(env, G01, secret="not-the-secret"),  # wrong secret
                    sdk(env, G01, secret=other_server_token),  # another agency's secret
                    sdk(env, G22, system_id=G01, secret=other_server_token),  # G22 is not on G01's server
                    sdk(env, G01, system_id="000.00.00.X99")):  # no such agency
        answer = await service.get_received_edoc_list()
        assert service.last is not None and service.last.status_code == 200
        refused(answer, "UNAUTHORIZED")
        sent = await service.send_edoc(unsigned(G01, [H53]))
        refused(sent, "UNAUTHORIZED")
        assert sent["DocId"] == ""
        download = await service.download_edoc("0123456789abcdef0123456789abcdef")
        assert (download.status_code, download.content) == (401, b"")  # any body would count as a success

    # a header changed after signing (a parameter that disagrees with the signed JSON)
    g01 = sdk(env, G01)
    g01.params["Content-Type"] = "application/json"
    headers = g01.headers()
    headers["XroadVnpt-systemid"] = G03
    r = await g01.client.post("/vxp/getReceivedEdocList", headers=headers, content=b"")
    assert r.status_code == 200
    refused(r.json(), "UNAUTHORIZED")
    # no SDK headers at all (downloadEdoc2 uses a plain client): 401, empty body; other calls: FAIL JSON
    r = await g01.client.get("/vxp/downloadEdoc")
    assert (r.status_code, r.content) == (401, b"")
    r = await g01.client.post("/vxp/getEdoc", content=b"{}")
    refused(r.json(), "UNAUTHORIZED")
    r = await g01.client.post("/vxp/getEdoc", headers={"XroadVnpt-sign-header": "[not json",
                                                        "XroadVnpt-hash-header": "00"})
    refused(r.json(), "UNAUTHORIZED")
    # an unknown call under /vxp: 404 with a FAIL body (never an HTML page the SDK would read as success)
    r = await g01.client.post("/vxp/getEverything", headers=headers)
    assert r.status_code == 404 and r.json()["status"] == "FAIL"

    # the right secret still works, and a failed authentication is not a document refusal
    assert (await sdk(env, G01).get_received_edoc_list())["status"] == "OK"
    registry = env.servers["sh"].metrics.registry
    calls = {(s.labels["call"], s.labels["result"]): s.value for m in registry.collect()
             if m.name == "axis_endpoint_vxp_calls" for s in m.samples if s.name.endswith("_total")}
    # three of the four wrong services and the tampered request are on the shared server (G22 is on d1)
    assert calls[("getReceivedEdocList", "UNAUTHORIZED")] == 4 and calls[("getReceivedEdocList", "OK")] == 1
    assert calls[("sendEdoc", "UNAUTHORIZED")] == 3 and calls[("unknown", "NOT_FOUND")] == 1
    async with await StatsStore.open(env.config.stats_url) as store:
        assert (await query_stats(store, env.config.directory))["refused"] == 0


async def test_other_tenants_documents_are_forbidden(axis_env: Axis) -> None:
    env = axis_env
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [G01]),
                                   headers={"content-type": "application/xml"})
    assert r.status_code == 202
    [item] = await wait_for(lambda: inbox(env, G01), what="G01 inbox")
    g01, g03 = sdk(env, G01), sdk(env, G03)
    await wait_for(lambda: g01.get_received_edoc_list("status"), what="a list")
    for other in (g03, sdk(env, H41)):  # the same shared server, other tenants
        assert (await other.get_received_edoc_list())["data"] == []
        refused(await other.get_edoc(item["id"]), "FORBIDDEN")
        refused(await other.update_status(item["id"], "done"), "FORBIDDEN")
        download = await other.download_edoc(item["id"])
        assert (download.status_code, download.content) == (404, b"")
        assert (await other.count_receive_edoc())["count"] == 0
    # and G01's sent documents' statuses are G01's alone
    sent = await g01.send_edoc(sign_as(env, G01, unsigned(G01, [H53])))
    assert sent["status"] == "OK"

    async def g01_statuses() -> list[dict]:  # type: ignore[type-arg]
        return (await g01.get_received_edoc_list("status"))["data"]  # type: ignore[no-any-return]

    [status_item] = await wait_for(g01_statuses, what="G01's status 01")
    refused(await g03.get_edoc(status_item["docId"]), "FORBIDDEN")
    refused(await g03.update_status(status_item["docId"], "done"), "FORBIDDEN")
    refused(await g03.get_edoc("../../etc/passwd"), "FORBIDDEN")
    assert (await g03.get_sent_edoc_list(sent["DocId"]))["data"] == []
    # the owner still gets it
    assert (await g01.get_edoc(item["id"]))["status"] == "OK"


async def test_send_refusals(axis_env: Axis) -> None:
    env = axis_env
    g01 = sdk(env, G01)
    document = sign_as(env, G01, unsigned(G01, [H53]))

    # the body is not what hash-file names: refused before /v1, DocId always present
    g01.params["Content-Type"] = "application/octet-stream"
    g01.params.update({"from": G01, "servicetype": "eDoc", "messagetype": "edoc", "hash-file": "abc"})
    r = await g01.client.post("/vxp/sendEdoc", headers=g01.headers(), content=document + b"\r\n")
    assert r.json() == {"status": "FAIL", "ErrorCode": "SIGNATURE_INVALID",
                        "ErrorDesc": "the body does not match XroadVnpt-hash-file", "DocId": ""}
    # from is not the systemId
    refused(await sdk(env, G01).send_edoc(document, sender=G03), "FORBIDDEN")
    # messagetype says revocation, the document is a new one: refused and counted by /v1
    refused(await sdk(env, G01).send_edoc(document, messagetype="revocation"), "SCHEMA_INVALID")
    # to names someone else than MessageHeader/To
    refused(await sdk(env, G01).send_edoc(document, to=json.dumps([H41])), "SCHEMA_INVALID")
    # a document of another agency (the /v1 check: sender = caller)
    refused(await sdk(env, G01).send_edoc(sign_as(env, G03, unsigned(G03, [H53]))), "FORBIDDEN")
    # not XML
    refused(await sdk(env, G01).send_edoc(b"<edXML><unclosed>"), "XML_MALFORMED")
    # a status about a document G01 never received
    from axis.core import envelope

    status = envelope.build(envelope.new_status(G01, envelope.ResponseFor(H53, "nope"), "03"))
    refused(await sdk(env, G01).send_edoc(status, messagetype="status"), "FORBIDDEN")
    refused(await sdk(env, G01).send_edoc(document, messagetype="status"), "SCHEMA_INVALID")
    refused(await sdk(env, G01).send_edoc(document, messagetype="memo"), "SCHEMA_INVALID")
    refused(await sdk(env, G01).update_status("0123456789abcdef0123456789abcdef", "archived"), "SCHEMA_INVALID")
    # too large: counted by /v1 too
    big = b"<" + b"x" * env.config.limits.max_envelope_bytes
    refused(await sdk(env, G01).send_edoc(big), "TOO_LARGE")
    # the same document with the right messagetype goes through
    assert (await sdk(env, G01).send_edoc(document, to=json.dumps([H53])))["status"] == "OK"

    async with await StatsStore.open(env.config.stats_url) as store:
        stats = await query_stats(store, env.config.directory)
    # the refusals /v1 decided are counted like any: messagetype, to, sender, XML, size
    assert stats["by_reason"] == {"SCHEMA_INVALID": 2, "FORBIDDEN": 1, "XML_MALFORMED": 1, "TOO_LARGE": 1}


async def test_broker_down_is_a_retryable_fail_not_a_500(axis_env: Axis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker unreachable: sendEdoc answers FAIL UNAVAILABLE with HTTP 503 (nothing taken; retry), DocId
    present; a later attempt goes through."""
    env = axis_env
    server = env.servers[env.agency(G01)["server"]]

    async def down(*args: object, **kw: object) -> None:
        raise ConnectionError("broker gone")

    document = sign_as(env, G01, unsigned(G01, [H53]))
    with monkeypatch.context() as m:
        m.setattr(server.publisher, "publish", down)
        g01 = sdk(env, G01)
        answer = await g01.send_edoc(document)
        assert g01.last is not None and g01.last.status_code == 503
        assert (answer["status"], answer["ErrorCode"], answer["DocId"]) == ("FAIL", "UNAVAILABLE", "")
    again = await sdk(env, G01).send_edoc(document)
    assert again["status"] == "OK", again
    await wait_for(lambda: inbox(env, H53), what="H53 receives the retried document")


async def test_failed_macs_count_against_the_same_limit_as_tokens(axis_env: Axis) -> None:
    """Wrong secrets on /vxp and wrong tokens on /v1 share one failed-authentication limit per client address;
    over it, /vxp answers FAIL UNAUTHORIZED with HTTP 429 without checking the MAC (the right secret too)."""
    env = axis_env
    limit = env.config.limits.auth_failures
    for _ in range(limit - 1):
        refused(await sdk(env, G01, secret="wrong").count_receive_edoc(), "UNAUTHORIZED")
    r = await env.client(G01, token="wrong").get("/v1/inbox")  # the limit's last failure, through /v1
    assert r.status_code == 401
    right = sdk(env, G01)
    answer = await right.count_receive_edoc()
    assert right.last is not None and right.last.status_code == 429
    refused(answer, "UNAUTHORIZED")
    assert "too many" in answer["ErrorDesc"].lower() or "retry" in answer["ErrorDesc"].lower()
