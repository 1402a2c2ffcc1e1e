"""Replay throughput: the seed-2019 traffic end to end through a real axis, against the client's own signing rate.

    python bench/sim_replay.py [--documents 2000] [--full] [--json] [--base-port 18701]

Baseline (same run, same machine): how many planned documents per second the simulator alone can build and sign
(EC P-256, one core). Then ``axis demo --exit --json`` with the same scenario scaled to ``--documents`` (``--full``:
all 28,024) on a fresh work directory; the ratio replay/baseline shows how much of the client's own speed the
whole axis (endpoints, router, deliveries, statuses, counters) keeps. Needs RabbitMQ on 127.0.0.1 (set
AXIS_AMQP_URL to use a vhost other than the default).

Where the replay's CPU goes: every process of the demo (the endpoint hosts, the router, the log writer, the admin
app; the demo process itself: the simulator and ``axis up``'s supervisor) and the RabbitMQ node, sampled from
``/proc`` every 0.5 s over the run (:class:`ProcessCpu`), and the axis's CPU per document (everything but the
simulator and the signing workers); then how many messages were published to each of the axis's exchanges
(RabbitMQ's management API, on the demo's vhost).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axis.core.pki import CertificateAuthority  # noqa: E402
from axis.sim import build, plan, scenario  # noqa: E402
from bench._common import RABBIT_AUTH, RABBIT_MGMT, beam_pid, cpu_seconds  # noqa: E402

#: what a process of the demo is, by a word of its command line (the demo process itself: "simulator")
KINDS = ((" serve ", "hosts"), (" router ", "router"), (" log-writer ", "log writer"), (" admin ", "admin"))
#: the axis's own processes (the simulator, the supervisor in its process, and the signing workers are not)
AXIS_KINDS = ("hosts", "router", "log writer", "admin", "rabbitmq")


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from the parent ids in ``/proc/<pid>/stat``)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [c for c, p in parents.items() if p == parent]
        found += kids
        todo += kids
    return found


class ProcessCpu:
    """CPU seconds by kind of process over a run: the demo process, its descendants and the RabbitMQ node. A child
    counts with its last sample (children exit at the end of the run, between two samples: what a process spends
    in its last 0.5 s is lost, well under 1 % of a replay)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.beam = beam_pid()
        self.beam_start = cpu_seconds(self.beam) if self.beam else 0.0
        self.last: dict[int, tuple[str, float]] = {}

    def sample(self) -> None:
        for pid in [self.root, *_children(self.root)]:
            try:
                line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                # an exited child not yet reaped has an empty command line: it keeps the kind it had
                kind = self.last[pid][0] if pid in self.last and not line.strip() else self.kind(pid, line)
                self.last[pid] = (kind, cpu_seconds(pid))
            except OSError:  # exited meanwhile: its last sample stands
                continue
        if self.beam:
            with contextlib.suppress(OSError):
                self.last[-1] = ("rabbitmq", cpu_seconds(self.beam) - self.beam_start)

    def kind(self, pid: int, cmdline: str) -> str:
        if pid == self.root:
            return "simulator"
        return next((kind for word, kind in KINDS if word in f" {cmdline} "), "signing workers")

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, seconds in self.last.values():
            out[kind] = out.get(kind, 0.0) + seconds
        return {k: round(v, 1) for k, v in sorted(out.items())}


def published(amqp_url: str) -> dict[str, int]:
    """Messages published to each of the axis's exchanges on the vhost of ``amqp_url`` (the management API's
    statistics, refreshed every 5 s by default: read until two reads 5.5 s apart agree)."""
    vhost = amqp_url.rsplit("/", 1)[1] or "/"
    counts: dict[str, int] = {}
    with httpx.Client(base_url=RABBIT_MGMT, auth=RABBIT_AUTH, timeout=30) as http:
        for _ in range(6):
            r = http.get(f"/api/exchanges/{quote(vhost, safe='')}")
            r.raise_for_status()
            now = {e["name"]: int(e.get("message_stats", {}).get("publish_in", 0)) for e in r.json()
                   if e["name"].startswith("axis.")}
            if now == counts:
                break
            counts = now
            time.sleep(5.5)
    return counts


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
        with open(Path(d) / "out", "w+") as out_file, open(Path(d) / "err", "w+") as err_file:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out_file, stderr=err_file, text=True)
            cpu = ProcessCpu(proc.pid)
            while proc.poll() is None:
                cpu.sample()
                time.sleep(0.5)
            wall = time.perf_counter() - t
            out_file.seek(0)
            err_file.seek(0)
            stdout, stderr = out_file.read(), err_file.read()
        if proc.returncode not in (0, 1) or not stdout.strip():
            sys.exit(f"demo failed ({proc.returncode}):\n{stderr[-3000:]}")
        import yaml

        amqp_url = str(yaml.safe_load((Path(d) / "w" / "config.yaml").read_text())["amqp_url"])
    report = orjson.loads(stdout.strip().splitlines()[-1])
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
    seconds = cpu.totals()
    out["cpu_seconds"] = seconds
    out["axis_cpu_ms_per_document"] = round(1000 * sum(seconds.get(k, 0.0) for k in AXIS_KINDS) / docs, 2)
    out["messages_published"] = published(amqp_url)
    if args.json:
        print(orjson.dumps(out).decode())
    else:
        for k, v in out.items():
            print(f"{k:34} {v}")


if __name__ == "__main__":
    main()
