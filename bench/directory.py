"""Directory load: 120,000 agencies (63 provincial shared servers) from a config file with an agencies CSV.

Measured in a fresh process each (so resident memory is not polluted): ``axis.config.load_config`` — what every
router and server pays at start (CSV → AgencyConfig records → validated ``Directory``) — and, as the baseline,
the bare minimum: ``csv.reader`` into a dict of tuples. Time is wall clock; memory is the growth of the
process's resident set across the load (after the imports).

    python bench/directory.py [--agencies 120000]
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Result, rss_kb

PROVINCES = 63


def write_config(d: Path, n: int) -> Path:
    """config.yaml + agencies.csv with ``n`` agencies (QCVN 102:2016 codes) on 63 shared servers."""
    import yaml

    rows = []
    per = -(-n // PROVINCES)
    for i in range(n):
        p, r = divmod(i, per)
        b, c = divmod(r, 100)
        rows.append((f"{b:03d}.{(c // 10):02d}.{(c % 10):02d}.H{p + 1:02d}", f"Cơ quan {i}", f"prov-{p + 1:02d}"))
    with (d / "agencies.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["code", "name", "server", "token_sha256", "key", "cert"])
        for code, name, sid in rows:
            w.writerow([code, name, sid, "", "", ""])
    cfg = {"servers": [{"id": f"prov-{p + 1:02d}", "kind": "shared"} for p in range(PROVINCES)],
           "agencies_file": "agencies.csv"}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    return d / "config.yaml"


def child(mode: str, config: str) -> dict[str, Any]:
    """In a fresh process: load once, report seconds and resident-set growth."""
    import axis.config  # noqa: F401  (imports are not part of the figure)

    gc.collect()
    before = rss_kb(_pid())
    t = time.perf_counter()
    cpu = time.process_time()
    if mode == "baseline":
        with (Path(config).parent / "agencies.csv").open(newline="", encoding="utf-8") as f:
            r = csv.reader(f)
            next(r)
            obj: Any = {row[0]: (row[1], row[2]) for row in r}
        n = len(obj)
    else:
        from axis.config import load_config

        obj = load_config(config)
        n = len(obj.directory)
        assert obj.directory.agency(next(iter(obj.directory.agencies))) is not None
    secs = time.perf_counter() - t
    cpu = time.process_time() - cpu
    gc.collect()
    return {"agencies": n, "seconds": secs, "cpu_seconds": cpu, "rss_mb": (rss_kb(_pid()) - before) / 1024}


def _pid() -> int:
    import os

    return os.getpid()


def measure(n: int = 120_000, log: Any = print) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="axis-bench-dir-") as tmp:
        cfg = write_config(Path(tmp), n)
        out = {}
        for mode in ("baseline", "directory"):
            p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, str(cfg)],
                               capture_output=True, text=True, check=True)
            out[mode] = json.loads(p.stdout.strip().splitlines()[-1])
            log(f"  {mode}: {out[mode]}")
    d, b = out["directory"], out["baseline"]
    return [
        Result(f"directory load time ({n:,} agencies, load_config)", d["seconds"], "s", baseline=b["seconds"],
               baseline_label="csv → dict", target="≤ 2 s", met=d["seconds"] <= 2, extra=out,
               notes=f"CPU time {d['cpu_seconds']:.2f} s (wall clock above; they differ when the machine is busy)"),
        Result(f"directory memory ({n:,} agencies)", d["rss_mb"], "MB", baseline=b["rss_mb"],
               baseline_label="csv → dict", target="≤ 200 MB", met=d["rss_mb"] <= 200, extra=out),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agencies", type=int, default=120_000)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "CONFIG"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    from bench._common import table

    print(table(measure(a.agencies)))


if __name__ == "__main__":
    main()
