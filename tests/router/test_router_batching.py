"""Router batching: a batch waits (at most ``linger``) for more messages only when they come fast and the machine is
short of CPU; the wait sleeps until the batch is full; the rates and the machine's busy share it is decided by."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from axis.router.batching import (
    BUSY_LINGER_SECONDS,
    LINGER_ABOVE_PER_SECOND,
    MACHINE_BUSY_FROM,
    MACHINE_BUSY_FULL,
    MACHINE_SATURATED,
    BatchInbox,
    MachineBusy,
    Rate,
    linger_for,
)


async def test_fill_returns_once_the_batch_is_full() -> None:
    q: BatchInbox[int] = BatchInbox()

    async def feed() -> None:
        for i in range(10):
            await asyncio.sleep(0.002)
            await q.put(i)  # what aio-pika's consumer callback does

    feeder = asyncio.create_task(feed())
    started = time.monotonic()
    await q.fill(10, 5.0)
    assert q.qsize() == 10 and time.monotonic() - started < 1.0  # woken by the 10th, long before the 5 s
    await feeder


async def test_fill_until_an_awaited_item_arrives() -> None:
    """A gathering batch (statuses) stops waiting the moment an awaited item (a document) arrives, not before."""
    q: BatchInbox[str] = BatchInbox()
    waiter = asyncio.create_task(q.fill(100, 5.0, until=lambda item: item == "document"))
    await asyncio.sleep(0.01)
    q.put_nowait("status")
    q.put_nowait("status")
    await asyncio.sleep(0.01)
    assert not waiter.done()  # statuses gather
    started = time.monotonic()
    q.put_nowait("document")
    await asyncio.wait_for(waiter, 0.5)
    assert time.monotonic() - started < 0.1 and q.qsize() == 3
    q.put_nowait("document")  # nobody waits any more: nothing is left set for the next fill
    started = time.monotonic()
    await q.fill(100, 0.05)  # without until, a document is just an item
    assert time.monotonic() - started >= 0.04


async def test_fill_gives_up_at_the_deadline() -> None:
    q: BatchInbox[int] = BatchInbox()
    q.put_nowait(1)
    started = time.monotonic()
    await q.fill(10, 0.05)
    assert 0.04 <= time.monotonic() - started < 0.5 and q.qsize() == 1


async def test_fill_sleeps_until_woken() -> None:
    # no polling: while it waits nothing runs on the loop unless an arrival fills the batch
    q: BatchInbox[int] = BatchInbox()
    waiter = asyncio.create_task(q.fill(3, 5.0))
    await asyncio.sleep(0.01)
    q.put_nowait(1)
    q.put_nowait(2)
    await asyncio.sleep(0.01)
    assert not waiter.done()  # two of three
    q.put_nowait(3)
    await asyncio.wait_for(waiter, 0.5)
    assert q.qsize() == 3
    await q.fill(2, 5.0)  # already full enough: returns at once
    q.put_nowait(4)  # nobody waits: no wake-up is left set for the next fill
    assert [q.get_nowait() for _ in range(4)] == [1, 2, 3, 4]
    started = time.monotonic()
    await q.fill(1, 0.05)
    assert time.monotonic() - started >= 0.04


def test_rate_follows_what_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    rate = Rate()
    for _ in range(10):  # 40 messages/s for 2.5 s
        now[0] += 0.25
        rate.taken(10)
    assert 35 < rate.per_second <= 40
    for _ in range(10):  # then 400/s
        now[0] += 0.25
        rate.taken(100)
    assert rate.per_second > 390


def test_a_batch_waits_only_when_the_machine_is_short_of_cpu() -> None:
    """No wait when messages come slowly or the machine has CPU to spare (latency at low load); a short one when it
    is busy (latency at moderate load: 250/s on 2 cores is 80-92 % busy); all of ``linger`` once it has been
    saturated for seconds (throughput: the replay sits at 97-100 %, bench/README.md, session 10)."""
    fast = LINGER_ABOVE_PER_SECOND * 4
    assert linger_for(0.15, LINGER_ABOVE_PER_SECOND / 2, 1.0, 1.0) == 0.0  # slow arrivals: never
    assert linger_for(0.0, fast, 1.0, 1.0) == 0.0  # lingering off
    assert linger_for(0.15, fast, 0.0) == linger_for(0.15, fast, MACHINE_BUSY_FROM) == 0.0  # CPU to spare
    halfway = (MACHINE_BUSY_FROM + MACHINE_BUSY_FULL) / 2
    assert linger_for(0.15, fast, halfway) == pytest.approx(BUSY_LINGER_SECONDS / 2)  # busy: a short wait
    assert linger_for(0.15, fast, MACHINE_BUSY_FULL) == linger_for(0.15, fast, 1.0) == BUSY_LINGER_SECONDS
    assert linger_for(0.02, fast, 1.0) == 0.02  # never more than linger
    assert linger_for(0.15, fast, 1.0, MACHINE_SATURATED) == 0.15  # saturated for seconds: the whole linger
    assert linger_for(0.15, fast, 0.5, 1.0) == 0.0  # … but not once a second has CPU to spare again


def stat_line(busy: int, idle: int, iowait: int = 0) -> str:
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice (clock ticks since boot)
    return f"cpu  {busy} 0 0 {idle} {iowait} 0 0 0 {busy // 2} 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_machine_busy_follows_proc_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    stat = tmp_path / "stat"
    ticks = {"busy": 1000, "idle": 1000}
    stat.write_text(stat_line(**ticks))
    machine = MachineBusy(str(stat))
    for _ in range(12):  # 20 % busy (iowait counts as idle; guest time is inside user already)
        now[0] += 0.25
        ticks["busy"] += 10
        ticks["idle"] += 40
        stat.write_text(stat_line(**ticks))
        machine.fraction()
    assert 0.19 < machine.fraction() <= 0.2
    for _ in range(12):  # then saturated
        now[0] += 0.25
        ticks["busy"] += 50
        stat.write_text(stat_line(**ticks))
        machine.fraction()
    assert machine.fraction() > 0.99
    assert 0.7 < machine.sustained() < 0.85  # the ~3 s average follows slower: a busy second is not saturation
    for _ in range(60):
        now[0] += 0.25
        ticks["busy"] += 50
        stat.write_text(stat_line(**ticks))
        machine.fraction()
    assert machine.sustained() > 0.99
    reads = machine.fraction()
    stat.write_text(stat_line(0, 0))
    assert machine.fraction() == reads  # read at most every 0.25 s


def test_without_proc_stat_the_load_average_per_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    machine = MachineBusy(str(tmp_path / "missing"))
    now[0] += 0.3
    assert machine.fraction() == 0.75 == machine.sustained()


def test_proc_stat_is_readable_here() -> None:
    machine = MachineBusy()
    assert machine._times() is not None  # Linux: the router's signal is the real one


def test_the_rate_counts_a_bundles_items_not_its_message() -> None:
    """Two routers sharing ~170 documents/s in the doors' bundles of ~3 saw under 50 messages/s each and never waited
    for fuller batches (bench/README.md, session 9): the rate counts the documents and statuses a message carries."""
    from axis.core import bundle
    from axis.core.wire import H_KIND, KIND_DOCUMENT, KIND_DOCUMENT_BUNDLE, KIND_STATUS_BUNDLE
    from axis.router.service import _items

    class Message:
        def __init__(self, kind: str, body: bytes) -> None:
            self.headers, self.body = {H_KIND: kind}, body

    three = bundle.pack([bundle.Item(b"<a/>"), bundle.Item(b"<b/>"), bundle.Item(b"<c/>")])
    assert bundle.declared_items(three) == 3 == len(bundle.unpack(three))
    assert _items(Message(KIND_DOCUMENT_BUNDLE, three)) == 3  # type: ignore[arg-type]
    assert _items(Message(KIND_STATUS_BUNDLE, three)) == 3  # type: ignore[arg-type]
    assert _items(Message(KIND_DOCUMENT, three)) == 1  # type: ignore[arg-type]
    # a figure for the rate only: a broken or lying bundle counts at least 1 and at most MAX_ITEMS (unpack refuses it)
    assert _items(Message(KIND_DOCUMENT_BUNDLE, b"<edXML/>")) == 1  # type: ignore[arg-type]
    assert bundle.declared_items(bundle.MAGIC + b"\xff\xff\xff\xff") == bundle.MAX_ITEMS
    assert bundle.declared_items(bundle.MAGIC + b"\x00\x00\x00\x00") == 1
    rate = Rate()
    rate.taken(sum(_items(m) for m in [Message(KIND_DOCUMENT_BUNDLE, three)] * 20))  # type: ignore[arg-type]
    rate._since -= 0.5  # half a second ago
    rate.taken(0)
    assert rate.per_second == pytest.approx(60, rel=0.05)  # 60 items/s from 20 messages: over the 50/s threshold
    assert linger_for(0.15, rate.per_second, 1.0, 1.0) == 0.15
