"""A separate writer process for the concurrency tests: records a deterministic batch series into a store.

Usage: python stats_writer.py URL PREFIX START COUNT — documents PREFIX-START..PREFIX-(START+COUNT-1), each with two
deliveries, plus one refusal per document, in batches of 50.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from axis.stats.store import Accepted, Delivered, Refused, StatsStore

T0 = datetime(2019, 3, 12, 8, 0, tzinfo=UTC)


def batch(prefix: str, start: int, count: int) -> tuple[list[Accepted], list[Delivered], list[Refused]]:
    acc, dl, ref = [], [], []
    for i in range(start, start + count):
        key = f"000.00.00.G01|{prefix}-{i}|1"
        at = T0 + timedelta(minutes=i)
        acc.append(
            Accepted(
                key,
                "000.00.00.G01",
                "dedicated",
                f"{prefix}-{i}",
                1,
                1000 + i,
                (("000.00.00.H01", "shared"), ("000.00.00.H02", "dedicated")),
                5.0,
                at,
            )
        )
        dl.append(Delivered(key, "000.00.00.G01", "dedicated", "000.00.00.H01", "shared", f"{prefix}-{i}", at))
        dl.append(Delivered(key, "000.00.00.G01", "dedicated", "000.00.00.H02", "dedicated", f"{prefix}-{i}", at))
        ref.append(Refused(f"msg-{prefix}-{i}", "000.00.00.G02", "SIGNATURE_INVALID", 10, at))
    return acc, dl, ref


async def main(url: str, prefix: str, start: int, count: int) -> None:
    store = await StatsStore.open(url)
    try:
        for s in range(start, start + count, 50):
            acc, dl, ref = batch(prefix, s, min(50, start + count - s))
            await store.record(accepted=acc, delivered=dl, refused=ref)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
