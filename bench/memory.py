"""Memory over time, two runs.

Router: the resident set of one router process (``RouterService`` with its defaults: prefetch 1,024, batches of
up to 512 waiting up to 150 ms) after 10,000 routed envelopes and then at checkpoints up to ``--envelopes``
(1,000,000 for the full figure), while a feeder keeps ``axis.submissions`` topped up (cycling the cached signed
corpus) and purges the delivery queues so the broker stays small. The figure is RSS at the end against RSS at
10,000 (the baseline, same process, same run). When the run is shorter than 1,000,000 the growth is also
extrapolated linearly from the checkpoints (least squares) and the table says so.

Host soak (``--soak N``): a whole axis (``axis up``: 2 routers, 2 endpoint hosts, the log writer; the e2e set-up
of ``bench/e2e.py``) takes N distinct signed documents over HTTPS in chunks (closed loop, 64 in flight, every
delivery stored before the next chunk); the RSS of every axis process is sampled after each chunk. The figure per
process is RSS at the end against RSS after the first 10 % (at least one chunk): flat within 10 %?

    python bench/memory.py --envelopes 1000000     # the router's full figure
    python bench/memory.py --soak 100000           # the host soak's full figure
    python bench/memory.py                         # 40,000 envelopes, extrapolated
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika

from bench._common import Result, corpus, router_config_dict, rss_kb, temp_vhost
from bench._drain import EX_SUBMIT, Q_SUBMISSIONS, SERVER_IDS, declare_topology, server_queue, spawn, stop
from bench.router_drain import worker_cmd

FULL = 1_000_000
WARM = 10_000


async def run(n: int, *, warm: int = WARM, checkpoints: int = 8, corpus_size: int = 4000, log: Any = print,
              timeout: float = 7200) -> dict[str, Any]:
    c = corpus(min(corpus_size, n), log=log)
    records = list(c.records())
    marks = sorted({warm, *(warm + (n - warm) * (i + 1) // checkpoints for i in range(checkpoints))})
    samples: list[tuple[int, int]] = []
    with temp_vhost("axis-bench-memory") as url, tempfile.TemporaryDirectory(prefix="axis-bench-") as tmp:
        conn = await aio_pika.connect(url)
        ch = await conn.channel(publisher_confirms=True)
        await declare_topology(ch, SERVER_IDS)
        ex = await ch.get_exchange(EX_SUBMIT)
        cfg = Path(tmp) / "config.json"
        cfg.write_text(json.dumps(router_config_dict(c, url, Path(tmp))))
        procs = spawn(worker_cmd(cfg), 1)
        feed = itertools.cycle(records)
        published = 0
        t0 = time.monotonic()
        try:
            while marks:
                if procs[0].poll() is not None:
                    raise RuntimeError(f"the router exited (rc {procs[0].returncode})")
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"memory run over {timeout:.0f}s at {samples}")
                subs = await ch.declare_queue(Q_SUBMISSIONS, passive=True)
                waiting = subs.declaration_result.message_count or 0
                # routed: published and no longer waiting (over by at most the router's prefetch, 128)
                routed = max(0, published - waiting)
                if waiting < 1000 and published < n + 500:
                    pubs = []
                    for sender_server, _targets, body in itertools.islice(feed, 1000):
                        msg = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                               headers={"x-axis-kind": "document", "x-axis-server": sender_server})
                        pubs.append(ex.publish(msg, routing_key=""))
                    await asyncio.gather(*pubs)
                    published += len(pubs)
                for sid in SERVER_IDS:  # keep the delivery queues short (the router packs them into bundles)
                    q = await ch.declare_queue(server_queue(sid), passive=True)
                    if (q.declaration_result.message_count or 0) > 500:
                        await q.purge()
                while marks and routed >= marks[0]:
                    samples.append((marks.pop(0), rss_kb(procs[0].pid)))
                    log(f"  routed {samples[-1][0]:,}: router RSS {samples[-1][1] / 1024:.1f} MB "
                        f"({time.monotonic() - t0:.0f} s, load average {os.getloadavg()[0]:.1f})")
                await asyncio.sleep(0.2)
        finally:
            stop(procs)
            await conn.close()
    return {"envelopes": n, "samples": samples, "seconds": time.monotonic() - t0}


def analyse(raw: dict[str, Any], full: int = FULL) -> Result:
    samples = raw["samples"]
    (n0, r0), (n1, r1) = samples[0], samples[-1]
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0  # KB/envelope
    extrapolated = n1 < full
    # A falling trend is not extrapolated (RSS does not shrink forever): the figure is then the larger of the
    # last sample and the baseline. A short window amplifies sampling noise by (full - n0) / (n1 - n0).
    at_full = max(r1, r0 + max(slope, 0.0) * (full - n0)) if extrapolated else r1
    growth = at_full / r0 - 1
    short = extrapolated and (full - n0) > 20 * max(1, n1 - n0)
    note = (f"measured {n0:,}→{n1:,}: {r0 / 1024:.1f}→{r1 / 1024:.1f} MB ({r1 / r0 - 1:+.1%}); "
            f"{'extrapolated' if extrapolated else 'measured'} at {full:,}: {at_full / 1024:.1f} MB "
            f"({growth:+.1%}); slope {slope * 1e5 / 1024:+.2f} MB per 100k"
            + (f"; the window is {(full - n0) / max(1, n1 - n0):.0f}× shorter than the extrapolation"
               if extrapolated else ""))
    return Result(f"router RSS at {full:,} vs {n0:,} routed{' (extrapolated)' if extrapolated else ''}",
                  at_full / 1024, "MB", baseline=r0 / 1024, baseline_label=f"RSS at {n0:,}",
                  target="within 10 %", met=None if short else abs(growth) <= 0.10,
                  notes=note + ("; too short to decide (run with --memory-envelopes ≥ 100,000)" if short else ""),
                  extra=raw)


async def soak(n: int, *, chunk: int = 5000, log: Any = print) -> dict[str, Any]:
    """The host soak: ``n`` distinct documents through a whole axis in chunks; RSS of every process per chunk."""
    from bench.e2e import WARM as E2E_WARM
    from bench.e2e import Axis, presign, sustained

    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with temp_vhost("axis-bench-soak") as url, tempfile.TemporaryDirectory(prefix="axis-bench-soak-") as tmp:
        ax = Axis(url, Path(tmp))
        with ax:
            await sustained(ax, presign(ax.connections, E2E_WARM, start=n))  # numbers past the soak's own
            procs = [(name, p.pid) for name, p in ax.run.procs]
            done = 0
            while done < n:
                k = min(chunk, n - done)
                docs = presign(ax.connections, k, start=done)
                r = await sustained(ax, docs)
                if r["rate"] is None:
                    raise RuntimeError(f"soak chunk at {done:,} incomplete: {r}")
                done += k
                rss = {name: rss_kb(pid) for name, pid in procs}
                samples.append({"documents": done, "rss_kb": rss, "rate": r["rate"],
                                "seconds": round(time.monotonic() - t0, 1)})
                log(f"  soak {done:,} documents ({r['rate']:.0f} doc/s): "
                    + ", ".join(f"{name} {kb / 1024:.1f}" for name, kb in rss.items()) + " MB")
    return {"documents": n, "chunk": chunk, "samples": samples, "seconds": time.monotonic() - t0}


def analyse_soak(raw: dict[str, Any], within: float = 0.10) -> list[Result]:
    """Per process: RSS at the end against RSS after the first tenth of the soak (at least one chunk)."""
    samples = raw["samples"]
    n = raw["documents"]
    base = next(s for s in samples if s["documents"] >= max(raw["chunk"], n // 10))
    last = samples[-1]
    out = []
    for name, r1 in last["rss_kb"].items():
        r0 = base["rss_kb"][name]
        peak = max(s["rss_kb"][name] for s in samples)
        growth = r1 / r0 - 1
        half = next(s for s in samples if s["documents"] >= last["documents"] // 2)["rss_kb"][name]
        out.append(Result(f"host soak RSS, {name}, {last['documents']:,} documents vs {base['documents']:,}",
                          r1 / 1024, "MB", baseline=r0 / 1024, baseline_label=f"RSS at {base['documents']:,}",
                          target=f"within {within:.0%}", met=abs(growth) <= within,
                          notes=f"{growth:+.1%}; second half {r1 / half - 1:+.1%} "
                                f"({half / 1024:.1f} → {r1 / 1024:.1f} MB); peak {peak / 1024:.1f} MB; "
                                f"{len(samples)} samples over {raw['seconds']:.0f} s",
                          extra={"samples": [(s["documents"], s["rss_kb"][name]) for s in samples]}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envelopes", type=int, default=40_000)
    ap.add_argument("--warm", type=int, default=WARM, help="the baseline checkpoint")
    ap.add_argument("--checkpoints", type=int, default=8, help="router RSS samples after the baseline")
    ap.add_argument("--soak", type=int, metavar="N", help="run the host soak of N documents instead")
    ap.add_argument("--chunk", type=int, default=5000, help="documents per soak chunk (one RSS sample each)")
    ap.add_argument("--json", help="write the raw samples here")
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from bench._common import table, write_json

    if a.soak:
        raw = asyncio.run(soak(a.soak, chunk=a.chunk))
        results = analyse_soak(raw)
        print(table(results))
        for r in results:
            print(f"- {r.figure}: {r.notes}")
    else:
        raw = asyncio.run(run(a.envelopes, warm=a.warm, checkpoints=a.checkpoints))
        res = analyse(raw)
        print(table([res]))
        print(res.notes)
    if a.json:
        write_json(a.json, raw)


if __name__ == "__main__":
    main()
