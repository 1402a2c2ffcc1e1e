"""Proof serving over HTTP: a sender's receipts (``GET /v1/documents/{id}/receipts``: each recipient's ``stored``
leaf with its inclusion proof against the latest signed tree head) from a real endpoint server, against a log of
realistic size — beside a baseline of the same run: ``GET /v1/log/sth`` (the same door, TLS, token check and one
read of the log store, no proof).

    python bench/evidence_http.py [--leaves 200000] [--documents 1000] [--seconds 10] [--concurrency 8]

Set-up: a work directory (HTTPS, as ``axis up`` makes it) with a dedicated server ``d1`` for the sender; the
evidence log (SQLite) is filled with ``--leaves`` leaves of synthetic traffic (``bench/evidence_log.py``'s) plus,
for each of ``--documents`` documents of the sender, its ``submitted``, ``routed`` and two ``stored`` leaves; one
tree head is signed over all of it with the log key; the sender's inbox gets the matching sent rows. Then
``axis serve --server d1`` runs as its own process (against a throwaway RabbitMQ vhost) and the simulator's cheap
keep-alive client (``axis.sim.http``) asks for random documents' receipts from ``--concurrency`` connections.

Reports requests/s, proofs/s (two per receipt), the server's CPU per request (from /proc) and the client's own
CPU per request. Target (issue 13): proof serving >= 2,000 proofs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import cpu_seconds, machine, temp_vhost  # noqa: E402
from bench.evidence_log import events as background_events  # noqa: E402

SENDER, R1, R2 = "000.00.00.G01", "000.00.00.H01", "000.00.00.H02"
AGENCIES = [(SENDER, "Sender", "d1"), (R1, "Recipient 1", "d2"), (R2, "Recipient 2", "d2")]
SERVERS = [("d1", "dedicated"), ("d2", "shared")]


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free TCP ports on 127.0.0.1."""
    import socket

    for base in range(random.randrange(20_000, 30_000), 32_000, n):
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


async def populate(config: Any, leaves: int, documents: int) -> list[str]:
    """Fill the log and the sender's sent rows; sign one tree head over everything; return the sent rows' ids."""
    from axis.core import pki
    from axis.core.evidence import Event, sign_sth
    from axis.log.store import LogStore
    from endpoints.inbox import open_inbox

    log = await LogStore.open(config.evidence.url)
    inbox = await open_inbox(config.server("d1").inbox_url)
    rids = []
    try:
        for start in range(0, leaves, 5000):
            await log.append(background_events(min(5000, leaves - start), seed=start))
        t = 1_700_000_000_000
        ours = []
        for i in range(documents):
            doc_id = f"{SENDER},2026/11/28,{i}/BENCH"
            digest = random.randbytes(32).hex()
            base: dict[str, Any] = {"sender": SENDER, "document_id": doc_id, "doc_type": 1, "sha256": digest}
            ours += [Event("submitted", t, server="d1", **base), Event("routed", t + 40, **base),
                     Event("stored", t + 90, agency=R1, server="d2", **base),
                     Event("stored", t + 91, agency=R2, server="d2", **base)]
            rid, _ = await inbox.store_sent(SENDER, document_id=doc_id, doc_type=1, recipients=[R1, R2],
                                            subject="bench", data=b"<edXMLEnvelope/>")
            rids.append(rid)
            t += 37
        for start in range(0, len(ours), 5000):
            await log.append(ours[start:start + 5000])
        size = await log.size()
        key = pki.load_key(config.evidence.key.read_bytes())
        cert = config.evidence.cert.read_bytes()
        await log.save_sth(sign_sth(size, int(time.time() * 1000), await log.root(size), key, cert))
    finally:
        await log.close()
        await inbox.close()
    return rids


async def load(url: str, token: str, ca: Path, paths: list[str], seconds: float, concurrency: int
               ) -> tuple[int, float, list[int]]:
    """Ask for ``paths`` (random order) from ``concurrency`` workers for ``seconds``: (requests, client CPU s,
    statuses seen)."""
    from axis.core.tlsconfig import client_context
    from axis.sim.http import Pool

    headers = {"Authorization": f"Bearer {token}"}
    done = 0
    statuses: set[int] = set()
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    async with Pool(ssl_context=client_context(ca)) as pool:
        async def worker(seed: int) -> None:
            nonlocal done
            rnd = random.Random(seed)
            while time.monotonic() < deadline:
                r = await pool.request("GET", url + rnd.choice(paths), headers=headers)
                statuses.add(r.status)
                done += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done, time.process_time() - cpu0, sorted(statuses)


def measure(name: str, pid: int, url: str, token: str, ca: Path, paths: list[str], seconds: float,
            concurrency: int) -> dict[str, Any]:
    asyncio.run(load(url, token, ca, paths, 1.0, concurrency))  # warm: connections, caches
    server0, wall0 = cpu_seconds(pid), time.monotonic()
    n, client_cpu, statuses = asyncio.run(load(url, token, ca, paths, seconds, concurrency))
    wall = time.monotonic() - wall0
    server_cpu = cpu_seconds(pid) - server0
    return {"route": name, "requests": n, "per_s": round(n / wall, 1), "statuses": statuses,
            "server_cpu_ms_per_request": round(1000 * server_cpu / n, 3),
            "client_cpu_ms_per_request": round(1000 * client_cpu / n, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leaves", type=int, default=200_000)
    ap.add_argument("--documents", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from axis.broker.setup import prepare_broker_sync
    from axis.config import generate_workdir, load_config
    with temp_vhost("axis-bench-proofs") as amqp_url, tempfile.TemporaryDirectory(prefix="axis-proofs-") as tmp:
        work = Path(tmp) / "work"
        port = free_ports(3) + 1  # the admin app's port (unused here) just below the servers'
        path, conn = generate_workdir(work, AGENCIES, SERVERS, base_port=port, amqp_url=amqp_url)
        config = load_config(path)
        prepare_broker_sync(config)
        t0 = time.monotonic()
        rids = asyncio.run(populate(config, args.leaves, args.documents))
        filled = time.monotonic() - t0
        log = (work / "serve.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "axis", "serve", "--config", str(path), "--server", "d1"],
                                cwd=work, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = config.server("d1").url
            ca = work / "pki" / "ca.cert.pem"
            token = next(a["token"] for a in conn["agencies"] if a["code"] == SENDER)
            deadline = time.monotonic() + 60
            while True:
                try:
                    import httpx

                    if httpx.get(url + "/healthz", verify=str(ca), timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"axis serve did not start: see {work / 'serve.log'}")
                time.sleep(0.2)
            receipts = measure("receipts", proc.pid, url, token, ca, [f"/v1/documents/{r}/receipts" for r in rids],
                               args.seconds, args.concurrency)
            baseline = measure("log/sth (baseline)", proc.pid, url, token, ca, ["/v1/log/sth"], args.seconds,
                               args.concurrency)
            # check one answer: two proofs, against the tree head of everything
            import httpx

            one = httpx.get(url + f"/v1/documents/{rids[0]}/receipts", verify=str(ca),
                            headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        finally:
            proc.terminate()
            proc.wait(15)
    assert len(one["items"]) == 2 and all(i["proof"]["audit_path"] for i in one["items"]), one
    result = {
        "bench": "evidence_http", "machine": machine(), "leaves": args.leaves + 4 * args.documents,
        "documents": args.documents, "fill_seconds": round(filled, 1), "concurrency": args.concurrency,
        "receipts": receipts, "baseline": baseline,
        "proofs_per_s": round(2 * receipts["per_s"], 1),
        "ratio_to_baseline": round(receipts["per_s"] / baseline["per_s"], 3),
        "target": ">= 2,000 proofs/s",
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
