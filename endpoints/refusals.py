"""Counting documents an endpoint server refuses over HTTP (they never reach the router).

Each refused ``POST /v1/documents`` becomes one ``Refused(message_id=<new uuid>, sender=<caller>, reason, size,
at)`` in the statistics store. Requests hand their record to :class:`RefusalRecorder` and wait until it is
committed, so a 4xx is never answered before its count is stored; concurrent refusals are written together
(one transaction per batch of up to ``batch`` rows), so a flood of bad documents costs one insert per batch,
not one per request. A store that keeps failing is logged (the client still gets its answer, a refusal is
never turned into a 5xx).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from axis.stats.counting import Counter, Refused

log = logging.getLogger("axis.endpoint")


def refused_record(sender: str, reason: str, size: int) -> Refused:
    return Refused(message_id=str(uuid.uuid4()), sender=sender, reason=reason, size=size, at=datetime.now(UTC))


class RefusalRecorder:
    """Batches ``Refused`` rows into a statistics store; :meth:`record` returns once the row is committed."""

    def __init__(self, counter: Counter, *, batch: int = 256, retries: int = 3) -> None:
        self.counter = counter
        self.batch = batch
        self.retries = retries
        self._queue: asyncio.Queue[tuple[Refused, asyncio.Future[None]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def record(self, refused: Refused) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="axis-refusal-recorder")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((refused, fut))
        await asyncio.shield(fut)  # a client hanging up must not cancel the write of a batch

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < self.batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            stop = None in items
            await self._write([i for i in items if i is not None])
            if stop:
                return

    async def _write(self, items: list[tuple[Refused, asyncio.Future[None]]]) -> None:
        rows = [r for r, _ in items]
        for attempt in range(self.retries):
            try:
                await self.counter.record(refused=rows)
                break
            except Exception:
                if attempt == self.retries - 1:
                    log.exception("could not record %d refusals in the statistics store: %s", len(rows),
                                  ", ".join(f"{r.sender}:{r.reason}" for r in rows[:20]))
                else:
                    await asyncio.sleep(0.1 * (attempt + 1))
        for _, fut in items:
            if not fut.done():
                fut.set_result(None)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None and not self._task.done():
            await self._queue.put(None)
            await self._task
        self._task = None
