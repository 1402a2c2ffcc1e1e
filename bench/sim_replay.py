"""Replay throughput: the seed-2019 traffic end to end through a real axis, against the client's own signing rate.

    python bench/sim_replay.py [--documents 2000] [--full] [--json] [--base-port 18701]

Baseline (same run, same machine): how many planned documents per second the simulator alone can build and sign
(EC P-256, one core). Then ``axis demo --exit --json`` with the same scenario scaled to ``--documents`` (``--full``:
all 28,024) on a fresh work directory; the ratio replay/baseline shows how much of the client's own speed the
whole axis (endpoints, router, deliveries, statuses, counters) keeps. Needs RabbitMQ on 127.0.0.1 (set
AXIS_AMQP_URL to use a vhost other than the default).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axis.core.pki import CertificateAuthority  # noqa: E402
from axis.sim import build, plan, scenario  # noqa: E402


def baseline(n: int = 600) -> float:
    sc = scenario.scale(scenario.load("seed-2019"), documents=n, bad=0)
    with tempfile.TemporaryDirectory() as d:
        ca = CertificateAuthority.init(Path(d), algorithm="ec")
        keys = {}
        for a in sc.agencies:
            issued = ca.issue(a.code, name=a.name, algorithm="ec")
            keys[a.code] = build.KeyPaths(str(issued.key_path), str(issued.cert_path), a.name)
        b = build.Builder(keys)
        items = [p for p in plan.plan(sc, 1) if isinstance(p, plan.PlannedMessage)]
        b.build(items[0])
        t = time.perf_counter()
        for p in items:
            b.build(p)
        return len(items) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=2000)
    ap.add_argument("--full", action="store_true", help="the whole seed-2019 (28,024 documents)")
    ap.add_argument("--base-port", type=int, default=18701)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    base = baseline()
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "axis", "demo", "--exit", "--json", "--quiet", "--work-dir", str(Path(d) / "w"),
               "--base-port", str(args.base_port)]  # fmt: skip
        if not args.full:
            cmd += ["--documents", str(args.documents)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        sys.exit(f"demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = orjson.loads(proc.stdout.strip().splitlines()[-1])
    docs = report["simulator"]["documents"]
    replay = docs / report["seconds"]
    out = {
        "documents": docs,
        "deliveries": report["received"],
        "agree": report["agree"],
        "replay_seconds": report["seconds"],
        "phases": report["phases"],
        "demo_wall_seconds": round(wall, 1),
        "replay_docs_per_s": round(replay, 1),
        "baseline_build_sign_docs_per_s": round(base, 1),
        "ratio_replay_over_baseline": round(replay / base, 3),
    }
    if args.json:
        print(orjson.dumps(out).decode())
    else:
        for k, v in out.items():
            print(f"{k:34} {v}")


if __name__ == "__main__":
    main()
