"""Hostile input through every door: the HTTP API and straight onto ``axis.submissions`` (bypassing the endpoint).

Every item of ``tests.support.testing.hostile_corpus`` (plus directory-level attacks) is refused with its exact reason —
problem+json ``reason`` at the door, ``x-axis-reason`` on the dead letter behind it — and nothing reaches an
inbox or is counted as accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from axis.core.reasons import Reason, http_status
from axis.core.wire import EX_SUBMIT, H_KIND, H_REASON, H_SERVER, KIND_DOCUMENT, Q_DEAD, Q_SUBMISSIONS
from tests.faults.harness import G01, G22, H53, MAX_BYTES, Env, drain, queue_depths, running_axis, wait_for
from tests.support.testing import hostile_corpus, make_edxml

pytestmark = pytest.mark.rabbitmq

Item = tuple[str, bytes, Reason]


@pytest.fixture
async def hostile(tmp_path: Path, vhost_url: str) -> AsyncIterator[tuple[Env, list[Item]]]:
    corpus: list[Item] = []

    def build(pki: object) -> None:  # before the verifiers exist: the corpus revokes a certificate
        from tests.support.testing import TestPKI

        assert isinstance(pki, TestPKI)
        corpus.extend(hostile_corpus(pki, max_bytes=MAX_BYTES))
        # directory-level: a certificate from the axis CA for an agency the directory does not know
        stranger = "000.00.00.Z99"
        key, cert = pki.make_cert(stranger)
        from axis.core.signing import sign

        corpus.append(("unknown_sender", sign(make_edxml(stranger, [H53], size=2000), key, cert),
                       Reason.UNKNOWN_SENDER))
        corpus.append(("only_unknown_recipients", pki.sign(make_edxml(G22, ["000.00.00.Z98"], size=2000), G22),
                       Reason.UNKNOWN_RECIPIENT))

    async with running_axis(tmp_path / "work", vhost_url, before_start=build) as env:
        assert env.config.limits.max_envelope_bytes == MAX_BYTES
        yield env, corpus


async def test_hostile_corpus_through_http(hostile: tuple[Env, list[Item]], rabbit_mgmt: tuple) -> None:
    env, corpus = hostile
    http = env.client(G22)
    outcomes = {}
    for name, data, reason in corpus:
        r = await http.post("/v1/documents", content=data, headers={"Content-Type": "application/xml"})
        got = r.json().get("reason") if r.headers.get("content-type", "").startswith("application/") else None
        if reason in (Reason.UNKNOWN_SENDER,):
            reason = Reason.FORBIDDEN  # the endpoint refuses a document whose sender is not the caller's agency
        if reason is Reason.UNKNOWN_RECIPIENT:
            assert r.status_code == 202  # accepted at the door, refused by the router (status 02 back)
            outcomes[name] = "202"
            continue
        outcomes[name] = f"{r.status_code} {got}"
        assert (r.status_code, got) == (http_status(reason), reason.value), (name, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json"), name
    print(f"FAULTS-REPORT hostile-http tried={len(corpus)} refused={sum(v != '202' for v in outcomes.values())}")
    await asyncio.sleep(1.0)
    assert await env.received() == 0
    assert env.counter.accepted == {}


async def test_hostile_corpus_straight_onto_the_queue(hostile: tuple[Env, list[Item]], vhost_url: str,
                                                      rabbit_mgmt: tuple) -> None:
    """An attacker (or a compromised endpoint server) who can publish to axis.submit gains nothing."""
    env, corpus = hostile
    conn = await aio_pika.connect(vhost_url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(EX_SUBMIT, ensure=False)
        for name, data, _ in corpus:
            await ex.publish(aio_pika.Message(data, message_id=name, headers={H_KIND: KIND_DOCUMENT,
                                                                              H_SERVER: "d1"},
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")
    finally:
        await conn.close()
    await wait_for(lambda: len(env.counter.refused) >= len(corpus), timeout=60, what="every item refused")
    await asyncio.sleep(0.5)
    dead = {m.message_id: (m.headers or {}).get(H_REASON) for m in await drain(vhost_url, Q_DEAD)}
    expected = {name: reason.value for name, _, reason in corpus}
    assert {k: (v.decode() if isinstance(v, bytes) else v) for k, v in dead.items()} == expected
    assert env.counter.accepted == {}
    assert await env.received() == 0
    base, auth, _ = rabbit_mgmt


    async def drained() -> bool:  # the management API's figures lag by a few seconds
        depths = await queue_depths(base, auth, vhost_url)
        return depths[Q_SUBMISSIONS] == 0 and all(v == 0 for k, v in depths.items() if k.startswith("axis.server."))

    await wait_for(drained, timeout=30, what="axis.submissions and every delivery queue empty")
    print(f"FAULTS-REPORT hostile-queue tried={len(corpus)} dead-lettered-with-right-reason={len(dead)}")


async def test_body_over_the_limit_is_refused_while_streaming(hostile: tuple[Env, list[Item]]) -> None:
    """Chunked upload (no Content-Length) over the limit: 413 TOO_LARGE before the body is read to its end."""
    env, _ = hostile
    limit = env.config.limits.max_envelope_bytes
    chunk = b"<a>" + b"x" * (64 * 1024 - 3)
    total_chunks = (limit // len(chunk)) * 4
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(total_chunks):
            pulled += 1
            yield chunk

    r = await env.client(G01).post("/v1/documents", content=body(), headers={"Content-Type": "application/xml"})
    assert r.status_code == 413
    assert r.json()["reason"] == "TOO_LARGE"
    assert pulled < total_chunks  # stopped reading: never buffered the whole upload
    # a declared Content-Length over the limit is refused without reading anything
    r = await env.client(G01).post("/v1/documents", content=b"x" * (limit + 1))
    assert (r.status_code, r.json()["reason"]) == (413, "TOO_LARGE")
