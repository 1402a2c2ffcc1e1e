"""CPU time per document, per component, through a whole axis (the e2e set-up of ``bench/e2e.py``).

Brings an axis up (2 routers, endpoint-server hosts) on its own vhost, warms it, then pushes N pre-signed
documents through it (closed loop, 64 in flight) and reads every process's CPU time (``/proc/<pid>/stat``,
user + system) before and after: routers, endpoint hosts, the RabbitMQ node (``beam.smp``) and this load
generator. CPU time per document hardly moves with what else runs on the machine, unlike rates, so it is the
figure to compare across runs and commits; the wall-clock rate is printed beside it.

    python bench/cpu_per_doc.py [--documents 3000] [--json out.json] [--profile DIR] [--plain]

HTTPS by default, as ``axis up`` serves (the load generator keeps its connections alive: one handshake per
connection); ``--plain`` measures the same axis with ``tls: off`` — the difference is the cost of TLS.

``--profile DIR`` also records py-spy raw stacks of every axis process for the measured window (needs
``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import temp_vhost, write_json
from bench.e2e import Axis, presign, sustained


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _beam_pid() -> int | None:
    try:
        return int(subprocess.check_output(["pgrep", "-f", "beam.smp"], text=True).split()[0])
    except (subprocess.CalledProcessError, IndexError, FileNotFoundError):
        return None


async def measure(documents: int, profile: Path | None = None, *, tls: bool = True) -> dict[str, Any]:
    with temp_vhost("axis-bench-cpu") as url, tempfile.TemporaryDirectory(prefix="axis-bench-cpu-") as tmp:
        ax = Axis(url, Path(tmp), tls=tls)
        docs = presign(ax.connections, documents + 20)
        with ax:
            await sustained(ax, docs[:20], concurrency=4)  # connections, caches: not measured
            procs = [(name, p.pid) for name, p in ax.run.procs]
            beam = _beam_pid()
            if beam is not None:
                procs.append(("rabbitmq", beam))
            procs.append(("generator", os.getpid()))
            spies = []
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # the venv's
                spies = [subprocess.Popen([spy, "record", "-p", str(pid), "-o", str(profile / f"{name}.txt"),
                                           "-f", "raw", "-r", "50", "--nonblocking"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for name, pid in procs if name not in ("rabbitmq", "generator")]
            before = {name: cpu_seconds(pid) for name, pid in procs}
            t0 = time.time()
            run = await sustained(ax, docs[20:])
            wall = time.time() - t0
            after = {name: cpu_seconds(pid) for name, pid in procs}
            for s in spies:
                s.send_signal(2)
            for s in spies:
                s.wait()
    per = {name: 1000 * (after[name] - before[name]) / documents for name, _ in procs}
    groups: dict[str, float] = {}
    for name, ms in per.items():
        key = name.split("-")[0]
        groups[key] = groups.get(key, 0.0) + ms
    return {"documents": documents, "tls": tls, "wall_s": wall, "rate": documents / wall,
            "complete": run["rate"] is not None,
            "ms_per_doc": per, "ms_per_doc_by_kind": groups, "total_ms_per_doc": sum(per.values()), "run": run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=3000)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--profile", type=Path, help="py-spy raw stacks of every axis process into this directory")
    ap.add_argument("--plain", action="store_true", help="tls: off (plain HTTP), to measure what TLS costs")
    args = ap.parse_args()
    r = asyncio.run(measure(args.documents, args.profile, tls=not args.plain))
    print(f"{r['documents']} documents in {r['wall_s']:.1f} s ({r['rate']:.1f} doc/s), "
          f"{'HTTPS' if r['tls'] else 'plain HTTP'}, complete: {r['complete']}")
    for name, ms in sorted(r["ms_per_doc"].items()):
        print(f"  {name:12s} {ms:7.2f} ms CPU/doc")
    print("  by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["ms_per_doc_by_kind"].items())))
    print(f"  total        {r['total_ms_per_doc']:7.2f} ms CPU/doc")
    if args.json:
        write_json(args.json, r)


if __name__ == "__main__":
    main()
