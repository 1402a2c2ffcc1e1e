"""What the admin's liveness monitoring costs: the previous prober against axis.admin.probe, same run, same servers.

    python bench/admin_probe.py [--servers 70] [--seconds 60] [--rounds 1] [--interval 5] [--json]

Sets up, on its own RabbitMQ vhost (deleted afterwards): ``--servers`` endpoint servers (the seed has 70) — one
process serving each a ``/healthz`` over HTTPS (uvicorn + FastAPI, EC P-256 certificate from a fresh axis CA,
5 s keep-alive, no access log: as endpoints/host.py serves them) and holding a consumer on each server's
delivery queue ``axis.server.<id>`` (as the hosts do). Then, in turn, for ``--seconds`` each (``--rounds`` times):

- ``before``: the prober as it was (``bench/probe_before.py``, a copy of commit 2cb63d1's: every server's
  ``/healthz`` through httpx at every poll, logging at INFO as ``axis admin`` configures it);
- ``after``: :class:`axis.admin.probe.Prober` (the queue poll's consumer counts, each door once a minute);

each in a fresh process (``interval`` 5 s, the admin's default), and measures the prober process's CPU time and
the servers process's CPU time in the window (start-up excluded), and the log lines written. Reports CPU seconds
per minute and the ratios before ÷ after. RabbitMQ's own share (the management call) is not measured: the broker
is shared with other vhosts here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the servers process ----------------------------------------------------------------------------------------


async def serve_servers(ids: list[str], first_port: int, cert: str, key: str, amqp_url: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    from axis.broker.transport import connect, declare_topology, open_channel
    from axis.core.wire import server_queue

    connection = await connect(amqp_url)
    channel = await open_channel(connection)
    await declare_topology(channel, ids)

    async def ignore(message: Any) -> None:
        await message.ack()

    for sid in ids:
        await (await channel.get_queue(server_queue(sid))).consume(ignore)
    servers = []
    for i, sid in enumerate(ids):
        app = FastAPI()

        def healthz(sid: str = sid) -> dict[str, Any]:
            return {"ok": True, "server": sid, "kind": "dedicated", "agencies": 1}

        app.get("/healthz")(healthz)
        config = uvicorn.Config(app, host="127.0.0.1", port=first_port + i, log_level="warning", lifespan="off",
                                access_log=False, ws="none", timeout_keep_alive=5, ssl_certfile=cert,
                                ssl_keyfile=key)
        servers.append(uvicorn.Server(config))
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.gather(*tasks)


# ---- a prober process -------------------------------------------------------------------------------------------


def load_before() -> Any:
    import bench.probe_before as before

    return before


async def run_prober(kind: str, endpoints: dict[str, str], amqp_url: str, ca: str, seconds: float,
                     interval: float, log_file: str) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, filename=log_file,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # as `axis admin` does
    if kind == "before":
        prober_class = load_before().Prober
    else:
        from axis.admin.probe import Prober as prober_class
    prober = prober_class(endpoints, amqp_url=amqp_url, interval=interval, ca=ca)
    await prober.poll_once()  # start-up (imports, TLS contexts) outside the window
    start_cpu, start = time.process_time(), time.monotonic()
    prober.start()
    await asyncio.sleep(seconds)
    await prober.stop()
    cpu, wall = time.process_time() - start_cpu, time.monotonic() - start
    up = sum(1 for sid in endpoints if sid in prober.state.last_seen and sid not in prober.state.last_error)
    return {"cpu_s": cpu, "wall_s": wall, "servers_up": up}


# ---- the driver -------------------------------------------------------------------------------------------------


def measure_idle(args: argparse.Namespace, servers_pid: int) -> dict[str, Any]:
    """The servers process with no prober: what it costs anyway (uvicorn's ticks, the consumers)."""
    before, start = proc_cpu(servers_pid), time.monotonic()
    time.sleep(args.seconds)
    minutes = (time.monotonic() - start) / 60
    return {"kind": "idle", "prober_cpu_s_per_min": 0.0, "servers_cpu_s_per_min": (proc_cpu(servers_pid) - before)
            / minutes, "log_lines_per_min": 0.0, "servers_up": 0, "wall_s": minutes * 60}


def measure(kind: str, args: argparse.Namespace, endpoints: dict[str, str], amqp_url: str, ca: str,
            servers_pid: int, tmp: Path) -> dict[str, Any]:
    log_file = tmp / f"{kind}-{time.monotonic_ns()}.log"
    cmd = [sys.executable, __file__, "--child-probe", kind, "--endpoints", json.dumps(endpoints), "--amqp", amqp_url,
           "--ca", ca, "--seconds", str(args.seconds), "--interval", str(args.interval), "--log-file", str(log_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    servers_before = proc_cpu(servers_pid)
    out, _ = proc.communicate(timeout=args.seconds + 120)
    servers_cpu = proc_cpu(servers_pid) - servers_before
    if proc.returncode != 0:
        raise SystemExit(f"the {kind} prober failed")
    result = json.loads(out.strip().splitlines()[-1])
    lines = log_file.read_text().splitlines() if log_file.exists() else []
    minutes = result["wall_s"] / 60
    return {"kind": kind, "prober_cpu_s_per_min": result["cpu_s"] / minutes,
            "servers_cpu_s_per_min": servers_cpu / minutes,  # the servers process's whole window (start-up apart)
            "log_lines_per_min": len(lines) / minutes, "servers_up": result["servers_up"], "wall_s": result["wall_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=70)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per prober")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--interval", type=float, default=5.0, help="the admin's poll interval")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child-probe", choices=["before", "after"], help=argparse.SUPPRESS)
    ap.add_argument("--child-serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoints", help=argparse.SUPPRESS)
    ap.add_argument("--amqp", help=argparse.SUPPRESS)
    ap.add_argument("--ca", help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--log-file", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child_serve:
        ids = [f"s-{i:02d}" for i in range(1, args.servers + 1)]
        asyncio.run(serve_servers(ids, args.port, args.cert, args.key, args.amqp))
        return
    if args.child_probe:
        result = asyncio.run(run_prober(args.child_probe, json.loads(args.endpoints), args.amqp, args.ca,
                                        args.seconds, args.interval, args.log_file))
        print(json.dumps(result), flush=True)
        return

    from axis.core.pki import CertificateAuthority, issue_server_certificate
    from bench._common import temp_vhost
    from tests.support.testing import free_port_block

    with tempfile.TemporaryDirectory(prefix="axis-bench-probe-") as tmp_name, temp_vhost("axis-bench-probe") as url:
        tmp = Path(tmp_name)
        CertificateAuthority.init(tmp / "ca", algorithm="ec")
        issued = issue_server_certificate(tmp / "ca")
        ca = str(tmp / "ca" / "ca.cert.pem")
        port = free_port_block(args.servers)
        ids = [f"s-{i:02d}" for i in range(1, args.servers + 1)]
        endpoints = {sid: f"https://127.0.0.1:{port + i}" for i, sid in enumerate(ids)}
        servers = subprocess.Popen([sys.executable, __file__, "--child-serve", "--servers", str(args.servers),
                                    "--port", str(port), "--cert", str(issued.cert_path), "--key",
                                    str(issued.key_path), "--amqp", url], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert servers.stdout is not None
            if servers.stdout.readline().strip() != "ready":
                raise SystemExit("the servers did not start")
            time.sleep(6)  # the management API's statistics (consumers) refresh every 5 s
            runs = []
            for _ in range(args.rounds):
                runs.append(measure_idle(args, servers.pid))
                for kind in ("before", "after"):
                    runs.append(measure(kind, args, endpoints, url, ca, servers.pid, tmp))
        finally:
            servers.terminate()
            servers.wait(timeout=30)

    def mean(kind: str, key: str) -> float:
        values = [r[key] for r in runs if r["kind"] == kind]
        return sum(values) / len(values)

    figures: dict[str, Any] = {"servers": args.servers, "seconds": args.seconds, "interval": args.interval,
                               "rounds": args.rounds, "runs": runs}
    idle = mean("idle", "servers_cpu_s_per_min")
    for run in runs:  # what answering the probes cost the servers: their CPU above the idle window's
        run["servers_probe_cpu_s_per_min"] = max(0.0, run["servers_cpu_s_per_min"] - idle)
    figures["servers_idle_cpu_s_per_min"] = round(idle, 4)
    for key in ("prober_cpu_s_per_min", "servers_probe_cpu_s_per_min", "log_lines_per_min"):
        before, after = mean("before", key), mean("after", key)
        figures[key] = {"before": round(before, 4), "after": round(after, 4),
                        "ratio": round(before / after, 1) if after else None}
    figures["servers_up"] = {"before": min(r["servers_up"] for r in runs if r["kind"] == "before"),
                             "after": min(r["servers_up"] for r in runs if r["kind"] == "after")}
    if args.json:
        print(json.dumps({"benchmark": "admin_probe", **figures}))
        return
    print(f"admin liveness monitoring of {args.servers} HTTPS endpoint servers, polls every {args.interval:g} s, "
          f"{args.seconds:g} s windows × {args.rounds}")
    print(f"{'per minute':<32}{'before':>10}{'after':>10}{'ratio':>8}")
    for key, label in (("prober_cpu_s_per_min", "admin prober CPU s"),
                       ("servers_probe_cpu_s_per_min", "servers' CPU s above idle"),
                       ("log_lines_per_min", "log lines")):
        f = figures[key]
        ratio = f"{f['ratio']}×" if f["ratio"] is not None else "—"
        print(f"{label:<32}{f['before']:>10.3f}{f['after']:>10.3f}{ratio:>8}")
    print(f"servers process idle (no prober): {idle:.3f} CPU s per minute")
    up = figures["servers_up"]
    print(f"servers seen up at the end: before {up['before']}, after {up['after']} of {args.servers}")


if __name__ == "__main__":
    main()
