"""Concurrent submissions against ONE endpoint server (`axis serve` child process, real HTTP, real broker).

    python bench/endpoint_submit.py [--n 200] [--concurrency 200] [--server-root OTHER_CHECKOUT]

Reports documents/s for signed documents (the server verifies) and unsigned ones (the server signs, then
verifies), and the /healthz latency measured DURING each load (how long the event loop is blocked).
Uses a throwaway RabbitMQ vhost; no router runs (submissions just queue).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axis.config import generate_workdir  # noqa: E402
from axis.core import envelope  # noqa: E402
from axis.core.pki import load_certs, load_key  # noqa: E402
from axis.core.signing import sign  # noqa: E402
from axis.core.tlsconfig import client_context  # noqa: E402

MGMT, AUTH = "http://127.0.0.1:15672", ("guest", "guest")
A, B = "000.00.00.G22", "000.00.00.H53"


async def load(url: str, token: str, docs: list[bytes], concurrency: int, verify: Any = True
               ) -> tuple[float, list[float]]:
    sem = asyncio.Semaphore(concurrency)
    probes: list[float] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, verify=verify,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        async def one(d: bytes) -> None:
            async with sem:
                for attempt in range(3):  # a kept-alive connection the server closed meanwhile: send again
                    try:
                        r = await c.post("/v1/documents", content=d, headers={"content-type": "application/xml"})
                        break
                    except httpx.RemoteProtocolError:
                        if attempt == 2:
                            raise
                assert r.status_code == 202, r.text

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=120, verify=verify) as p:
                while not done.is_set():
                    t = time.perf_counter()
                    try:
                        await p.get("/healthz")
                    except httpx.RemoteProtocolError:  # an idle kept-alive connection closed by the server
                        continue
                    probes.append((time.perf_counter() - t) * 1000)
                    await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        t0 = time.perf_counter()
        await asyncio.gather(*(one(d) for d in docs))
        elapsed = time.perf_counter() - t0
        done.set()
        await prober
    return len(docs) / elapsed, probes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--server-root", type=Path, default=ROOT, help="run the server from another checkout "
                    "(e.g. the baseline commit's worktree) for a same-run comparison")
    ap.add_argument("--plain", action="store_true", help="tls: off (plain HTTP): for checkouts older than TLS, "
                    "or to measure what TLS costs")
    args = ap.parse_args()
    vhost = f"axis-bench-{uuid.uuid4().hex[:8]}"
    httpx.put(f"{MGMT}/api/vhosts/{vhost}", auth=AUTH).raise_for_status()
    httpx.put(f"{MGMT}/api/permissions/{vhost}/guest", auth=AUTH,
              json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    proc = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, conn = generate_workdir(Path(tmp), [(A, "A", "d1"), (B, "B", "d2")],
                                         [("d1", "dedicated"), ("d2", "dedicated")], base_port=18951,
                                         amqp_url=f"amqp://guest:guest@127.0.0.1/{vhost}",
                                         broker_auth="shared",  # comparable with older checkouts
                                         tls=not args.plain, client_certs=False)
            verify = client_context(conn["ca"]) if not args.plain else True
            a = next(x for x in conn["agencies"] if x["code"] == A)
            env = {**os.environ, "PYTHONPATH": str(args.server_root)}
            log = Path(os.environ.get("AXIS_BENCH_LOG") or Path(tmp) / "server.log").open("wb")  # noqa: SIM115
            proc = subprocess.Popen([sys.executable, "-m", "axis", "serve", "--config", str(cfg), "--server", "d1"],
                                    env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=log)
            url = a["endpoint"]
            for _ in range(200):
                try:
                    if httpx.get(url + "/healthz", verify=verify).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            key, cert = load_key(Path(a["key"]).read_bytes()), load_certs(Path(a["cert"]).read_bytes())[0]
            unsigned = [envelope.build(envelope.new_document(A, [B], f"bench {i}")) for i in range(args.n)]
            signed = [sign(d, key, cert) for d in unsigned]
            asyncio.run(load(url, a["token"], signed[:20], 20, verify))  # warm-up
            for label, docs in (("signed (server verifies)", signed), ("unsigned (server signs+verifies)",
                                                                       unsigned)):
                rate, probes = asyncio.run(load(url, a["token"], docs, args.concurrency, verify))
                p = sorted(probes) or [0.0]
                print(f"{label:34s} {rate:7.1f} docs/s   /healthz during load: median "
                      f"{statistics.median(p):6.1f} ms, max {p[-1]:7.1f} ms ({len(p)} probes)")
    finally:
        if proc is not None:
            if proc.poll() is not None:
                print(f"the server exited with code {proc.returncode} during the run", file=sys.stderr)
            proc.terminate()
            proc.wait(15)
        httpx.delete(f"{MGMT}/api/vhosts/{vhost}", auth=AUTH)


if __name__ == "__main__":
    main()
