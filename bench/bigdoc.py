"""A big document through a whole axis (``axis up``: a router, the endpoint hosts, the evidence log writer; real
RabbitMQ, HTTPS), with the peak resident set (Linux ``VmHWM``) of every process.

The document (``--mb``, default 200) is one base64 attachment signed with the sender's key from the work directory
(tests.support.bigdoc: written in chunks, never whole in memory). This script uploads it streamed from the file,
waits for both recipients' inboxes, downloads it back streamed (SHA-256 compared), asks one byte range, checks the
evidence log names the document by the exact bytes' SHA-256, acks it from both recipients and waits for the blob to
be deleted (``blobs.retention_days: 0`` here). The axis's own processes must stay within ``--max-rss-mb`` (300)
each; the client's own peak is reported apart (it holds 1 MB at a time).

    python bench/bigdoc.py             # 200 MB
    python bench/bigdoc.py --mb 30     # what the slow test runs (tests/integration/test_big_documents_up.py)
    python bench/bigdoc.py --blobs postgres   # the blobs in PostgreSQL large objects (a throwaway database)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import yaml

from bench._common import cpu_seconds, temp_pg_database, temp_vhost
from tests.support.testing import free_port_block

SENDER, R1, R2 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01"
SERVERS = [("d-a", "dedicated"), ("d-b", "dedicated"), ("sh-1", "shared")]
AGENCIES = [(SENDER, "Văn phòng Chính phủ", "d-a"), (R1, "UBND tỉnh Tây Ninh", "d-b"), (R2, "Bộ Công an", "sh-1")]
INLINE = 8 * 1024 * 1024


def peak_kb(pid: int) -> int:
    """The peak resident set of a process so far (``VmHWM``, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def self_peak_kb() -> int:
    return peak_kb(int(Path("/proc/self/stat").read_text().split()[0]))


def enable_big_documents(config_path: Path, max_mb: int, blobs_url: str = "") -> None:
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    raw.setdefault("limits", {}).update({"max_document_bytes": max_mb * 1024 * 1024, "inline_max_bytes": INLINE})
    raw["blobs"] = {"retention_days": 0, "gc_interval_seconds": 5, **({"url": blobs_url} if blobs_url else {})}
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")


async def file_stream(path: Path, chunk: int = 1024 * 1024) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while piece := f.read(chunk):
            yield piece


async def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def run(mb: int, *, parallel: int = 1, blobs_url: str = "", log: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """``blobs_url``: keep the blobs in that PostgreSQL database (axis.blobs.postgres) instead of the directory."""
    from axis.blobs import open_blobs
    from axis.config import generate_workdir, load_config
    from axis.core.pki import load_certs, load_key
    from axis.log.store import LogStore
    from axis.ops.up import start
    from tests.support.bigdoc import write_big_document

    size = mb * 1024 * 1024
    out: dict[str, Any] = {"mb": mb, "parallel": parallel, "blobs": "postgres" if blobs_url else "file"}
    with temp_vhost("axis-bench-bigdoc") as url, tempfile.TemporaryDirectory(prefix="axis-bench-bigdoc-") as tmp:
        work = Path(tmp) / "work"
        config_path, connections = generate_workdir(work, AGENCIES, SERVERS, base_port=free_port_block(len(SERVERS)),
                                                    algorithm="rsa", amqp_url=url, routers=1, server_signs=False,
                                                    client_certs=False)
        enable_big_documents(config_path, mb + 16, blobs_url)
        config = load_config(config_path)
        agencies = {a["code"]: a for a in connections["agencies"]}
        a = agencies[SENDER]
        doc = Path(tmp) / "big.xml"
        t = time.monotonic()
        key, cert = load_key(Path(a["key"]).read_bytes()), load_certs(Path(a["cert"]).read_bytes())[0]
        sha, n = write_big_document(doc, key, cert, SENDER, [R1, R2], size - 8192)
        out.update(bytes=n, sha256=sha, generate_seconds=round(time.monotonic() - t, 1))
        log(f"  {n / 1e6:.0f} MB document signed in {out['generate_seconds']} s")
        others = []  # submitted at the same time as the measured one (--parallel)
        for k in range(2, parallel + 1):
            other = Path(tmp) / f"big-{k}.xml"
            write_big_document(other, key, cert, SENDER, [R1, R2], size - 8192, number=k, seed=k)
            others.append(other)
        ctx = config.client_ssl()
        verify: ssl.SSLContext | bool = ctx
        running = start(config_path, work, connections, routers=1, admin=False)
        try:
            procs = [(name, p.pid) for name, p in running.procs]
            base = {name: peak_kb(pid) for name, pid in procs}
            cpu0 = {name: cpu_seconds(pid) for name, pid in procs}

            def client(code: str) -> httpx.AsyncClient:
                ag = agencies[code]
                return httpx.AsyncClient(base_url=ag["endpoint"], verify=verify, timeout=600,
                                         headers={"Authorization": f"Bearer {ag['token']}"})

            async with client(SENDER) as snd, client(R1) as r1, client(R2) as r2:
                t = t0 = time.monotonic()
                r, *rest = await asyncio.gather(*(snd.post("/v1/documents", content=file_stream(d),
                                                           headers={"content-type": "application/xml"})
                                                  for d in (doc, *others)))
                if r.status_code != 202 or any(x.status_code != 202 for x in rest):
                    raise RuntimeError(f"submission refused: {r.status_code} {r.text[:300]}")
                out["upload_seconds"] = round(time.monotonic() - t, 2)
                sub = r.json()

                async def arrived(c: httpx.AsyncClient) -> Any:
                    items = (await c.get("/v1/inbox")).json()["items"]
                    return next((i for i in items if i["document_id"] == sub["document_id"]), None)

                item1 = await wait(lambda: arrived(r1), 600, "the first recipient's inbox")
                item2 = await wait(lambda: arrived(r2), 600, "the second recipient's inbox")
                out["delivered_seconds"] = round(time.monotonic() - t, 2)
                t = time.monotonic()
                h = hashlib.sha256()
                async with r1.stream("GET", f"/v1/documents/{item1['id']}") as resp:
                    async for piece in resp.aiter_bytes():
                        h.update(piece)
                out["download_seconds"] = round(time.monotonic() - t, 2)
                out["download_same_bytes"] = h.hexdigest() == sha
                head = await r2.head(f"/v1/documents/{item2['id']}")  # through uvicorn: headers, no body
                out["head_ok"] = (head.status_code == 200 and head.content == b""
                                  and head.headers.get("content-length") == str(n))
                part = await r2.get(f"/v1/documents/{item2['id']}", headers={"Range": "bytes=1000-1999"})
                with open(doc, "rb") as f:
                    f.seek(1000)
                    out["range_ok"] = part.status_code == 206 and part.content == f.read(1000)

                async def leaves() -> Any:
                    async with await LogStore.open(config.evidence.url) as store:
                        got = await store.leaves_of(SENDER, sub["document_id"])
                    kinds = [json.loads(leaf) for _, leaf in got]
                    return kinds if {"submitted", "routed"} <= {k["type"] for k in kinds} and sum(
                        k["type"] == "stored" for k in kinds) >= 2 else None

                events = await wait(leaves, 120, "the evidence log's leaves")
                out["evidence_sha256_same"] = all(e["sha256"] == sha for e in events)
                out["evidence_events"] = sorted({e["type"] for e in events})
                at = {(e["type"], e.get("agency")): e["at"] for e in events}
                # where the time went, by the log's clocks: door accepted → router routed → each inbox stored
                out["routed_after_accept_seconds"] = round((at[("routed", None)] - at[("submitted", None)]) / 1000, 2)
                out["stored_after_routed_seconds"] = {
                    code: round((at[("stored", code)] - at[("routed", None)]) / 1000, 2) for code in (R1, R2)}
                for c in (r1, r2):
                    async def every(c: httpx.AsyncClient = c) -> Any:
                        items = (await c.get("/v1/inbox")).json()["items"]
                        return items if len(items) == parallel else None

                    for item in await wait(every, 900, "every document in the inbox"):
                        if (await c.post(f"/v1/documents/{item['id']}/ack")).status_code != 200:
                            raise RuntimeError("ack refused")
                out["all_delivered_seconds"] = round(time.monotonic() - t0, 2)

                store = open_blobs(config.blob_dir, config.blobs.url)

                def blobs() -> list[str]:
                    return [name for name, _ in store.blobs()]

                async def collected() -> bool:
                    return not blobs()

                await wait(collected, 60, "the blob's deletion after both acks")
                out["blob_collected"] = True
            out["peak_rss_mb"] = {name: round(peak_kb(pid) / 1024, 1) for name, pid in procs}
            out["cpu_seconds"] = {name: round(cpu_seconds(pid) - cpu0[name], 2) for name, pid in procs}
            with open("/proc/loadavg") as f:
                out["load_average"] = f.read().split()[0]
            out["start_rss_mb"] = {name: round(kb / 1024, 1) for name, kb in base.items()}
        finally:
            running.stop()
    out["client_peak_rss_mb"] = round(self_peak_kb() / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="document size in MiB (default 200)")
    ap.add_argument("--max-rss-mb", type=float, default=300.0, help="the target: each axis process's peak (MB)")
    ap.add_argument("--parallel", type=int, default=1, help="documents of that size submitted at once (default 1)")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    ap.add_argument("--blobs", choices=("file", "postgres"), default="file",
                    help="the blob store: the directory (default) or PostgreSQL large objects (a throwaway "
                         "database on 127.0.0.1:5432)")
    a = ap.parse_args()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(temp_pg_database("axis_bench_blobs")) if a.blobs == "postgres" else ""
        res = asyncio.run(run(a.mb, parallel=a.parallel, blobs_url=url, log=lambda s: print(s, file=sys.stderr)))
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        if res["parallel"] > 1:
            print(f"{res['parallel']} documents submitted at once, all delivered and acked after "
                  f"{res['all_delivered_seconds']} s; figures of the first one:")
        print(f"{res['bytes'] / 1e6:.0f} MB document ({res['blobs']} blob store): upload {res['upload_seconds']} s, "
              f"in both inboxes after {res['delivered_seconds']} s, download {res['download_seconds']} s (same bytes: "
              f"{res['download_same_bytes']}), range ok: {res['range_ok']}, evidence sha256 = the bytes': "
              f"{res['evidence_sha256_same']}, blob collected after both acks: {res['blob_collected']}")
        print(f"by the evidence log: routed {res['routed_after_accept_seconds']} s after the door accepted it, "
              f"stored {res['stored_after_routed_seconds']} s after it was routed")
        print(f"peak RSS per process (MB), and its CPU for the document (s; load average {res['load_average']}):")
        for name, mb in res["peak_rss_mb"].items():
            start_mb, cpu = res["start_rss_mb"][name], res["cpu_seconds"][name]
            print(f"  {name:12s} {mb:7.1f}  (at start {start_mb:.1f})  CPU {cpu:.2f} s")
        print(f"  {'client':12s} {res['client_peak_rss_mb']:7.1f}  (this script)")
    worst = max(res["peak_rss_mb"].values())
    sys.exit(0 if worst <= a.max_rss_mb and res["download_same_bytes"] and res["evidence_sha256_same"] else 1)


if __name__ == "__main__":
    main()
