"""CPU time per request of the simulator's HTTP path: httpx vs aiohttp (if installed) vs ``axis.sim.http``.

A local uvicorn server (its own process, FastAPI, one route answering ``202 {"id", "document_id",
"recipients"}`` like ``POST /v1/documents``) takes N POSTs of a ~10 KB body, ``--concurrency`` in flight, from
each client in turn (uvloop, one keep-alive pool). The figure is the CLIENT process's CPU time per request
(``time.process_time``), which hardly moves with what else runs on the machine.

    python bench/sim_http.py [--requests 4000] [--concurrency 48] [--json out.json] [--tls]

``--tls``: the server speaks HTTPS (a server certificate from a throwaway axis CA, the SSLContext of
``axis.core.tlsconfig``) and every client verifies it against that CA — keep-alive makes it one handshake per
connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import write_json  # noqa: E402

SERVER = """
import uvicorn
import orjson
from fastapi import FastAPI, Request, Response
app = FastAPI()
@app.post("/v1/documents")
async def submit(request: Request):
    body = await request.body()
    out = {"id": "x" * 32, "document_id": "000.00.00.G22,1/CV", "recipients": [len(body)]}
    return Response(orjson.dumps(out), status_code=202, media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False, **TLS)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(n: int, concurrency: int, one: Callable[[], Awaitable[int]]) -> tuple[float, float]:
    sem = asyncio.Semaphore(concurrency)
    statuses: list[int] = []

    async def task() -> None:
        async with sem:
            statuses.append(await one())

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(task() for _ in range(n)))
    c1, t1 = time.process_time(), time.perf_counter()
    assert statuses.count(202) == n, f"not all 202: {set(statuses)}"
    return 1000 * (c1 - c0) / n, n / (t1 - t0)


async def bench_httpx(url: str, body: bytes, n: int, conc: int, ctx: Any = None) -> tuple[float, float]:
    import httpx

    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0, connect=10.0),
                                 verify=ctx if ctx is not None else True) as c:
        headers = {"Authorization": "Bearer t", "Content-Type": "application/xml"}

        async def one() -> int:
            r = await c.post(url, content=body, headers=headers)
            r.json()
            return r.status_code

        await _run(50, conc, one)
        return await _run(n, conc, one)


async def bench_aiohttp(url: str, body: bytes, n: int, conc: int, ctx: Any = None) -> tuple[float, float]:
    import aiohttp

    conn = aiohttp.TCPConnector(limit_per_host=16, ssl=ctx if ctx is not None else True)
    async with aiohttp.ClientSession(connector=conn) as s:
        headers = {"Authorization": "Bearer t", "Content-Type": "application/xml"}

        async def one() -> int:
            async with s.post(url, data=body, headers=headers) as r:
                await r.json()
                return r.status

        await _run(50, conc, one)
        return await _run(n, conc, one)


async def bench_axis(url: str, body: bytes, n: int, conc: int, ctx: Any = None) -> tuple[float, float]:
    from axis.sim.http import Pool

    async with Pool(ssl_context=ctx) as pool:
        headers = {"Authorization": "Bearer t", "Content-Type": "application/xml"}

        async def one() -> int:
            r = await pool.request("POST", url, content=body, headers=headers)
            r.json()
            return r.status

        await _run(50, conc, one)
        return await _run(n, conc, one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tls", action="store_true", help="HTTPS, verified against a throwaway axis CA")
    a = ap.parse_args()
    import tempfile

    import uvloop

    port = _free_port()
    tls, ctx = "{}", None
    if a.tls:
        from axis.core import pki
        from axis.core.tlsconfig import client_context

        tmp = Path(tempfile.mkdtemp(prefix="axis-bench-tls-"))
        ca = pki.CertificateAuthority.init(tmp, algorithm="ec")
        cert = pki.issue_server_certificate(tmp)
        tls = (f"{{'ssl_context_factory': lambda c, d: __import__('axis.core.tlsconfig', fromlist=['x'])"
               f".server_context({str(cert.cert_path)!r}, {str(cert.key_path)!r})}}")
        ctx = client_context(ca.ca_path)
    code = SERVER.replace("PORT", str(port)).replace("**TLS", f"**{tls}")
    server = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"{'https' if a.tls else 'http'}://127.0.0.1:{port}/v1/documents"
    body = os.urandom(7500).hex()[:10_000].encode()
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        results: dict[str, Any] = {}
        clients = {"httpx": bench_httpx, "aiohttp": bench_aiohttp, "axis.sim.http": bench_axis}
        for name, fn in clients.items():
            try:
                ms, rate = uvloop.run(fn(url, body, a.requests, a.concurrency, ctx))
            except ImportError:
                print(f"{name:>14}: not installed")
                continue
            results[name] = {"client_cpu_ms_per_request": round(ms, 3), "requests_per_s": round(rate)}
            print(f"{name:>14}: {ms:.3f} ms client CPU per request   ({rate:,.0f} requests/s wall, server-bound)")
    finally:
        server.terminate()
        server.wait()
    if a.json:
        write_json(a.json, {"benchmark": "sim_http", "requests": a.requests, "tls": a.tls, "results": results})


if __name__ == "__main__":
    main()
