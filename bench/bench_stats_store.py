"""Statistics store write throughput: batched ``record`` calls against one-row-per-call (the baseline, same run).

    python bench/bench_stats_store.py [--url URL] [--rows N] [--batch B]

Default URL: a fresh SQLite file in a temporary directory. Prints one JSON object: rows/s batched, rows/s for
the baseline and their ratio. A row is one Accepted plus its deliveries (as a router flushes them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from axis.stats.store import Accepted, Delivered, StatsStore

RECIPIENTS = (("000.00.00.H01", "shared"), ("000.00.00.H02", "dedicated"), ("000.00.00.G03", "dedicated"))


def rows(prefix: str, start: int, n: int) -> tuple[list[Accepted], list[Delivered]]:
    now = datetime.now(UTC)
    acc, dl = [], []
    for i in range(start, start + n):
        key = f"000.00.00.G01|{prefix}{i}|1"
        acc.append(Accepted(key, "000.00.00.G01", "dedicated", f"{prefix}{i}", 1, 4096, RECIPIENTS, 3.0, now))
        dl.extend(Delivered(key, "000.00.00.G01", "dedicated", r, k, f"{prefix}{i}", now) for r, k in RECIPIENTS)
    return acc, dl


async def timed(store: StatsStore, prefix: str, total: int, batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, total, batch):
        acc, dl = rows(prefix, start, min(batch, total - start))
        await store.record(accepted=acc, delivered=dl)
    return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/bench.sqlite3"
        store = await StatsStore.open(url)
        try:
            run = uuid.uuid4().hex[:8]
            baseline_rows = max(args.rows // 10, 100)
            base = await timed(store, f"b{run}-", baseline_rows, 1)
            batched = await timed(store, f"x{run}-", args.rows, args.batch)
        finally:
            await store.close()
    per_doc = 1 + len(RECIPIENTS)
    out = {
        "url": url.split("@")[-1],
        "documents": args.rows,
        "batch": args.batch,
        "rows_per_s_batched": round(args.rows * per_doc / batched),
        "rows_per_s_one_per_call": round(baseline_rows * per_doc / base),
    }
    out["ratio"] = round(out["rows_per_s_batched"] / out["rows_per_s_one_per_call"], 1)
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    asyncio.run(main())
