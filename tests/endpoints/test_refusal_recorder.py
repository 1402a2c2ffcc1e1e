"""RefusalRecorder: every record is committed before record() returns; concurrent ones share a transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from axis.stats.counting import MemoryCounter, Refused
from endpoints.refusals import RefusalRecorder, refused_record


class CountingCounter(MemoryCounter):
    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.calls = 0
        self.fail = fail

    async def record(self, *, refused: Sequence[Refused] = (), **kw: object) -> None:  # type: ignore[override]
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail:
            self.fail -= 1
            raise OSError("store down")
        await super().record(refused=refused)


async def test_concurrent_refusals_are_batched_and_committed_before_return() -> None:
    counter = CountingCounter()
    rec = RefusalRecorder(counter)
    records = [refused_record("000.00.00.G01", "FORBIDDEN", i) for i in range(50)]

    async def one(r: Refused) -> bool:
        await rec.record(r)
        return r.message_id in counter.refused  # committed when record() returned

    assert all(await asyncio.gather(*(one(r) for r in records)))
    assert len(counter.refused) == 50 and counter.calls < 10
    await rec.close()


async def test_a_failing_store_is_retried() -> None:
    counter = CountingCounter(fail=2)
    rec = RefusalRecorder(counter)
    r = refused_record("000.00.00.G01", "XML_MALFORMED", 3)
    await rec.record(r)
    assert list(counter.refused) == [r.message_id] and counter.calls == 3
    await rec.close()
    await rec.close()  # idempotent
