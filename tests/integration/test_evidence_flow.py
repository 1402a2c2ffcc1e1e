"""The evidence log end to end against the real RabbitMQ (issue 13's user path): a document sent between two
agencies, its trace read by the sender and by the recipient (and refused to a third agency), the sender's
receipts, the evidence bundle exported and verified offline, one flipped byte refused."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import AsyncIterator

import pytest

from axis.core.evidence import SignedTreeHead, check_consistency, check_inclusion, verify_sth
from axis.core.evidence_bundle import verify_bundle
from axis.evidence.writer import LogWriter
from tests.integration.conftest import G01, G03, G22, H53, Axis, wait_for
from tests.integration.test_flow import inbox, statuses, unsigned

pytestmark = pytest.mark.rabbitmq
XML = {"content-type": "application/xml"}


@pytest.fixture
async def logged(axis_env: Axis) -> AsyncIterator[Axis]:
    """The in-process axis with its log writer (tree heads every 0.2 s)."""
    import dataclasses

    config = dataclasses.replace(axis_env.config,
                                 evidence=dataclasses.replace(axis_env.config.evidence, sth_interval_seconds=0.2))
    writer = LogWriter(config)
    await writer.start()
    try:
        yield axis_env
    finally:
        await writer.stop()


async def _sent_and_stored(env: Axis) -> tuple[str, str, str]:
    """G22 sends to H53 and G01; returns (sender's id, H53's inbox id, DocumentId) once both 01s are back."""
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [H53, G01], subject="Bằng chứng"),
                                   headers=XML)
    assert r.status_code == 202, r.text
    rid, document_id = r.json()["id"], r.json()["document_id"]

    async def both() -> bool:
        return len(await statuses(env, G22, rid)) == 2

    await wait_for(both, what="both recipients' status 01")
    [item] = [i for i in await inbox(env, H53) if i["document_id"] == document_id]
    return rid, item["id"], document_id


async def _trace(env: Axis, code: str, rid: str, types: list[str]) -> list[dict]:  # type: ignore[type-arg]
    async def complete() -> list[dict] | None:  # type: ignore[type-arg]
        r = await env.client(code).get(f"/v1/documents/{rid}/trace")
        assert r.status_code == 200, r.text
        events = r.json()["events"]
        return events if sorted(e["type"] for e in events) == sorted(types) else None

    return await wait_for(complete, what=f"the trace {types}")


async def test_trace_receipts_and_offline_evidence(logged: Axis) -> None:
    env = logged
    rid, h53_rid, document_id = await _sent_and_stored(env)
    expected = ["submitted", "routed", "stored", "stored", "status", "status"]
    events = await _trace(env, G22, rid, expected)
    assert events[0]["type"] == "submitted" and events[1]["type"] == "routed"  # in an order a reader relies on
    assert {e["document_id"] for e in events} == {document_id} and {e["sender"] for e in events} == {G22}
    assert len({e["sha256"] for e in events}) == 1  # every leaf names the same exact bytes
    # the recipient sees the same life; a third agency of the recipient's server does not
    assert [e["leaf_index"] for e in await _trace(env, H53, h53_rid, expected)] == [e["leaf_index"] for e in events]
    r = await env.client(G03).get(f"/v1/documents/{rid}/trace")
    assert (r.status_code, r.json()["reason"]) == (404, "FORBIDDEN")
    r = await env.client(G03).get(f"/v1/documents/{h53_rid}/trace")
    assert (r.status_code, r.json()["reason"]) == (404, "FORBIDDEN")

    # receipts: one per recipient, each a proof against a tree head the CA's log certificate signed
    async def receipts() -> list[dict] | None:  # type: ignore[type-arg]
        r = await env.client(G22).get(f"/v1/documents/{rid}/receipts")
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        return items if len(items) == 2 else None

    items = await wait_for(receipts, what="two receipts")
    assert sorted(i["recipient"] for i in items) == sorted([H53, G01])
    ca = env.config.pki.ca.read_bytes()  # type: ignore[union-attr]
    for item in items:
        sth = SignedTreeHead.from_json(item["sth"])
        verify_sth(sth, [ca])
        check_inclusion(base64.b64decode(item["proof"]["leaf"]), item["proof"], sth)
    r = await env.client(H53).get(f"/v1/documents/{h53_rid}/receipts")
    assert r.status_code == 403 and r.json()["reason"] == "FORBIDDEN"  # the sender's alone

    # the evidence bundle, verified with no axis: good, then one flipped byte in the envelope
    r = await env.client(G22).get("/v1/evidence", params={"document_id": document_id})
    assert r.status_code == 200, r.text
    report = verify_bundle(r.content, ca)
    assert report.ok, report
    tampered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(r.content)) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "envelope.xml":
                data = data.replace("Bằng chứng".encode(), "Bằng chứnG".encode())
            dst.writestr(info, data)
    bad = verify_bundle(tampered.getvalue(), ca)
    assert not bad.ok and bad.reason in ("SIGNATURE_INVALID", "PROOF_INVALID"), bad
    # the recipient exports the same evidence of what it received; a third agency cannot
    r = await env.client(H53).get("/v1/evidence", params={"document_id": document_id, "sender": G22})
    assert r.status_code == 200 and verify_bundle(r.content, ca).ok
    r = await env.client(G03).get("/v1/evidence", params={"document_id": document_id, "sender": G22})
    assert (r.status_code, r.json()["reason"]) == (404, "FORBIDDEN")


async def test_sth_and_consistency_over_http(logged: Axis) -> None:
    env = logged
    await _sent_and_stored(env)

    async def sth() -> dict | None:  # type: ignore[type-arg]
        r = await env.client(H53).get("/v1/log/sth")
        return r.json() if r.status_code == 200 and r.json()["tree_size"] >= 6 else None

    first = SignedTreeHead.from_json(await wait_for(sth, what="a tree head over the first document"))
    await _sent_and_stored(env)  # a second document: the log grows

    async def grown() -> dict | None:  # type: ignore[type-arg]
        r = await env.client(H53).get("/v1/log/sth")
        return r.json() if r.json()["tree_size"] >= first.tree_size + 6 else None

    second = SignedTreeHead.from_json(await wait_for(grown, what="a larger tree head"))
    r = await env.client(H53).get("/v1/log/consistency", params={"first": first.tree_size,
                                                                   "second": second.tree_size})
    assert r.status_code == 200, r.text
    check_consistency(r.json(), first, second)
    r = await env.client(H53).get("/v1/log/consistency", params={"first": 0, "second": 1})
    assert r.status_code == 422
