"""End to end: HTTP submit → stored in every recipient's inbox, through a whole axis brought up like ``axis up``
(endpoint-server hosts and its routers: as many as ``axis up`` runs, ``config.routers``, unless ``--routers N``) on
its own vhost and work directory.

The load generator is the simulator's HTTP client (``axis.sim.http.Pool``: ~0.1 ms of CPU per request, where
httpx costs ~3-5 ms and would take a large share of a 2-core machine from the axis it measures). Every phase
reports the generator's own CPU time per document (its event loop thread's CPU time over the submissions), so
the table shows what the axis sustains, not what the client can push; a slice of the same documents through
httpx, same axis, same run, is its baseline.

- sustained: closed loop (64 submissions in flight) of N pre-signed documents (RSA-2048, ~10 KB, 2-3 recipients
  on different servers); documents per second from the first submit until the last delivery is committed;
- latency at 10, 100 and 250 documents/s offered (batching must keep latency low at low load): open loop
  (submissions start on schedule, whether or not earlier ones have finished); per document, from the start of its
  POST to the commit of its last recipient's inbox row (``received_at`` in the servers' inbox stores, read after
  the run). p50/p99.

Baselines, same run: for throughput, the relay's envelope rate from the router drain is the broker ceiling
(reported by bench/router_drain.py); here each latency figure stands beside the HTTP part alone (POST → 202,
which already includes the endpoint's verification and the confirmed publish).

    python bench/e2e.py [--documents 3000] [--seconds 10]
    python bench/e2e.py --rate 250 [--rounds 3] [--seconds 10]   # only open-loop rounds at one rate, one axis
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import ssl
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from axis.sim.http import Pool, TransportError
from bench._common import Result, SpeedProbe, beam_pid, cpu_seconds, temp_vhost
from tests.support.testing import free_port_block

SERVERS = [("d-a", "dedicated"), ("d-b", "dedicated"), ("sh-1", "shared"), ("sh-2", "shared")]
AGENCIES = [
    ("000.00.00.G22", "Văn phòng Chính phủ", "d-a"),
    ("000.00.00.H53", "UBND tỉnh Tây Ninh", "d-b"),
    ("000.00.00.G01", "Bộ Công an", "sh-1"),
    ("000.00.00.G03", "Bộ Giáo dục và Đào tạo", "sh-1"),
    ("000.00.00.G04", "Bộ Tài chính", "sh-1"),
    ("000.00.00.G05", "Bộ Tư pháp", "sh-2"),
    ("000.00.00.G06", "Bộ Y tế", "sh-2"),
    ("000.00.00.G07", "Bộ Xây dựng", "sh-2"),
]



#: documents pushed before anything is measured, 64 in flight: the axis's caches are warm. Connections are not all
#: kept: each phase has a pool of its own, and a server closes a connection idle for ``limits.keep_alive_seconds``
#: (5 s), which the pool's least recently used ones reach. A closed loop of 3,000 documents at 64 in flight opens
#: ~150 connections (TLS handshakes, ~1.2 ms of a host's CPU each: ~1.5 % of the axis's CPU), as a real client with
#: a varying number of requests in flight would (bench/README.md, session 10)
WARM = 256
LOG_LAG = 1.0  # seconds: the log writer's last batch reaches the store


def _route(i: int) -> tuple[str, list[str]]:
    """Sender and 2-3 recipients on servers other than the sender's and each other's (mean fan-out 2.84)."""
    by_server: dict[str, list[str]] = {}
    for code, _, sid in AGENCIES:
        by_server.setdefault(sid, []).append(code)
    sids = [s for s, _ in SERVERS]
    src = sids[i % len(sids)]
    others = [s for s in sids if s != src]
    n = 3 if i % 25 < 21 else 2
    sender = by_server[src][(i // len(sids)) % len(by_server[src])]
    recipients = [by_server[s][(i // 7) % len(by_server[s])] for s in others[:n]]
    return sender, recipients


def _sign_chunk(args: tuple[dict[str, Any], int, int, int]) -> list[tuple[str, list[str], bytes]]:
    keys, start, stop, size = args
    from axis.core import pki as pkimod
    from axis.core.signing import sign
    from tests.support.testing import make_edxml

    loaded = {c: (pkimod.load_key(Path(k).read_bytes()), pkimod.load_certs(Path(cert).read_bytes())[0])
              for c, (k, cert) in keys.items()}
    out = []
    for i in range(start, stop):
        sender, recipients = _route(i)
        key, cert = loaded[sender]
        out.append((sender, recipients, sign(make_edxml(sender, recipients, size=size, number=i + 1, seed=i), key,
                                             cert)))
    return out


def presign(connections: dict[str, Any], n: int, size: int = 8000, start: int = 0
            ) -> list[tuple[str, list[str], bytes]]:
    """Documents ``start`` … ``start + n - 1`` (each number its own DocumentId), signed in worker processes."""
    keys = {a["code"]: (a["key"], a["cert"]) for a in connections["agencies"]}
    stop = start + n
    jobs = [(keys, a, min(a + 250, stop), size) for a in range(start, stop, 250)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        return [d for chunk in pool.map(_sign_chunk, jobs) for d in chunk]


def _inbox_rows(config: Any) -> dict[tuple[str, str], float]:
    """(agency, document_id) → received_at, read from every server's SQLite inbox store."""
    rows: dict[tuple[str, str], float] = {}
    for s in config.servers:
        path = s.inbox_url.split(":///", 1)[1]
        if not Path(path).exists():
            continue
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for agency, doc_id, at in db.execute("SELECT agency, document_id, received_at FROM axis_received"):
                rows[(agency, doc_id)] = at
    return rows


def _log_times(config: Any, doc_ids: set[str]) -> dict[str, dict[str, float]]:
    """document_id → {"submitted": s, "routed": s} (epoch seconds) from the evidence log's leaves: ``submitted`` is
    when the door published the document (the router's clock minus the door's own latency header), ``routed`` when a
    router decided it. Read from the SQLite log store (empty for another store)."""
    from axis.core.evidence import EVENT_TYPES
    from axis.log.store import _sqlite_path

    path = _sqlite_path(config.evidence.url)
    if path is None or not Path(path).exists():
        return {}
    kinds = {EVENT_TYPES.index("submitted"): "submitted", EVENT_TYPES.index("routed"): "routed"}
    out: dict[str, dict[str, float]] = {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for kind, at, doc_id in db.execute("SELECT kind, at, document_id FROM axis_log_leaves WHERE kind IN (?, ?)",
                                           tuple(kinds)):
            if doc_id in doc_ids:
                out.setdefault(doc_id, {})[kinds[kind]] = at / 1000
    return out


def stages(starts: dict[str, float], last: dict[str, float], log: dict[str, dict[str, float]]) -> dict[str, float]:
    """Where the end-to-end latency goes, by stage (ms): the door (scheduled start → published), the router
    (published → routed: the submission's confirm, queue and batch wait, the decision), the delivery (routed → the
    last recipient's inbox commit: the router's publishes and their confirm, the host's check and commit). Each
    stage's p50, and its median over the slowest 1 % of documents (``tail_…``: what makes the p99)."""
    parts: dict[str, list[float]] = {"door": [], "to_router": [], "to_inbox": []}
    totals: list[float] = []
    for doc_id, times in log.items():
        if doc_id in last and {"submitted", "routed"} <= times.keys():
            parts["door"].append(1000 * (times["submitted"] - starts[doc_id]))
            parts["to_router"].append(1000 * (times["routed"] - times["submitted"]))
            parts["to_inbox"].append(1000 * (last[doc_id] - times["routed"]))
            totals.append(1000 * (last[doc_id] - starts[doc_id]))
    out = {f"{name}_p50_ms": round(_pct(xs, 50), 1) for name, xs in parts.items() if xs}
    if totals:
        slow = sorted(range(len(totals)), key=totals.__getitem__)[-max(1, len(totals) // 100):]
        out.update({f"tail_{name}_ms": round(_pct([xs[i] for i in slow], 50), 1) for name, xs in parts.items()})
    return out


def _cpu() -> float:
    """The load generator's CPU seconds: this thread's (the event loop's). ``axis up``'s supervisor threads
    (trust watch, control socket) run in this process too, but they are the axis's, not the generator's."""
    return time.thread_time()


def _aggregate(config: Any, sql: str) -> list[Any]:
    """One aggregate over every server's inbox store (``count(*)``, ``max(...)``: cheap to poll, unlike reading
    every row)."""
    out = []
    for s in config.servers:
        path = s.inbox_url.split(":///", 1)[1]
        if not Path(path).exists():
            continue
        with (contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db,
              contextlib.suppress(sqlite3.OperationalError)):  # the table is not there yet
            out.append(db.execute(sql).fetchone()[0])
    return [v for v in out if v is not None]


def _count_rows(config: Any) -> int:
    """Inbox rows stored so far."""
    return sum(_aggregate(config, "SELECT count(*) FROM axis_received"))


def _last_stored(config: Any) -> float:
    """The latest ``received_at`` of any inbox row."""
    return max(_aggregate(config, "SELECT max(received_at) FROM axis_received"), default=0.0)


def _doc_id(body: bytes) -> str:
    a = body.index(b"<DocumentId>") + len(b"<DocumentId>")
    return body[a : body.index(b"</DocumentId>", a)].decode()


async def _wait_count(config: Any, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (n := _count_rows(config)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return n


async def _wait_stored(config: Any, expected: int, timeout: float) -> dict[tuple[str, str], float]:
    await _wait_count(config, expected, timeout)
    return _inbox_rows(config)


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Axis:
    """A whole axis (``axis.ops.up.start``) on a fresh vhost and work directory."""

    def __init__(self, url: str, work: Path, routers: int | None = None, *, tls: bool = True) -> None:
        from axis.config import generate_workdir, load_config

        base = free_port_block(len(SERVERS))
        self.config_path, self.connections = generate_workdir(
            work, AGENCIES, SERVERS, base_port=base, algorithm="rsa", amqp_url=url, server_signs=False, tls=tls,
            client_certs=False, **({"routers": routers} if routers is not None else {}))  # None: as axis up runs
        self.config = load_config(self.config_path)
        self.verify = self.config.client_ssl()  # HTTPS (the default): the axis CA
        self.work = work
        self.routers = self.config.routers
        self.endpoints = {a["code"]: (a["endpoint"], a["token"]) for a in self.connections["agencies"]}
        self.run: Any = None

    def __enter__(self) -> Axis:
        from axis.ops.up import start

        self.run = start(self.config_path, self.work, self.connections, routers=self.routers, admin=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.run is not None:
            self.run.stop()


def client(ax: Axis, concurrency: int) -> Pool:
    """The load generator's keep-alive pool (the simulator's client), trusting the axis CA under HTTPS."""
    ctx = ax.verify if isinstance(ax.verify, ssl.SSLContext) else None
    return Pool(timeout=60, max_idle=concurrency, ssl_context=ctx)


async def _submit(pool: Pool, ax: Axis, sender: str, body: bytes) -> float:
    endpoint, token = ax.endpoints[sender]
    t = time.time()
    r = await pool.request("POST", f"{endpoint}/v1/documents", content=body,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"})
    if r.status != 202:
        raise RuntimeError(f"submit refused: {r.status} {r.text[:300]}")
    return t


async def sustained(ax: Axis, docs: list[tuple[str, list[str], bytes]], concurrency: int = 64) -> dict[str, Any]:
    expected = sum(len(r) for _, r, _ in docs)
    before = _count_rows(ax.config)
    it = iter(docs)
    errors: list[str] = []
    cpu0 = _cpu()
    async with client(ax, concurrency) as pool:
        t0 = time.time()

        async def lane() -> None:
            for sender, r, body in it:
                try:
                    await _submit(pool, ax, sender, body)
                except (TransportError, RuntimeError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    nonlocal expected
                    expected -= len(r)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
        t_sent = time.time()
    cpu_sent = _cpu()
    done = await _wait_count(ax.config, before + expected, timeout=600) - before
    last = _last_stored(ax.config)
    cpu_end = _cpu()
    ok = len(docs) - len(errors)
    return {"documents": len(docs), "deliveries": done, "expected": expected, "submit_errors": len(errors),
            "first_errors": errors[:3], "submit_rate": ok / (t_sent - t0),
            "rate": ok / (last - t0) if done >= expected and not errors else None,
            "generator_cpu_ms_per_doc": 1000 * (cpu_sent - cpu0) / len(docs),
            "generator_cpu_ms_per_doc_with_polling": 1000 * (cpu_end - cpu0) / len(docs)}


async def open_loop(ax: Axis, docs: list[tuple[str, list[str], bytes]], rate: float,
                    in_flight: int = 64) -> dict[str, Any]:
    """Offer ``rate`` documents/s on schedule; latency to the last recipient's commit, and to the 202 alone.

    Latency counts from each document's *scheduled* start, so time spent waiting for a free request slot (at
    most ``in_flight`` POSTs at once: bounded like the simulator's callers) is part
    of it — no coordinated omission when the axis falls behind.
    """
    starts: dict[str, float] = {}
    http: list[float] = []
    errors: list[str] = []
    before = _count_rows(ax.config)
    expected = sum(len(r) for _, r, _ in docs)
    slots = asyncio.Semaphore(in_flight)
    cpu0 = _cpu()
    async with client(ax, in_flight) as pool:

        async def one(sender: str, body: bytes, scheduled: float) -> None:
            async with slots:
                try:
                    t = await _submit(pool, ax, sender, body)
                except (TransportError, RuntimeError) as exc:  # counted: a failed submit is a missing document
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
            http.append(time.time() - t)
            starts[_doc_id(body)] = scheduled

        t0, w0 = time.monotonic(), time.time()
        tasks = []
        lag = 0.0
        for i, (sender, _r, body) in enumerate(docs):
            due = t0 + i / rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                lag = max(lag, now - due)
            tasks.append(asyncio.create_task(one(sender, body, w0 + i / rate)))
        await asyncio.gather(*tasks)
    cpu_sent = _cpu()
    rows = await _wait_stored(ax.config, before + expected - 3 * len(errors), timeout=300)
    last: dict[str, float] = {}
    for (_agency, doc_id), at in rows.items():
        if doc_id in starts:
            last[doc_id] = max(last.get(doc_id, 0.0), at)
    lat = [1000 * (last[d] - starts[d]) for d in last]
    missing = len(docs) - len(lat)
    await asyncio.sleep(LOG_LAG)  # the log writer's last batch
    breakdown = stages(starts, last, _log_times(ax.config, set(last)))
    return {"offered": rate, "documents": len(docs), "complete": missing == 0, "missing": missing,
            "generator_lag_ms": round(1000 * lag, 1), "submit_errors": len(errors), "first_errors": errors[:3],
            "p50_ms": _pct(lat, 50) if lat else None, "p99_ms": _pct(lat, 99) if lat else None,
            "http_p50_ms": 1000 * _pct(http, 50) if http else None,
            "http_p99_ms": 1000 * _pct(http, 99) if http else None,
            "generator_cpu_ms_per_doc": 1000 * (cpu_sent - cpu0) / len(docs), **breakdown}


async def httpx_generator_cost(ax: Axis, docs: list[tuple[str, list[str], bytes]],
                               concurrency: int = 64) -> float:
    """The generator's baseline: CPU ms per document of the same closed loop through httpx (what this bench used
    before), same axis, same run. Deliveries are awaited so the next phase starts from a quiet axis."""
    import httpx

    before = _count_rows(ax.config)
    it = iter(docs)
    cpu0 = _cpu()
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits, verify=ax.verify) as http:

        async def lane() -> None:
            for sender, _r, body in it:
                endpoint, token = ax.endpoints[sender]
                for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile: once more
                    try:
                        r = await http.post(f"{endpoint}/v1/documents", content=body, headers={
                            "Authorization": f"Bearer {token}", "Content-Type": "application/xml"})
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                if r.status_code != 202:
                    raise RuntimeError(f"submit refused: {r.status_code} {r.text[:300]}")

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    cost = 1000 * (_cpu() - cpu0) / len(docs)
    await _wait_count(ax.config, before + sum(len(r) for _, r, _ in docs), timeout=300)
    return cost


async def measure(documents: int = 3000, seconds: float = 10, log: Any = print, *,
                  routers: int | None = None) -> list[Result]:
    with temp_vhost("axis-bench-e2e") as url, tempfile.TemporaryDirectory(prefix="axis-bench-e2e-") as tmp:
        ax = Axis(url, Path(tmp), routers)
        log(f"e2e: {ax.routers} router process(es)")
        n10, n100, n250 = max(20, int(10 * seconds)), int(100 * seconds), int(250 * seconds)
        n_httpx = min(300, max(20, documents // 5))
        log(f"e2e: signing {WARM + documents + n10 + n100 + n250 + n_httpx} documents …")
        docs = presign(ax.connections, WARM + documents + n10 + n100 + n250 + n_httpx)
        httpx_docs, docs = docs[:n_httpx], docs[n_httpx:]
        with ax:
            log("e2e: axis is up; warm-up …")
            await sustained(ax, docs[:WARM])  # connections, caches; not counted
            docs = docs[WARM:]
            log(f"e2e: open loop 10/s for {n10 / 10:g} s …")
            r10 = await open_loop(ax, docs[:n10], 10)
            log(f"  {r10}")
            docs = docs[n10:]
            log(f"e2e: open loop 100/s for {seconds:g} s …")
            r100 = await open_loop(ax, docs[:n100], 100)
            log(f"  {r100}")
            log(f"e2e: open loop 250/s for {seconds:g} s …")
            r250 = await open_loop(ax, docs[n100 : n100 + n250], 250)
            log(f"  {r250}")
            log(f"e2e: sustained, {len(docs) - n100 - n250} documents, 64 in flight …")
            sus = await sustained(ax, docs[n100 + n250 :])
            log(f"  {sus}")
            log(f"e2e: the generator's baseline, {len(httpx_docs)} documents through httpx …")
            httpx_ms: float | None = None
            try:
                httpx_ms = await httpx_generator_cost(ax, httpx_docs)
                log(f"  httpx {httpx_ms:.2f} ms CPU per document")
            except Exception as exc:  # the baseline's client failing must not lose the axis's figures
                log(f"  httpx baseline failed: {type(exc).__name__}: {exc}")
    raw = {"sustained": sus, "10/s": r10, "100/s": r100, "250/s": r250, "httpx_generator_cpu_ms_per_doc": httpx_ms}
    gen = sus["generator_cpu_ms_per_doc"]
    results = [
        Result("e2e sustained (HTTP submit → every inbox)", sus["rate"], "doc/s", target="≥ 500 doc/s",
               met=sus["rate"] is not None and sus["rate"] >= 500,
               notes="" if sus["rate"] else f"incomplete: {sus['deliveries']}/{sus['expected']} deliveries",
               extra=raw),
        Result("load generator's own CPU per document (sustained)", gen, "ms", baseline=httpx_ms,
               baseline_label="httpx, same axis, same run", target="≤ 0.3 ms", met=gen <= 0.3,
               notes=f"with the inbox polling after the last submit: "
                     f"{sus['generator_cpu_ms_per_doc_with_polling']:.2f} ms; at 100/s "
                     f"{r100['generator_cpu_ms_per_doc']:.2f} ms, at 250/s {r250['generator_cpu_ms_per_doc']:.2f} ms"),
    ]
    for label, r, target in (("10/s", r10, None), ("100/s", r100, None), ("250/s", r250, 100.0)):
        for p in ("p50", "p99"):
            v = r[f"{p}_ms"]
            met = None if target is None or p != "p99" else (r["complete"] and v is not None and v <= target)
            results.append(Result(f"e2e latency {p} at {label} offered", v, "ms", baseline=r[f"http_{p}_ms"],
                                  baseline_label="POST → 202 alone",
                                  target=f"≤ {target:.0f} ms" if met is not None else "(report)", met=met,
                                  notes=("; ".join(n for n in ("reported, no target" if met is None else "",
                                                                         _stage_note(r, p)) if n))
                                  if r["complete"] else
                                  f"{r['missing']} documents never stored ({r['submit_errors']} submits failed)"))
    return results


async def rounds(rate: float, count: int, seconds: float, log: Any = print, *,
                 routers: int | None = None) -> list[dict[str, Any]]:
    """``count`` open-loop rounds at ``rate`` (``seconds`` each, 2 s apart) in one warm axis: how much p50 and p99
    vary from round to round at one load (at 250/s on 2 cores p99 ranged 65–480 ms, bench/README.md, session 10),
    each round with its stages, every component's CPU time per document (``/proc``, the RabbitMQ node's
    included: it counts every vhost's work) and the machine's speed meanwhile (:class:`bench._common.SpeedProbe`:
    a door check's CPU time), which tells a slow round on a slow machine from a slow round of the axis."""
    with temp_vhost("axis-bench-e2e") as url, tempfile.TemporaryDirectory(prefix="axis-bench-e2e-") as tmp:
        ax = Axis(url, Path(tmp), routers)
        n = int(rate * seconds)
        log(f"e2e: {count} rounds of {n} documents at {rate:g}/s; signing {WARM + n * count} documents …")
        docs = presign(ax.connections, WARM + n * count)
        out: list[dict[str, Any]] = []
        with ax:
            await sustained(ax, docs[:WARM])  # connections, caches; not counted
            procs = [(name.rstrip("-0123456789"), p.pid) for name, p in ax.run.procs]
            beam = beam_pid()
            if beam is not None:
                procs.append(("rabbitmq", beam))
            for i in range(count):
                await asyncio.sleep(2)
                with SpeedProbe(ax.config_path, docs[0][2]) as probe:
                    before = [cpu_seconds(pid) for _, pid in procs]
                    r = await open_loop(ax, docs[WARM + i * n : WARM + (i + 1) * n], rate)
                    cpu: dict[str, float] = {}
                    for (kind, pid), t0 in zip(procs, before, strict=True):
                        cpu[kind] = cpu.get(kind, 0.0) + 1000 * (cpu_seconds(pid) - t0) / n
                r["cpu_ms_per_doc"] = {kind: round(ms, 2) for kind, ms in cpu.items()}
                r["door_check_us"] = probe.median_us
                p50, p99 = r["p50_ms"], r["p99_ms"]
                log(f"  round {i + 1}: p50 {p50 or 0:.0f} ms, p99 {p99 or 0:.0f} ms"
                    + ("" if r["complete"] else f" ({r['missing']} documents never stored)")
                    + f"; {_stage_note(r, 'p99')}; CPU per document "
                    + ", ".join(f"{kind} {ms:.2f}" for kind, ms in r["cpu_ms_per_doc"].items()) + " ms"
                    + f"; a door check {probe.median_us or 0:.0f} µs meanwhile")
                out.append(r)
    return out


def _stage_note(r: dict[str, Any], p: str) -> str:
    """Where the p50 and the p99 go (the evidence log's timestamps): door, to the router's decision, to the inbox
    commit — for the p99, the median of each stage over the slowest 1 % of documents."""
    prefix, suffix, what = ("", "_p50_ms", "p50") if p == "p50" else ("tail_", "_ms", "the slowest 1 %")
    if f"{prefix}door{suffix}" not in r:
        return ""
    return (f"{what} by stage: door {r[f'{prefix}door{suffix}']:.0f}, to the router's decision "
            f"{r[f'{prefix}to_router{suffix}']:.0f}, to the last inbox commit {r[f'{prefix}to_inbox{suffix}']:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=3000, help="documents for the sustained figure")
    ap.add_argument("--seconds", type=float, default=10, help="duration of each open-loop rate")
    ap.add_argument("--routers", type=int, help="router processes (default: as axis up runs, config.routers)")
    ap.add_argument("--rate", type=float, help="only open-loop rounds at this rate (documents/s) …")
    ap.add_argument("--rounds", type=int, default=3, help="… this many, --seconds each, in one axis")
    a = ap.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    from bench._common import table

    if a.rate is not None:
        asyncio.run(rounds(a.rate, a.rounds, a.seconds, routers=a.routers))
        return

    results = asyncio.run(measure(a.documents, a.seconds, routers=a.routers))
    print(table(results))
    print(json.dumps(results[0].extra, indent=1))


if __name__ == "__main__":
    main()
