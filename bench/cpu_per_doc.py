"""CPU time per document, per component, through a whole axis (the e2e set-up of ``bench/e2e.py``).

Brings an axis up (endpoint-server hosts and as many routers as ``axis up`` runs, ``config.routers``, unless
``--routers N``) on its own vhost, warms it, then pushes N pre-signed documents through it (closed loop, 64 in
flight) and reads every process's CPU time (``/proc/<pid>/stat``, user + system) before and after: routers, endpoint
hosts, the log writer, the RabbitMQ node (``beam.smp``), ``axis up``'s supervisor (threads of this process) and the
load generator (this process's event loop thread: the simulator's HTTP client, ``axis.sim.http``). CPU time per
document hardly moves with what else runs on the machine, unlike rates, so it is the figure to compare across runs
and commits; the wall-clock rate is printed beside it.

    python bench/cpu_per_doc.py [--documents 3000] [--rate R] [--routers N] [--json out.json] [--profile DIR]
                                [--plain]

``--rate R`` offers the documents open loop at R per second instead (``bench/e2e.py``'s open loop): what a
document costs at that load, when batches do not fill — at 100/s on the reference machine 4–5× the saturated
figure (bench/README.md, session 7). The p50/p99 of that run are printed with it.

The machine's speed during the same window is sampled beside it (:class:`bench._common.SpeedProbe`: a door check's
CPU time, in a process of its own): the axis's CPU per document divided by it — its cost counted in door checks —
is the figure to compare across hours on a machine whose speed drifts.

HTTPS by default, as ``axis up`` serves (the load generator keeps its connections alive: one handshake per
connection); ``--plain`` measures the same axis with ``tls: off`` — the difference is the cost of TLS.

``--profile DIR`` also records py-spy raw stacks of every axis process for the measured window (py-spy is in the
dev extras) and prints own and inclusive time per function for each component (hosts, routers, log writer);
py-spy at 50 Hz costs the processes some CPU, so compare profiled runs with profiled runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Result, SpeedProbe, beam_pid, cpu_seconds, temp_vhost, write_json
from bench.e2e import WARM, Axis, open_loop, presign, sustained


def _published(url: str) -> tuple[int, int] | None:
    """Messages published so far into the benchmark's vhost and into the whole node (the management API's
    counters; they lag by the statistics interval, ~5 s, so callers wait that long before reading them). The
    node's count says how much of the broker's CPU (``beam.smp``: every vhost) other tenants caused."""
    from urllib.parse import unquote

    import httpx

    from bench._common import RABBIT_AUTH, RABBIT_MGMT

    vhost = unquote(url.rsplit("/", 1)[1])
    try:
        mine = httpx.get(f"{RABBIT_MGMT}/api/vhosts/{vhost}", auth=RABBIT_AUTH, timeout=10).json()
        node = httpx.get(f"{RABBIT_MGMT}/api/overview", auth=RABBIT_AUTH, timeout=10).json()
        return (int(mine.get("message_stats", {}).get("publish", 0)),
                int(node.get("message_stats", {}).get("publish", 0)))
    except Exception:
        return None


STATS_LAG = 5.5  # seconds: RabbitMQ's default collect_statistics_interval is 5 s


def _document_checks(ax: Axis) -> dict[str, float]:
    """``axis_endpoint_document_checks_total`` of every endpoint host process (one of its servers answers for the
    process), summed: documents checked in full, from a process's own cache, from another process's record."""
    import httpx

    urls = {s.id: s.url for s in ax.config.servers}
    totals: dict[str, float] = {}
    for server_ids in ax.run.hosts.values():
        r = httpx.get(f"{urls[server_ids[0]]}/metrics", verify=ax.verify, timeout=10,
                      headers={"Authorization": f"Bearer {ax.connections['admin']['token']}"})
        r.raise_for_status()
        for line in r.text.splitlines():
            if line.startswith('axis_endpoint_document_checks_total{how="'):
                how, value = line.split('"')[1], float(line.rsplit(" ", 1)[1])
                totals[how] = totals.get(how, 0.0) + value
    return totals


async def measure(documents: int, profile: Path | None = None, *, tls: bool = True,
                  rate: float | None = None, routers: int | None = None) -> dict[str, Any]:
    with temp_vhost("axis-bench-cpu") as url, tempfile.TemporaryDirectory(prefix="axis-bench-cpu-") as tmp:
        ax = Axis(url, Path(tmp), routers, tls=tls)
        docs = presign(ax.connections, documents + WARM)
        with ax:
            await sustained(ax, docs[:WARM])  # connections, caches: not measured
            await asyncio.sleep(STATS_LAG)
            published0 = _published(url)
            procs = [(name, p.pid) for name, p in ax.run.procs]
            beam = beam_pid()
            if beam is not None:
                procs.append(("rabbitmq", beam))
            procs.append(("supervisor", os.getpid()))  # axis up's threads; the generator's loop is taken out below
            spies = []
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # the venv's
                spies = [subprocess.Popen([spy, "record", "-p", str(pid), "-o", str(profile / f"{name}.txt"),
                                           "-f", "raw", "-r", "50", "--nonblocking"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for name, pid in procs if name not in ("rabbitmq", "supervisor")]
            checks0 = _document_checks(ax)
            with SpeedProbe(ax.config_path, docs[0][2]) as probe:
                before = {name: cpu_seconds(pid) for name, pid in procs}
                t0 = time.time()
                if rate is None:
                    run = await sustained(ax, docs[WARM:])
                else:
                    run = await open_loop(ax, docs[WARM:], rate)
                    run["rate"] = rate if run["complete"] else None
                    run["generator_cpu_ms_per_doc_with_polling"] = run["generator_cpu_ms_per_doc"]
                wall = time.time() - t0
                after = {name: cpu_seconds(pid) for name, pid in procs}
            checks1 = _document_checks(ax)
            for s in spies:
                s.send_signal(2)
            for s in spies:
                s.wait()
            await asyncio.sleep(STATS_LAG)
            published1 = _published(url)
    messages = node_share = None
    if published0 is not None and published1 is not None:
        messages = (published1[0] - published0[0]) / documents
        node = published1[1] - published0[1]
        node_share = (published1[0] - published0[0]) / node if node > 0 else None
    per = {name: 1000 * (after[name] - before[name]) / documents for name, _ in procs}
    # this process runs axis up's supervisor threads and the load generator's event loop: the loop's own CPU
    # time (its thread, submissions and polling) is the generator; the rest is the supervisor's
    per["generator"] = run["generator_cpu_ms_per_doc_with_polling"]
    per["supervisor"] = max(0.0, per["supervisor"] - per["generator"])
    groups: dict[str, float] = {}
    for name, ms in per.items():
        key = name.split("-")[0]
        groups[key] = groups.get(key, 0.0) + ms
    axis_ms = sum(ms for name, ms in per.items() if name != "generator")
    unit = probe.median_us
    return {"door_check_us": unit, "door_check_spread_us": probe.spread, "probe_cpu_s": probe.cpu_seconds,
            # the axis's cost counted in door checks of the same window: the machine's speed divided out
            "axis_door_checks_per_doc": 1000 * axis_ms / unit if unit else None,
            "documents": documents, "tls": tls, "wall_s": wall, "rate": documents / wall, "offered": rate,
            "complete": run["rate"] is not None, "load_average": os.getloadavg(),
            "amqp_messages_per_doc": messages,
            # the endpoint hosts' signed-document checks per document (door and deliveries): in full, from a
            # process's own cache, from another host process's record (endpoints.checked)
            "host_checks_per_doc": {how: (checks1.get(how, 0.0) - checks0.get(how, 0.0)) / documents
                                    for how in sorted(checks1)},
            "broker_share_of_node_messages": node_share,  # < 1: other vhosts used the broker meanwhile
            "ms_per_doc": per, "ms_per_doc_by_kind": groups, "axis_ms_per_doc": axis_ms,
            "generator_ms_per_doc": per["generator"], "total_ms_per_doc": sum(per.values()), "run": run}


def speed_line(r: dict[str, Any]) -> str:
    """The machine's speed during the window and the axis's cost counted in door checks (:class:`SpeedProbe`)."""
    unit, spread = r.get("door_check_us"), r.get("door_check_spread_us")
    if not unit:
        return "the speed probe took no sample"
    return (f"one door check took {unit:.0f} µs of CPU meanwhile"
            + (f" (p10–p90 {spread[0]:.0f}–{spread[1]:.0f})" if spread else "")
            + f": the axis costs {r['axis_door_checks_per_doc']:.2f} door checks per document "
            f"(the probe's own CPU {1000 * r['probe_cpu_s'] / r['documents']:.3f} ms/doc, not counted)")


#: components in the order of the table; "generator" is the load generator, not the axis
KINDS = (("host", "endpoint hosts"), ("router", "routers"), ("rabbitmq", "RabbitMQ"), ("log", "log writer"),
         ("supervisor", "axis up supervisor"))


def results(r: dict[str, Any], log: Any = print) -> list[Result]:
    """Table rows: the whole axis's CPU per document (target ≤ 2 ms, issue 15), each component's, the generator's."""
    by = r["ms_per_doc_by_kind"]
    log(f"  {r['documents']} documents, {r['rate']:.0f} doc/s; axis {r['axis_ms_per_doc']:.2f} ms CPU/doc")
    loadavg = f"load average {r['load_average'][0]:.1f}"
    out = [Result("CPU per document, the whole axis (hosts, routers, RabbitMQ, log writer)",
                  r["axis_ms_per_doc"] if r["complete"] else None, "ms", target="≤ 2 ms",
                  met=r["complete"] and r["axis_ms_per_doc"] <= 2.0,
                  notes=(f"{r['documents']:,} documents, closed loop 64 in flight, {r['rate']:.0f} doc/s, "
                         f"{'HTTPS' if r['tls'] else 'plain HTTP'}, {loadavg}"
                         + (f", {r['amqp_messages_per_doc']:.2f} AMQP messages published per document"
                            if r["amqp_messages_per_doc"] is not None else "")
                         + (", host checks per document " + ", ".join(
                             f"{how} {n:.2f}" for how, n in r["host_checks_per_doc"].items())
                            if r.get("host_checks_per_doc") else "")
                         + (f"; this bench sent {r['broker_share_of_node_messages']:.0%} of the broker node's messages "
                            "(its CPU counts every vhost's)" if r["broker_share_of_node_messages"] is not None else "")
                         if r["complete"]
                         else "incomplete: not every delivery was stored"), extra=r)]
    if r.get("axis_door_checks_per_doc"):
        out.append(Result("  the same, counted in door checks (the machine's speed divided out)",
                          r["axis_door_checks_per_doc"], "checks", target="(report)", notes=speed_line(r)))
    out += [Result(f"  CPU per document: {label}", by.get(kind), "ms", target="(report)", notes="reported, no target")
            for kind, label in KINDS if kind in by]
    out.append(Result("  CPU per document: load generator (not the axis)", r["generator_ms_per_doc"], "ms",
                      target="≤ 0.3 ms", met=r["generator_ms_per_doc"] <= 0.3,
                      notes="its event loop thread, inbox polling included"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=3000)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--profile", type=Path, help="py-spy raw stacks of every axis process into this directory")
    ap.add_argument("--plain", action="store_true", help="tls: off (plain HTTP), to measure what TLS costs")
    ap.add_argument("--rate", type=float, help="offer the documents open loop at this many per second")
    ap.add_argument("--routers", type=int, help="router processes (default: as axis up runs, config.routers)")
    args = ap.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    r = asyncio.run(measure(args.documents, args.profile, tls=not args.plain, rate=args.rate,
                            routers=args.routers))
    how = "closed loop"
    if args.rate is not None:
        p50, p99 = r["run"]["p50_ms"], r["run"]["p99_ms"]
        how = f"open loop at {args.rate:g}/s" + (f", p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None else "")
    print(f"{r['documents']} documents in {r['wall_s']:.1f} s ({r['rate']:.1f} doc/s, {how}), "
          f"{'HTTPS' if r['tls'] else 'plain HTTP'}, complete: {r['complete']}")
    for name, ms in sorted(r["ms_per_doc"].items()):
        print(f"  {name:12s} {ms:7.2f} ms CPU/doc")
    print("  by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["ms_per_doc_by_kind"].items())))
    print(f"  the axis     {r['axis_ms_per_doc']:7.2f} ms CPU/doc (everything but the generator)")
    print(f"  total        {r['total_ms_per_doc']:7.2f} ms CPU/doc; load average {r['load_average'][0]:.1f}")
    print("  " + speed_line(r))
    if r["amqp_messages_per_doc"] is not None:
        print(f"  AMQP messages published per document: {r['amqp_messages_per_doc']:.2f}")
    if r["host_checks_per_doc"]:
        print("  endpoint hosts' document checks per document: "
              + ", ".join(f"{how} {n:.2f}" for how, n in r["host_checks_per_doc"].items()))
    if r["broker_share_of_node_messages"] is not None:
        print(f"  this bench's share of the messages the broker node took meanwhile: "
              f"{r['broker_share_of_node_messages']:.0%} (RabbitMQ's CPU counts every vhost's)")
    if args.profile:
        from bench.router_drain import summarize

        for kind, label in KINDS:
            files = sorted(args.profile.glob(f"{kind}*.txt"))
            if files:
                print(f"\n== {label} ({', '.join(f.stem for f in files)})\n{summarize(files, top=20)}")
    if args.json:
        write_json(args.json, r)


if __name__ == "__main__":
    main()
