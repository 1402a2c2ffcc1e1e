"""Documents refused by an endpoint server over HTTP are counted in the statistics store (they never reach the
router), exactly once each; failed authentication is not a document refusal."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from axis.stats.query import StatsFilter, query_stats
from axis.stats.store import StatsStore
from tests.integration.conftest import G01, G03, G22, H41, H53, Axis
from tests.integration.test_flow import sign_as, unsigned

pytestmark = pytest.mark.rabbitmq
XML = {"content-type": "application/xml"}


def process_refused(reason: str) -> float:
    return REGISTRY.get_sample_value("axis_documents_refused_total", {"reason": reason}) or 0.0


async def test_http_refusals_are_counted_once_by_reason(axis_env: Axis) -> None:
    env = axis_env
    before = {r: process_refused(r) for r in ("FORBIDDEN", "XML_MALFORMED", "TOO_LARGE", "SIGNATURE_INVALID")}
    c = env.client(G01)
    limit = env.config.limits.max_envelope_bytes
    r = await c.post("/v1/documents", content=unsigned(G03, [H41]), headers=XML)  # G01 posing as G03
    assert (r.status_code, r.json()["reason"]) == (403, "FORBIDDEN")
    r = await c.post("/v1/documents", content=b"<edXML><unclosed>", headers=XML)
    assert (r.status_code, r.json()["reason"]) == (422, "XML_MALFORMED")
    r = await c.post("/v1/documents", content=b"<" + b"x" * limit, headers=XML)
    assert (r.status_code, r.json()["reason"]) == (413, "TOO_LARGE")
    tampered = sign_as(env, G22, unsigned(G22, [H53], subject="Original subject")).replace(
        b"Original subject", b"Altered subject!")
    r = await env.client(G22).post("/v1/documents", content=tampered, headers=XML)
    assert (r.status_code, r.json()["reason"]) == (422, "SIGNATURE_INVALID")
    # not document refusals: a wrong token (401)
    r = await env.client(G01, token="wrong").post("/v1/documents", content=unsigned(G01, [H41]), headers=XML)
    assert (r.status_code, r.json()["reason"]) == (401, "UNAUTHORIZED")

    # the 4xx answers above came after the commit: no waiting needed
    async with await StatsStore.open(env.config.stats_url) as store:
        stats = await query_stats(store, env.config.directory)
        g01 = await query_stats(store, env.config.directory, StatsFilter(agency=G01))
    assert stats["by_reason"] == {"FORBIDDEN": 1, "XML_MALFORMED": 1, "TOO_LARGE": 1, "SIGNATURE_INVALID": 1}
    assert stats["refused"] == 4 and stats["sent"] == 0
    assert g01["by_reason"] == {"FORBIDDEN": 1, "XML_MALFORMED": 1, "TOO_LARGE": 1}  # G22 sent the 4th
    for reason, n in before.items():
        assert process_refused(reason) == n + 1, reason
    assert process_refused("UNAUTHORIZED") == 0
    admin = env.client(G01, token=env.connections["admin"]["token"])  # /metrics takes the admin token
    metrics = (await admin.get("/metrics")).text
    assert "axis_endpoint_auth_failed_total 1.0" in metrics
    assert 'axis_endpoint_refused_total{agency="000.00.00.G01",reason="TOO_LARGE"} 1.0' in metrics


async def test_refusal_rows_carry_sender_and_size(axis_env: Axis) -> None:
    env = axis_env
    body = unsigned(G03, [H41])
    r = await env.client(G01).post("/v1/documents", content=body, headers=XML)
    assert r.status_code == 403
    async with await StatsStore.open(env.config.stats_url) as store:
        from axis.stats.store import refused_table

        async with store.engine.connect() as conn:
            rows = (await conn.execute(refused_table.select())).mappings().all()
    [row] = rows
    assert (row["sender"], row["reason"], row["size"]) == (G01, "FORBIDDEN", len(body))
