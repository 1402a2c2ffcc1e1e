"""A gate between a logical server's in-flight work (deliveries, HTTP requests) and a configuration swap.

Work holds the gate for its whole duration (:meth:`Gate.hold`); a swap (:meth:`Gate.closed`) stops new work
from starting, waits until the work in flight is done, swaps, and reopens. So every delivery and request sees
one configuration from its first line to its last: a delivery checked "is the recipient mine?" under the old
directory is stored under the old directory too (never dropped half-way between two views). Waiting is bounded
(``timeout``): a client dribbling a large upload cannot hold a reload, and the work queued behind it, forever;
past the bound the swap goes ahead and is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("axis.endpoint")


class Gate:
    def __init__(self) -> None:
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()

    @property
    def active(self) -> int:
        return self._active

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    @asynccontextmanager
    async def closed(self, timeout: float = 10.0) -> AsyncIterator[None]:
        """Exclusive: no work starts while inside; entered once the work in flight is done (or ``timeout``)."""
        self._open.clear()
        try:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                log.warning("configuration swap: %d operations still in flight after %.0f s; swapping anyway",
                            self._active, timeout)
            yield
        finally:
            self._open.set()


class GatedApp:
    """ASGI wrapper: every HTTP request holds the gate (lifespan and other scopes pass through)."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        async with self.gate.hold():
            await self.app(scope, receive, send)
