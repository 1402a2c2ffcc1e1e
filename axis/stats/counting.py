"""What the router counts, and the small protocol of the store it counts into.

The records are :mod:`axis.stats.records`: the router records ``Accepted`` per routed
document, ``Refused`` per refused message and ``Delivered`` when it routes the status 01 a recipient's server
sends after committing the inbox row — all idempotent in the store, all recorded before the ack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from axis.stats.records import Accepted, Delivered, Refused

__all__ = ["Accepted", "Counter", "Delivered", "MemoryCounter", "Refused", "open_counter"]


class Counter(Protocol):
    async def record(
        self,
        *,
        accepted: Sequence[Accepted] = (),
        delivered: Sequence[Delivered] = (),
        refused: Sequence[Refused] = (),
    ) -> None: ...

    async def close(self) -> None: ...


class MemoryCounter:
    """An in-process counter with the store's idempotency rules (for unit tests of the router core)."""

    def __init__(self) -> None:
        self.accepted: dict[str, Accepted] = {}
        self.delivered: dict[tuple[str, str], Delivered] = {}
        self.refused: dict[str, Refused] = {}

    async def record(
        self,
        *,
        accepted: Sequence[Accepted] = (),
        delivered: Sequence[Delivered] = (),
        refused: Sequence[Refused] = (),
    ) -> None:
        for a in accepted:
            self.accepted.setdefault(a.key, a)
        for d in delivered:
            self.delivered.setdefault((d.key, d.recipient), d)
        for r in refused:
            self.refused.setdefault(r.message_id, r)

    async def close(self) -> None:
        return None


async def open_counter(url: str) -> Counter:
    """The real statistics store at ``url``."""
    from axis.stats.store import StatsStore  # SQLAlchemy only for those that open a real store
    for attempt in range(5):  # several processes may create the schema at the same moment
        try:
            return await StatsStore.open(url)
        except Exception as exc:  # sqlite "table already exists" race, PostgreSQL catalog races
            if attempt == 4 or "exist" not in str(exc).lower():
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
