"""The CPU work of an endpoint server (parse, verify, schema, sign) runs off the event loop.

One bounded thread pool per process, shared by every logical server of a host: lxml and cryptography release
the GIL for much of their work, and above all the event loop stays free for other requests, heartbeats and
publisher confirms while a document is checked. Work that touches an lxml tree is done entirely inside one
call (parse → check → plain results), never split between the pool and the loop.
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


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 1) + 2)),
                                   thread_name_prefix="axis-cpu")
    return _pool


async def run_cpu(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the process's CPU pool; exceptions (e.g. Refusal) propagate unchanged."""
    return await asyncio.get_running_loop().run_in_executor(pool(), functools.partial(fn, *args, **kwargs))
