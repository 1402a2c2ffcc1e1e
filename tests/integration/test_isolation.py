"""Tenant isolation on a shared server: every endpoint × another tenant's token → 404 FORBIDDEN (existence is
never revealed); a wrong or missing token → 401 UNAUTHORIZED; a token of another server's agency → 401."""

from __future__ import annotations

import pytest

from tests.integration.conftest import G01, G03, G22, H41, H53, Axis, wait_for
from tests.integration.test_flow import inbox, unsigned

pytestmark = pytest.mark.rabbitmq
XML = {"content-type": "application/xml"}


async def test_isolation_matrix(axis_env: Axis) -> None:
    env = axis_env
    # G01 (shared) sends to H53 and receives from G22: it owns one sent and one received document
    r = await env.client(G01).post("/v1/documents", content=unsigned(G01, [H53]), headers=XML)
    sent_id = r.json()["id"]
    await env.client(G22).post("/v1/documents", content=unsigned(G22, [G01]), headers=XML)
    [received] = await wait_for(lambda: inbox(env, G01), what="G01 inbox")
    owned = {"sent": sent_id, "received": received["id"]}
    owner_paths = [("GET", "/v1/documents/{id}"), ("POST", "/v1/documents/{id}/ack"),
                   ("POST", "/v1/documents/{id}/status"), ("GET", "/v1/documents/{id}/status")]

    for other in (G03, H41):  # the other tenants of the same shared server
        c = env.client(other)
        assert (await c.get("/v1/inbox")).json()["items"] == []
        for rid in owned.values():
            for method, path in owner_paths:
                kw = {"json": {"code": "03"}} if path.endswith("/status") and method == "POST" else {}
                r = await c.request(method, path.format(id=rid), **kw)
                assert r.status_code == 404, (other, method, path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["reason"] == "FORBIDDEN"
        # and an id that does not exist answers exactly the same
        r = await c.get("/v1/documents/0123456789abcdef0123456789abcdef")
        assert (r.status_code, r.json()["reason"]) == (404, "FORBIDDEN")

    every = [("GET", "/v1/inbox"), ("POST", "/v1/documents"), *owner_paths]
    g22_token = env.agency(G22)["token"]  # valid, but for an agency on another server
    for token in ("wrong-token", g22_token):
        c = env.client(G01, token=token)
        for method, path in every:
            r = await c.request(method, path.format(id=owned["received"]), content=b"<x/>")
            assert r.status_code == 401, (token, method, path)
            assert r.json()["reason"] == "UNAUTHORIZED"
    bare = env.client(G01)
    r = await bare.get("/v1/inbox", headers={"Authorization": ""})
    assert (r.status_code, r.json()["reason"]) == (401, "UNAUTHORIZED")
    r = await bare.get("/v1/inbox", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401

    # the owner still sees its documents
    assert (await env.client(G01).get(f"/v1/documents/{owned['received']}")).status_code == 200
    assert (await env.client(G01).get(f"/v1/documents/{owned['sent']}/status")).status_code == 200
