"""The CPU work of an endpoint server (parse, verify, schema, sign): inline for ordinary documents, in a thread
pool for large ones.

A hop to a pool thread and back costs more CPU than checking an ordinary document (~10 KB: parse + verify +
schema well under a millisecond) — the submit, the wake-up of the loop (``call_soon_threadsafe``), the futures —
so documents up to :data:`INLINE_MAX_BYTES` are checked right in the event loop (:func:`run_cpu_for`). Larger
ones (up to the envelope limit, megabytes) go to one bounded thread pool per process, shared by every logical
server of a host: lxml and cryptography release the GIL for much of their work, and the event loop stays free
for other requests, heartbeats and publisher confirms meanwhile. Work that touches an lxml tree is done entirely
inside one call (parse → check → plain results), never split between the pool and the loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None

#: Inputs up to this size are processed inline in the event loop (a few milliseconds of loop time at most).
INLINE_MAX_BYTES = int(os.environ.get("AXIS_CPU_INLINE_MAX_BYTES", str(64 * 1024)))


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 1) + 2)),
                                   thread_name_prefix="axis-cpu")
    return _pool


async def run_cpu(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the process's CPU pool; exceptions (e.g. Refusal) propagate unchanged."""
    return await asyncio.get_running_loop().run_in_executor(pool(), functools.partial(fn, *args, **kwargs))


async def run_cpu_for(size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` for an input of ``size`` bytes: inline when small, else in the CPU pool."""
    if size <= INLINE_MAX_BYTES:
        return fn(*args, **kwargs)
    return await run_cpu(fn, *args, **kwargs)
