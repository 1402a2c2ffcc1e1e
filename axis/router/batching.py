"""How a router forms its batches: take what has arrived, and wait a little for more only when the machine is short
of CPU — or, for statuses, until a document comes.

A batch costs its thread hop, its publishes (what it sends to one server travels as one bundle), its counting
transaction and its ack once, whatever its size; and fewer, fuller bundles cost RabbitMQ and the endpoint hosts
less per document. Waiting for a batch to fill buys that — batches of up to 512 and 150 ms took the full
seed-2019 replay from 138–151 s to 82–86 s (bench/README.md) — and costs latency: every document of the batch
waits. So a router waits only when CPU is what is short (:func:`linger_for`):

- traffic coming slowly (under :data:`LINGER_ABOVE_PER_SECOND` documents and statuses a second, a bundle's items
  each, to this router): never;
- otherwise by how busy the machine's CPUs are (:class:`MachineBusy`): not at all below :data:`MACHINE_BUSY_FROM`
  over the last second; up to :data:`BUSY_LINGER_SECONDS` (50 ms), in proportion, when it is busy; all of ``linger``
  (150 ms) only once it has been saturated for seconds (:data:`MACHINE_SATURATED` over ~3 s).

The machine's CPU, not the router's own busy time: with the endpoint hosts on the same cores, the router is seldom
the bottleneck when the machine is — its batches are then small unless it waits, and the hosts and RabbitMQ pay
per message. And a router's wall time "busy" with a batch is mostly waiting for publisher confirms (idle CPU):
measured by it, a router at a moderate 100 documents/s lingered ~100 ms (bench/README.md, session 6). When the
router itself is the bottleneck, batches fill from the backlog without any wait.

Why from 80 % and not lower: small batches cost more CPU per document, so a machine at half its capacity in
documents (250/s on a machine that sustains ~580/s, bench/README.md, session 7) is already 60-80 % busy. Waiting
from 60 % there added up to 100 ms to most documents (p50 65-68 ms, p99 224-230 ms at 250/s; 20-24 / 77-84 ms at
100/s); waiting from 80 % gave 52-59 / 140-152 ms and 14 / 35-42 ms, the sustained rate unchanged. Waiting only
from 90 % saved no more latency at 100/s and made 250/s worse (the hosts then pay per message: POST → 202 p99
128-180 ms). A saturated machine (the replay, or any rate over capacity) is above 95 % and waits the whole linger.

**Busy is not saturated** (session 10, bench/README.md). 250/s on 2 cores keeps the machine 80–92 % busy second
by second, with moments above 95 %; the replay and a closed loop stay at 97–100 %. Waiting up to 150 ms whenever
one second was over 95 % made much of the tail at 250/s; never waiting more than 50 ms halved it (median p99 of 9
rounds 84 against 133 ms) but cost the replay 11–18 % (smaller batches where the hosts, not the router, saturate
the machine). So the whole linger waits for a ~3 s average over :data:`MACHINE_SATURATED`, which the replay reaches
within seconds and brief peaks at 250/s less often: interleaved, 9 rounds each, p99 at 250/s 85–384 ms (median
171) against 142–481 (213), p50 29–67 against 36–126 ms; the replay 104.6 and 99.0 s against 102.1 and 97.8 s
(submit phases alike); a saturated closed loop 3.05–3.15 against 3.03–3.13 ms of CPU per document.

**Statuses gather, documents do not wait for them.** A batch that starts with a status (the status 01s a
recipient's server sends as it stores a delivery, an agency's status) waits up to :data:`STATUS_GATHER_SECONDS`
for more, and stops waiting the moment a document arrives (:meth:`BatchInbox.fill` with ``until``). Below the
machine's 80 % nothing else gathers the status 01s of one document, which arrive from each recipient's server a few
milliseconds apart: each made its own batch, its own forward to the sender's server, its own evidence message
and its own counting transaction. At a steady 100 documents/s (`bench/cpu_per_doc.py --rate 100`, session 7) the
gather took the axis from 15.0 to 13.1–14.0 ms of CPU per document and from 11.3–11.6 to 9.7–9.9 AMQP messages per
document, and documents were no later (p50 8.4–11.5 against 14.9–15.2 ms: less CPU, less waiting for it). A
blunt 20 ms wait that documents did not end saved more CPU (12.3–12.7 ms) but held documents behind statuses (p50
24 ms). A status reaches its sender up to 20 ms later; no document does. Since session 8 the forwards, evidence
messages and counting transactions of all the batches of 250 ms are shared anyway (:mod:`axis.router.settle`); the
gather still saves the batches themselves.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: the arrival rate (documents and statuses a second, a bundle's items each; this router) below which a batch never
#: waits for more. Counted in messages, it undercounted bundled traffic: with the doors' bundles of ~3 documents, two
#: routers sharing ~170 documents/s saw fewer than 50 messages a second each and never waited (bench/README.md,
#: session 9)
LINGER_ABOVE_PER_SECOND = 50.0
#: the share of the machine's CPU time in use (over ~1 s) from which a batch starts to wait for more …
MACHINE_BUSY_FROM = 0.8
#: … and from which it waits :data:`BUSY_LINGER_SECONDS` (at most ``linger``)
MACHINE_BUSY_FULL = 0.95
#: the longest wait of a machine that is busy but not saturated
BUSY_LINGER_SECONDS = 0.05
#: the share over ~3 s from which the machine counts as saturated: a batch then waits the whole ``linger``
MACHINE_SATURATED = 0.95
#: how long a batch that starts with a status waits for more statuses (a document's arrival ends the wait)
STATUS_GATHER_SECONDS = 0.02


def linger_for(linger: float, per_second: float, machine_busy: float, sustained_busy: float = 0.0) -> float:
    """How long a batch waits for more (seconds), see the module docstring: ``machine_busy`` is the busy share
    over ~1 s, ``sustained_busy`` over ~3 s (:class:`MachineBusy`)."""
    if linger <= 0 or per_second < LINGER_ABOVE_PER_SECOND or machine_busy < MACHINE_BUSY_FROM:
        return 0.0
    if sustained_busy >= MACHINE_SATURATED:
        return linger
    share = (machine_busy - MACHINE_BUSY_FROM) / (MACHINE_BUSY_FULL - MACHINE_BUSY_FROM)
    return min(linger, BUSY_LINGER_SECONDS) * min(1.0, share)


class BatchInbox(asyncio.Queue[T]):
    """The consumed messages, and a wait for a batch to fill that sleeps until the batch is full, an awaited kind
    of item arrives or its time is up: woken by that arrival, not polled (polling every 5 ms cost a lingering router
    ~6 ms of CPU a second, bench/README.md)."""

    def __init__(self) -> None:
        super().__init__()
        self._want = 0  # the size a waiting fill() is woken at (0: nobody waits)
        self._until: Callable[[T], bool] | None = None  # … or the item it is woken by
        self._full = asyncio.Event()

    def put_nowait(self, item: T) -> None:
        super().put_nowait(item)  # unbounded: Queue.put() is this, never blocks
        if self._want and (self.qsize() >= self._want or (self._until is not None and self._until(item))):
            self._full.set()

    async def fill(self, size: int, seconds: float, until: Callable[[T], bool] | None = None) -> None:
        """Wait until the inbox holds ``size`` items or an item for which ``until`` is true arrives, at most
        ``seconds``."""
        if self.qsize() >= size:
            return
        self._want, self._until = size, until
        self._full.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._full.wait()
        except TimeoutError:
            pass
        finally:
            self._want, self._until = 0, None


class Rate:
    """Items (documents and statuses) per second taken by the work loop: an exponentially weighted average over ~1 s."""

    def __init__(self) -> None:
        self.per_second = 0.0
        self._count = 0
        self._since = time.monotonic()

    def taken(self, n: int) -> None:
        self._count += n
        now = time.monotonic()
        elapsed = now - self._since
        if elapsed >= 0.25:
            self.per_second = 0.5 * self.per_second + 0.5 * self._count / elapsed
            self._count, self._since = 0, now


class MachineBusy:
    """The share of the machine's CPU time in use (all cores, every process): from ``/proc/stat``, read at most every
    0.25 s and averaged over ~1 s (:meth:`fraction`) and over ~3 s (:meth:`sustained`); where there is no
    ``/proc/stat``, the load average per core (both)."""

    def __init__(self, stat: str = "/proc/stat") -> None:
        self.stat = stat
        self._fraction = 0.0
        self._sustained = 0.0
        self._last = self._times()
        self._at = time.monotonic()

    def fraction(self) -> float:
        now = time.monotonic()
        if now - self._at >= 0.25:
            times = self._times()
            if times is not None and self._last is not None:
                busy, total = times[0] - self._last[0], times[1] - self._last[1]
                if total > 0:
                    share = min(1.0, max(0.0, busy / total))
                    self._fraction = 0.5 * self._fraction + 0.5 * share
                    self._sustained = 0.9 * self._sustained + 0.1 * share
            elif times is None:
                self._fraction = self._sustained = min(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
            self._last, self._at = times, now
        return self._fraction

    def sustained(self) -> float:
        """The busy share over ~3 s (an average of the samples of :meth:`fraction`, 0.1 each)."""
        return self._sustained

    def _times(self) -> tuple[int, int] | None:
        """(busy, total) clock ticks of all CPUs since boot; None without ``/proc/stat``."""
        try:
            with open(self.stat, "rb") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        total = sum(fields[:8])  # user … steal; guest time is already counted in user
        return total - idle, total
