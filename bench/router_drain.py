"""Router drain: signed 10 KB envelopes (RSA-2048, fan-out 2.84) pre-filled in ``axis.submissions``, drained by
router processes (competing consumers) that verify, route, count and publish with confirms — beside the relay
(bench/relay.py: the router's broker work alone — consume, bundle per server, publish confirmed, one ack per
batch) draining the same queue in the same run with the same number of processes: router / relay is what
routing (parsing, verifying, deciding, counting) costs on top of the broker work.

    python bench/router_drain.py                    # 4,000 envelopes, 2 routers vs 2 relays, then 1 router
    python bench/router_drain.py --envelopes 20000  # the full figure
    python bench/router_drain.py --worker CONFIG    # one router process (the harness starts these)

Every run uses its own vhost (deleted after) and its own statistics database in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import relay
from bench._common import Corpus, Result, corpus, router_config_dict, temp_vhost
from bench._drain import Drain, drain

DEFAULT_ENVELOPES = 4000


def worker_cmd(config_path: Path, **service: int) -> list[str]:
    """A router process; ``service`` overrides RouterService keyword arguments (e.g. prefetch, batch)."""
    return [sys.executable, str(Path(__file__).resolve()), "--worker", str(config_path),
            "--service", json.dumps(service)]


async def run_worker(config_path: str, service_kw: dict[str, int] | None = None) -> None:
    """One router process: the project's RouterService on the given config, until SIGTERM."""
    from axis.config import config_from_dict
    from axis.router import RouterService

    raw = json.loads(Path(config_path).read_text())
    config = config_from_dict(raw, base=Path(config_path).parent)
    service = RouterService(config, **(service_kw or {}))
    await service.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        await stopping.wait()
    finally:
        await service.stop()


async def drain_router(c: Corpus, n: int, workers: int, profile: Path | None = None, **service: int) -> Drain:
    with temp_vhost("axis-bench-router") as url, tempfile.TemporaryDirectory(prefix="axis-bench-") as tmp:
        cfg = Path(tmp) / "config.json"
        cfg.write_text(json.dumps(router_config_dict(c, url, Path(tmp))))
        return await drain(url, c, n, worker_cmd(cfg, **service), workers, profile=profile,
                           stats_db=Path(tmp) / "stats.db")


async def drain_relay(c: Corpus, n: int, workers: int) -> Drain:
    with temp_vhost("axis-bench-relay") as url, tempfile.TemporaryDirectory(prefix="axis-bench-relay-") as tmp:
        return await drain(url, c, n, relay.worker_cmd(url, Path(tmp)), workers, progress=Path(tmp))


async def measure(n: int = DEFAULT_ENVELOPES, *, workers: int = 2, scaling: bool = True,
                  log: Any = print) -> tuple[list[Result], dict[str, Any]]:
    """Router vs relay at ``workers`` processes, and (``scaling``) one router process; results and raw data.

    Order: relay, routers, (one router), relay again — the baseline is the mean of the two relay drains that
    bracket the router drains, so a machine whose load drifts during the run does not tilt the ratio one way.
    """
    c = corpus(n, log=log)
    raw: dict[str, Any] = {"envelopes": n, "mean_bytes": round(c.mean_size()), "fanout": 2.84}
    log(f"relay drain: {n} envelopes, {workers} relay processes …")
    base_a = await drain_relay(c, n, workers)
    log(f"  relay {base_a.rate:,.0f} envelopes/s")
    log(f"router drain: {n} envelopes, {workers} router processes …")
    many = await drain_router(c, n, workers)
    raw["router"] = many.as_dict()
    log(f"  router {many.rate:,.0f} envelopes/s (dead-lettered: {many.dead})")
    one = None
    if scaling:
        log(f"router drain: {n} envelopes, 1 router process …")
        one = await drain_router(c, n, 1)
        raw["router_1"] = one.as_dict()
        log(f"  1 router {one.rate:,.0f} envelopes/s")
    log(f"relay drain again: {n} envelopes, {workers} relay processes …")
    base_b = await drain_relay(c, n, workers)
    log(f"  relay {base_b.rate:,.0f} envelopes/s")
    raw["relay"] = [base_a.as_dict(), base_b.as_dict()]
    base = (base_a.rate + base_b.rate) / 2
    base_cpu = ((base_a.cpu_ms_per_envelope or 0) + (base_b.cpu_ms_per_envelope or 0)) / 2
    ok = many.complete and many.dead == 0
    results = [
        Result(f"router drain ({workers} procs, {n:,} × {raw['mean_bytes'] / 1024:.0f} KB RSA-2048, fan-out 2.84)",
               many.rate if ok else None, "env/s", baseline=base,
               baseline_label=f"relay (same broker work), {workers} procs",
               target="≥ 1,000 env/s (ratio: the routing overhead, reported)", met=ok and many.rate >= 1000,
               notes=(f"CPU per envelope: router {many.cpu_ms_per_envelope:.2f} ms, relay {base_cpu:.2f} ms; "
                      f"relay drains {base_a.rate:,.0f} and {base_b.rate:,.0f} env/s" if ok else
                      f"incomplete drain or refusals (dead={many.dead})"),
               extra={"router": many.as_dict(), "relay": raw["relay"]}),
    ]
    if one is not None:
        ok1 = ok and one.complete and one.dead == 0
        results.append(Result(f"router scaling ({workers} procs vs 1)", many.rate if ok1 else None, "env/s",
                              baseline=one.rate, baseline_label="1 router proc", target="ratio ≥ 1.7",
                              met=ok1 and many.rate / one.rate >= 1.7, extra={"router_1": one.as_dict()}))
    return results, raw


def summarize(profile: Path | list[Path], top: int = 25) -> str:
    """Own time and inclusive time per function over every collapsed-stack file in ``profile`` (a directory, or
    a list of files)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for f in profile if isinstance(profile, list) else profile.glob("*.txt"):
        for line in f.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = [fr.split(" (")[0] + " (" + fr.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                      if " (" in fr else fr for fr in stack.split(";")]
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for fr in set(frames):
                incl[fr] = incl.get(fr, 0) + n
    if not total:
        return "no samples"
    lines = [f"{total} samples; own time:"]
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines.append("inclusive time:")
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in sorted(incl.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", metavar="CONFIG", help="run one router process on this config (JSON)")
    ap.add_argument("--service", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--envelopes", type=int, default=DEFAULT_ENVELOPES)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-scaling", action="store_true", help="skip the one-process run")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--profile", metavar="DIR", type=Path,
                    help="only drain with the routers, sampled by py-spy; collapsed stacks and a summary in DIR")
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if a.worker:
        asyncio.run(run_worker(a.worker, json.loads(a.service)))
        return
    from bench._common import table

    if a.profile:
        c = corpus(a.envelopes)
        d = asyncio.run(drain_router(c, a.envelopes, a.workers, a.profile))
        print(json.dumps(d.as_dict()))
        print(summarize(a.profile))
        return

    results, raw = asyncio.run(measure(a.envelopes, workers=a.workers, scaling=not a.no_scaling))
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=2) + "\n")


if __name__ == "__main__":
    main()
