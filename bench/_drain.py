"""Drain measurement shared by the router and the relay benchmarks.

One run: a fresh vhost, the axis topology, the inbound queue ``axis.submissions`` pre-filled with N signed
envelopes (confirmed, before any consumer exists), then K worker processes started as competing consumers.
The rate is taken between 5 % and 100 % of the expected deliveries in the ``axis.server.<id>`` queues, so process
start-up, imports and first connections are not counted, the same way for every kind of worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson

from axis.broker.transport import declare_topology
from axis.core.wire import EX_SUBMIT, Q_DEAD, Q_SUBMISSIONS, server_queue
from bench._common import H_META, H_TARGETS, SERVERS, Corpus, cpu_seconds, plan, rss_kb, server_id

SERVER_IDS = [server_id(j) for j in range(SERVERS)]


async def prefill(url: str, c: Corpus, n: int, *, window: int = 500) -> int:
    """Declare the topology and publish ``n`` envelopes to ``axis.submit``, confirmed; return expected deliveries."""
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        await declare_topology(ch, SERVER_IDS)
        ex = await ch.get_exchange(EX_SUBMIT)
        expected = 0
        pending: list[Any] = []
        for i, (sender_server, targets, body) in enumerate(c.records(n)):
            expected += len(targets)
            msg = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                   content_type="application/xml",
                                   headers={"x-axis-kind": "document", "x-axis-server": sender_server,
                                            H_TARGETS: ",".join(targets), H_META: relay_meta(i, sender_server, body)})
            pending.append(ex.publish(msg, routing_key=""))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending = []
        if pending:
            await asyncio.gather(*pending)
        q = await ch.declare_queue(Q_SUBMISSIONS, passive=True)
        depth = q.declaration_result.message_count
        if depth != n:
            raise RuntimeError(f"pre-fill left {depth} messages in {Q_SUBMISSIONS}, expected {n}")
        return expected
    finally:
        await conn.close()


def relay_meta(i: int, sender_server: str, body: bytes) -> str:
    """What the relay needs to publish what the router would for envelope ``i`` without parsing it."""
    sender, recipients, servers = plan(i)
    targets: dict[str, list[str]] = {}
    for code, sid in zip(recipients, servers, strict=True):
        targets.setdefault(sid, []).append(code)
    a = body.find(b"<DocumentId>") + len(b"<DocumentId>")
    doc_id = body[a : body.find(b"</DocumentId>", a)].decode() if a >= len(b"<DocumentId>") else f"bench-{i}"
    return orjson.dumps({"sender": sender, "server": sender_server, "document_id": doc_id,
                         "sha256": hashlib.sha256(body).hexdigest(), "targets": targets}).decode()


async def _depths(ch: Any, names: Sequence[str]) -> list[int]:
    out = []
    for name in names:
        q = await ch.declare_queue(name, passive=True)
        out.append(q.declaration_result.message_count or 0)
    return out


@dataclass
class Drain:
    """What one drain measured."""

    workers: int
    envelopes: int
    deliveries: int
    seconds: float  # between 5 % and 100 % of the deliveries
    rate: float  # envelopes per second in that window
    delivery_rate: float
    dead: int  # messages in axis.dead at the end (must be 0: nothing refused)
    worker_cpu_s: list[float] = field(default_factory=list)
    worker_rss_kb: list[int] = field(default_factory=list)
    complete: bool = True
    cpu_ms_per_envelope: float | None = None  # the workers' CPU time per envelope in the measured window

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _routed(stats_db: Path, expected: int, n: int) -> int:
    """Deliveries made so far, from the router's statistics store: documents recorded as accepted (after their
    deliveries were confirmed) times the mean fan-out. The router packs the deliveries of a batch bound for one
    server into one message (a bundle), so its queue depths do not count deliveries."""
    try:
        db = sqlite3.connect(f"file:{stats_db}?mode=ro", uri=True, timeout=1.0)
        try:
            (accepted,) = db.execute("SELECT count(*) FROM axis_accepted").fetchone()
        finally:
            db.close()
    except sqlite3.Error:  # not created yet
        return 0
    return int(accepted) * expected // n


def _relayed(progress: Path, expected: int, n: int) -> int:
    """Deliveries made so far by relay workers: envelopes they acked (``bench/relay.py`` progress files) times the
    mean fan-out."""
    from bench.relay import acked

    return acked(progress) * expected // n


async def watch(url: str, expected: int, procs: Sequence[subprocess.Popen[bytes]], *, timeout: float,
                poll: float = 0.05, stats_db: Path | None = None, progress: Path | None = None, n: int = 0
                ) -> tuple[float | None, float | None, int, list[float]]:
    """Poll until ``expected`` deliveries are made: with ``stats_db``, the router's own count of routed documents
    (:func:`_routed`); with ``progress``, the relay's (:func:`_relayed`); else messages in the delivery queues
    (one per delivery).

    Returns (t at 5 %, t at 100 %, delivered, the workers' CPU seconds at 5 %)."""
    conn = await aio_pika.connect(url)
    names = [server_queue(s) for s in SERVER_IDS]
    t5 = t100 = None
    total = 0
    cpu5: list[float] = []
    below: tuple[float, list[float]] | None = None
    try:
        ch = await conn.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stats_db is not None:
                total = _routed(stats_db, expected, n)
            elif progress is not None:
                total = _relayed(progress, expected, n)
            else:
                total = sum(await _depths(ch, names))
            now = time.perf_counter()
            if t5 is None and total >= 0.05 * expected:
                if total >= expected and below is not None:  # all in one poll (a small run, one batch)
                    t5, cpu5 = below
                else:
                    t5 = now
                    cpu5 = [cpu_seconds(p.pid) for p in procs]
            elif t5 is None:
                below = (now, [cpu_seconds(p.pid) for p in procs])  # the last poll before the 5 % mark
            if total >= expected:
                t100 = now
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited during the drain: " + ", ".join(
                    f"pid {p.pid} rc {p.returncode}" for p in procs if p.returncode is not None))
            await asyncio.sleep(poll)
    finally:
        await conn.close()
    return t5, t100, total, cpu5


async def _dead(url: str) -> int:
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel()
        return (await _depths(ch, [Q_DEAD]))[0]
    finally:
        await conn.close()


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _die_with_parent() -> None:
    """In the child: SIGTERM when the harness dies (even by SIGKILL), so no worker outlives a benchmark."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(cmd: Sequence[str], k: int, env: dict[str, str] | None = None) -> list[subprocess.Popen[bytes]]:
    """K worker processes running ``cmd`` (stderr inherited so a crash is visible)."""
    e = {**os.environ, **(env or {})}
    return [subprocess.Popen(list(cmd), env=e, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            for _ in range(k)]


async def drain(url: str, c: Corpus, n: int, cmd: Sequence[str], k: int, *, timeout: float = 600,
                env: dict[str, str] | None = None, profile: Path | None = None, stats_db: Path | None = None,
                progress: Path | None = None) -> Drain:
    """Pre-fill ``n`` envelopes, start ``k`` workers running ``cmd`` and measure the drain (``stats_db``: the
    routers' statistics store, which counts what they routed; ``progress``: the relay workers' progress files).

    With ``profile`` (a directory), py-spy samples every worker for the whole drain and writes collapsed stacks
    (``<pid>.txt``, flamegraph.pl / speedscope input) there; sampling costs a little throughput.
    """
    expected = await prefill(url, c, n)
    procs = spawn(cmd, k, env)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spies = [subprocess.Popen([spy, "record", "--nonblocking", "--format", "raw", "-r", "200",
                                       "-o", str(profile / f"{p.pid}.txt"), "--pid", str(p.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in procs]
        t5, t100, total, cpu5 = await watch(url, expected, procs, timeout=timeout, stats_db=stats_db,
                                            progress=progress, n=n)
        cpu = [cpu_seconds(p.pid) for p in procs]
        rss = [rss_kb(p.pid) for p in procs]
    finally:
        stop(procs)
        for s in spies:
            s.wait(30)
    dead = await _dead(url)
    if t5 is None or t100 is None or t100 <= t5:
        return Drain(k, n, total, 0.0, 0.0, 0.0, dead, complete=False)
    secs = t100 - t5
    done = expected - int(0.05 * expected)
    rate = done / secs / (expected / n)
    cpu_ms = 1000 * (sum(cpu) - sum(cpu5)) / (done / (expected / n))
    return Drain(k, n, expected, secs, rate, done / secs, dead, cpu, rss, cpu_ms_per_envelope=cpu_ms)
