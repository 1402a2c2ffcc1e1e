"""Evidence log throughput on SQLite: appends and inclusion proofs through ``axis.log.LogStore``, each beside a
baseline measured in the same run.

    python bench/evidence_log.py [--leaves N] [--batch B] [--proofs P] [--dir DIR] [--json FILE]

- append: ``LogStore.append`` in batches of B events (canonical leaf, idempotency key, duplicate lookup, leaf and
  subtree hashes, one transaction per batch). Baselines: the same leaves hashed in memory (leaf bytes, key, leaf
  hash and the subtrees they complete, no database), and a raw ``sqlite3`` insert of the very rows the store
  writes (same schema and indexes, same batches, precomputed);
- inclusion proofs: ``LogStore.inclusion(i, N)`` for random leaves, one after the other (each a thread hop and one
  query). Baseline: the same paths from the hashes in memory (``merkle.inclusion_path`` over a list);
- size on disk: the database file after a checkpoint, per leaf; and ``LogStore.verify`` over the whole log.

Targets (issue 13): append >= 20,000 leaves/s, proofs >= 2,000/s. Prints one JSON object (and writes it with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first; the package lives one level up
    sys.path.insert(0, str(ROOT))

from axis.core import merkle  # noqa: E402
from axis.core.evidence import Event  # noqa: E402
from axis.log import store as store_mod  # noqa: E402
from axis.log.store import LogStore  # noqa: E402

SENDERS = [f"000.00.00.G{i:02d}" for i in range(1, 40)]
RECIPIENTS = [f"000.00.00.H{i:02d}" for i in range(1, 60)]


def events(n: int, seed: int = 2019) -> list[Event]:
    """A document's life in five leaves (submitted, routed, stored ×2, status), as the axis writes them."""
    rnd = random.Random(seed)
    out: list[Event] = []
    t = 1_700_000_000_000
    doc = 0
    while len(out) < n:
        sender = rnd.choice(SENDERS)
        to = rnd.sample(RECIPIENTS, 2)
        base: dict[str, Any] = {"sender": sender, "document_id": f"{doc:08x}-7d1c-4c8e-9a51-{rnd.getrandbits(48):012x}",
                                "doc_type": 1 + doc % 3, "sha256": rnd.randbytes(32).hex()}
        out.append(Event("submitted", t, server="srv-01", **base))
        out.append(Event("routed", t + 40, **base))
        out.extend(Event("stored", t + 90 + i, agency=r, server=f"srv-{i + 2:02d}", **base) for i, r in enumerate(to))
        out.append(Event("status", t + 400, agency=to[0], code="03", **base))
        t += 37
        doc += 1
    return out[:n]


def memory_baseline(evs: list[Event]) -> float:
    t0 = time.perf_counter()
    src = merkle.ListSource()
    for e in evs:
        leaf = e.leaf()
        store_mod.key_hash(e)
        src.append(merkle.leaf_hash(leaf))
    return time.perf_counter() - t0


def store_rows(evs: list[Event]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The leaf and node rows the store writes for ``evs`` (precomputed, for the raw insert)."""
    leaves: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    src = merkle.ListSource()
    kinds = {t: i for i, t in enumerate(("submitted", "refused", "routed", "stored", "status", "acked", "admin"))}
    for idx, e in enumerate(evs):
        leaf = e.leaf()
        leaves.append({"idx": idx, "key_hash": store_mod.key_hash(e), "leaf": leaf, "kind": kinds[e.type],
                       "at": e.at, "sender": e.sender, "document_id": e.document_id, "agency": e.agency})
        before = [len(level) for level in src.levels]
        src.append(merkle.leaf_hash(leaf))
        for level, row in enumerate(src.levels):
            start = before[level] if level < len(before) else 0
            nodes.extend({"id": store_mod.node_id(level, i), "hash": row[i]} for i in range(start, len(row)))
    return leaves, nodes


def raw_sqlite_baseline(path: str, leaves: list[dict[str, Any]], nodes: list[dict[str, Any]], batch: int
                        ) -> tuple[float, float]:
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536", "wal_autocheckpoint=8192"):
        db.execute(f"PRAGMA {pragma}")  # the store's writer connection
    for sql in (*store_mod._SQLITE_DDL, *store_mod._INDEXES):
        db.execute(sql)
    # nodes belong to the batch whose last leaf completes them (id & low bits: the subtree's last leaf)
    by_leaf: dict[int, list[dict[str, Any]]] = {}
    for node in nodes:
        level, index = node["id"] >> store_mod.LEVEL_SHIFT, node["id"] & ((1 << store_mod.LEVEL_SHIFT) - 1)
        by_leaf.setdefault(((index + 1) << level) - 1, []).append(node)
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(leaves), batch):
        chunk = leaves[start : start + batch]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(store_mod._INSERT_LEAF, chunk)
        db.executemany(store_mod._INSERT_NODE, [n for row in chunk for n in by_leaf.get(row["idx"], ())])
        db.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    db.close()
    return elapsed, cpu


async def run(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    n, batch = args.leaves, args.batch
    evs = events(n)
    mem = memory_baseline(evs)
    leaves, nodes = store_rows(evs)
    raw, raw_cpu = raw_sqlite_baseline(os.path.join(tmp, "raw.sqlite3"), leaves, nodes, batch)
    path = os.path.join(tmp, "log.sqlite3")
    store = await LogStore.open(path)
    try:
        t0, c0 = time.perf_counter(), time.process_time()  # process time: the writer thread's too
        for start in range(0, n, batch):
            await store.append(evs[start : start + batch])
        append, append_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert await store.size() == n
        # a redelivered batch: the duplicate lookup alone
        t0 = time.perf_counter()
        again = await store.append(evs[:batch])
        redelivery = time.perf_counter() - t0
        assert again == list(range(min(batch, n)))

        rnd = random.Random(7)
        picks = [rnd.randrange(n) for _ in range(args.proofs)]
        src = merkle.ListSource([merkle.leaf_hash(row["leaf"]) for row in leaves])
        t0 = time.perf_counter()
        for i in picks:
            merkle.inclusion_path(src, i, n)
        proofs_mem = time.perf_counter() - t0
        root = await store.root()
        t0 = time.perf_counter()
        for i in picks:
            await store.inclusion(i, n)
        proofs = time.perf_counter() - t0
        for i in picks[:50]:  # the proofs are right
            assert merkle.verify_inclusion(src.perfect(0, i), i, n, await store.inclusion(i, n), root)
        t0 = time.perf_counter()
        for i in picks[: args.proofs // 4]:
            await store.consistency(max(1, i), n)
        consistency = time.perf_counter() - t0
        t0 = time.perf_counter()
        problems = await store.verify([])
        verify = time.perf_counter() - t0
        assert problems == [], problems[:5]
    finally:
        await store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = os.path.getsize(path)
    raw_db = sqlite3.connect(os.path.join(tmp, "raw.sqlite3"))
    raw_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw_db.close()
    leaf_bytes = sum(len(r["leaf"]) for r in leaves) / n
    return {
        "leaves": n, "batch": batch, "proofs": args.proofs,
        "append_leaves_per_s": round(n / append),
        "baseline_memory_leaves_per_s": round(n / mem),
        "baseline_raw_sqlite_leaves_per_s": round(n / raw),
        "append_vs_raw_sqlite": round(raw / append, 3),
        "append_cpu_us_per_leaf": round(append_cpu / n * 1e6, 1),
        "raw_sqlite_cpu_us_per_leaf": round(raw_cpu / n * 1e6, 1),
        "redelivered_batch_ms": round(redelivery * 1000, 2),
        "inclusion_proofs_per_s": round(args.proofs / proofs),
        "baseline_memory_proofs_per_s": round(args.proofs / proofs_mem),
        "consistency_proofs_per_s": round((args.proofs // 4) / consistency),
        "verify_leaves_per_s": round(n / verify),
        "bytes_per_leaf_on_disk": round(size / n, 1),
        "raw_sqlite_bytes_per_leaf": round(os.path.getsize(os.path.join(tmp, "raw.sqlite3")) / n, 1),
        "mean_leaf_bytes": round(leaf_bytes, 1),
        "targets": {"append_leaves_per_s": 20_000, "inclusion_proofs_per_s": 2_000},
        "met": {"append": n / append >= 20_000, "proofs": args.proofs / proofs >= 2_000},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leaves", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--proofs", type=int, default=5_000)
    ap.add_argument("--dir", help="where the databases go (default: a temporary directory, removed)")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(args, args.dir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(run(args, tmp))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
