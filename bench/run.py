"""Every axis benchmark in one command: a table (figure, measured, baseline, ratio, target, met?) and JSON.

    python bench/run.py                   # bounded default sizes (about 15-25 minutes on 2 cores)
    python bench/run.py --quick           # smaller sizes, a few minutes
    python bench/run.py --full            # the figures as specified: 20,000-envelope drain, 1,000,000 for memory
    python bench/run.py --json out.json --only router,directory

Every figure stands beside a baseline measured in the same run on the same machine (a relay doing the router's
broker work, signxml, one router process, RSS after 10,000 envelopes, a bare CSV read, httpx for the load
generator): on a shared or noisy machine the ratios travel, the absolute figures do not. A benchmark that cannot
run (broker down, a module not merged yet) is listed as not measured with the reason, and the others still run.
Needs RabbitMQ with the management API on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Result, broker_reachable, machine, skipped, table, write_json

BENCH = Path(__file__).resolve().parent
ALL = ("verify", "router", "e2e", "cpu", "memory", "directory")


@dataclass(frozen=True)
class Sizes:
    verify_seconds: float
    drain: int
    memory: int
    memory_warm: int
    agencies: int
    e2e_documents: int
    e2e_seconds: float
    cpu_documents: int = 3000
    scaling: bool = True  # the one-router-process drain (for the scaling ratio)


SIZES = {
    "smoke": Sizes(verify_seconds=0.2, drain=100, memory=400, memory_warm=100, agencies=3000, e2e_documents=60,
                   e2e_seconds=1.5, cpu_documents=60, scaling=False),
    "quick": Sizes(verify_seconds=1.0, drain=1500, memory=15_000, memory_warm=5_000, agencies=120_000,
                   e2e_documents=1000, e2e_seconds=5, cpu_documents=1500),
    "default": Sizes(verify_seconds=3.0, drain=4000, memory=40_000, memory_warm=10_000, agencies=120_000,
                     e2e_documents=3000, e2e_seconds=10, cpu_documents=3000),
    "full": Sizes(verify_seconds=5.0, drain=20_000, memory=1_000_000, memory_warm=10_000, agencies=120_000,
                  e2e_documents=10_000, e2e_seconds=30, cpu_documents=10_000),
}


def bench_verify(s: Sizes, log: Callable[[str], None]) -> list[Result]:
    """Trust's bench/verify.py (fast verifier vs signxml, interleaved, one process); we read its 10 KB row."""
    script = BENCH / "verify.py"
    if not script.is_file():
        return [skipped("verification (10 KB, RSA-2048, one core)", "verif/s", "≥ 3,000/s", "bench/verify.py absent")]
    p = subprocess.run([sys.executable, str(script), "--seconds", str(s.verify_seconds), "--json"],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        return [skipped("verification (10 KB, RSA-2048, one core)", "verif/s", "≥ 3,000/s",
                        f"bench/verify.py failed: {p.stderr.strip().splitlines()[-1:]}")]
    data = json.loads(p.stdout.strip().splitlines()[-1])
    row = next(r for r in data["rows"] if r["envelope"] == "10 KB")
    log(f"  fast {row['fast_per_s']:,.0f}/s, signxml {row['signxml_per_s']:,.0f}/s")
    return [Result("verification (10 KB, RSA-2048, one process)", row["fast_per_s"], "verif/s",
                   baseline=row["signxml_per_s"], baseline_label="signxml", target="≥ 3,000/s",
                   met=row["fast_per_s"] >= 3000, extra=data)]


def bench_router(s: Sizes, log: Callable[[str], None]) -> list[Result]:
    from bench import router_drain

    results, _raw = asyncio.run(router_drain.measure(s.drain, workers=2, scaling=s.scaling, log=log))
    return results


def bench_e2e(s: Sizes, log: Callable[[str], None]) -> list[Result]:
    from bench import e2e

    return asyncio.run(e2e.measure(documents=s.e2e_documents, seconds=s.e2e_seconds, log=log))


def bench_cpu(s: Sizes, log: Callable[[str], None]) -> list[Result]:
    from bench import cpu_per_doc

    return cpu_per_doc.results(asyncio.run(cpu_per_doc.measure(s.cpu_documents)), log=log)


def bench_memory(s: Sizes, log: Callable[[str], None]) -> list[Result]:
    from bench import memory

    return [memory.analyse(asyncio.run(memory.run(s.memory, warm=s.memory_warm, log=log)))]


def bench_directory(s: Sizes, log: Callable[[str], None]) -> list[Result]:
    from bench import directory

    return directory.measure(s.agencies, log=log)


RUNNERS: dict[str, Callable[[Sizes, Callable[[str], None]], list[Result]]] = {
    "verify": bench_verify, "router": bench_router, "e2e": bench_e2e, "cpu": bench_cpu, "memory": bench_memory,
    "directory": bench_directory,
}
NEEDS_BROKER = {"router", "e2e", "cpu", "memory"}


def run(names: tuple[str, ...], sizes: Sizes, log: Callable[[str], None] = print) -> dict[str, Any]:
    results: list[Result] = []
    timings: dict[str, float] = {}
    have_broker = broker_reachable()
    for name in names:
        log(f"== {name}")
        t = time.perf_counter()
        if name in NEEDS_BROKER and not have_broker:
            results.append(skipped(name, "", "", "RabbitMQ management API not reachable on 127.0.0.1:15672"))
            continue
        try:
            results.extend(RUNNERS[name](sizes, log))
        except ImportError as exc:  # a module of another part of the project is not there yet
            results.append(skipped(name, "", "", f"{type(exc).__name__}: {exc}"))
        except Exception as exc:
            log(traceback.format_exc())
            results.append(skipped(name, "", "", f"{type(exc).__name__}: {exc}"))
        timings[name] = round(time.perf_counter() - t, 1)
    return {"machine": machine(), "sizes": sizes.__dict__, "seconds": timings,
            "results": [r.as_dict() for r in results], "table": table(results)}


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    size.add_argument("--full", action="store_true", help="the specified sizes (20,000 drain, 1,000,000 memory)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness runs (seconds)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument("--json", metavar="FILE", help="write every figure, the machine and the raw data here")
    ap.add_argument("--envelopes", type=int, help="router drain size (overrides the preset)")
    ap.add_argument("--memory-envelopes", type=int, help="memory run length (overrides the preset)")
    a = ap.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    # SIGTERM unwinds like Ctrl-C: context managers stop child processes and delete the benchmark vhosts.
    signal.signal(signal.SIGTERM, _interrupt)
    preset = "smoke" if a.smoke else "quick" if a.quick else "full" if a.full else "default"
    sizes = SIZES[preset]
    if a.envelopes:
        sizes = Sizes(**{**sizes.__dict__, "drain": a.envelopes})
    if a.memory_envelopes:
        sizes = Sizes(**{**sizes.__dict__, "memory": a.memory_envelopes})
    names = tuple(n.strip() for n in a.only.split(",")) if a.only else ALL
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {','.join(ALL)}")
    out = run(names, sizes, log=lambda m: print(m, file=sys.stderr, flush=True))
    out["preset"] = preset
    m = out["machine"]
    print(f"\naxis benchmarks ({preset}) — {m['date']}, {m['nproc']} × {m['cpu']}, {m['memory_gb']} GB, "
          f"RabbitMQ {m['rabbitmq']}, Python {m['python']}\n")
    print(out["table"])
    for r in out["results"]:
        if r["notes"] and r["notes"] != "reported, no target":
            print(f"- {r['figure']}: {r['notes']}")
    if a.json:
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
