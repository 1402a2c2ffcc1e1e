"""The relay: the router's broker work and nothing else — the baseline that makes "router / relay" the routing
overhead.

It does on the wire what a router process (``axis.router.service.RouterService``) does, with the same code where the
code is broker work: consume ``axis.submissions`` (manual acks, the router's prefetch of 1,024), take batches of up to
512 the same way (waiting up to 150 ms to fill when the machine is short of CPU: ``axis.router.batching``), build one
delivery per target server with the router's delivery headers, pack a batch's deliveries per server into bundles
(``axis.router.core.coalesce``), add the batch's evidence message (two events per document, as the router), publish
them all confirmed (``axis.broker.transport.Publisher``) and ack the batch with one ``multiple`` ack. It does not
parse, verify, validate, route from the directory or count: the targets, recipients, sender, document id and digest
come from the ``x-bench-meta`` header the pre-fill wrote (the router ignores it).

Progress: each worker writes the number of envelopes it has acked into ``<progress dir>/<pid>`` (the drain
harness sums them; the relay's deliveries travel in bundles, so queue depths do not count them).

    python bench/relay.py --amqp URL --progress DIR   # a worker (the drain harness starts these)
    python bench/relay.py --envelopes 2000            # a stand-alone relay drain measurement
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench._common import H_META, corpus, temp_vhost
from bench._drain import drain

PREFETCH = 1024  # RouterService's defaults
BATCH = 512
LINGER = 0.15


def deliveries(messages: list[Any], now_ms: int) -> tuple[list[Any], list[Any]]:
    """The batch's outgoing messages (deliveries coalesced per server, then its evidence message) from each
    message's ``x-bench-meta``: what the router would publish for these documents."""
    from axis.core.evidence import Event
    from axis.core.wire import (
        EX_DELIVER,
        H_DOC_TYPE,
        H_DOCUMENT_ID,
        H_KIND,
        H_RECIPIENTS,
        H_SENDER,
        KIND_DOCUMENT,
        Outgoing,
        evidence,
    )
    from axis.router.core import coalesce

    outgoing = []
    events = []
    for m in messages:
        meta = orjson.loads((m.headers or {})[H_META])
        base = {H_SENDER: meta["sender"], H_DOCUMENT_ID: meta["document_id"], H_DOC_TYPE: 0}
        for sid, codes in meta["targets"].items():
            outgoing.append(Outgoing(EX_DELIVER, sid, m.body, {H_KIND: KIND_DOCUMENT, H_RECIPIENTS: codes, **base}))
        events += [Event("submitted", now_ms, meta["sender"], meta["document_id"], 0, meta["sha256"],
                         server=meta["server"]),
                   Event("routed", now_ms, meta["sender"], meta["document_id"], 0, meta["sha256"])]
    out = coalesce(outgoing)
    out.append(evidence(events))
    return out, events


async def relay(url: str, progress: Path, *, prefetch: int = PREFETCH, batch: int = BATCH,
                linger: float = LINGER) -> None:
    """Relay until SIGTERM, one batch at a time (as the router)."""
    from axis.broker.topology import attach_exchanges, attach_queue
    from axis.broker.transport import IncomingMessage, Publisher, connect
    from axis.core.wire import Q_SUBMISSIONS
    from axis.router.batching import BatchInbox, MachineBusy, Rate, linger_for

    conn = await connect(url)
    _, exchanges = await attach_exchanges(conn)
    publisher = Publisher(exchanges)
    _, queue = await attach_queue(conn, Q_SUBMISSIONS, prefetch=prefetch)
    inbox: BatchInbox[IncomingMessage] = BatchInbox()
    rate = Rate()
    machine = MachineBusy()
    fd = os.open(progress / str(os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    acked = 0

    async def work() -> None:
        nonlocal acked
        while True:
            messages = [await inbox.get()]
            wait = linger_for(linger, rate.per_second, machine.fraction(), machine.sustained())  # as the router waits
            if wait > 0:
                await inbox.fill(batch - 1, wait)
            while len(messages) < batch and not inbox.empty():
                messages.append(inbox.get_nowait())
            rate.taken(len(messages))
            outgoing, _ = deliveries(messages, int(time.time() * 1000))
            await publisher.publish_all(outgoing)
            if len(messages) == 1:
                await messages[0].ack()
            else:
                await messages[-1].ack(multiple=True)
            acked += len(messages)
            os.pwrite(fd, f"{acked:>12d}".encode(), 0)

    task = asyncio.create_task(work())
    await queue.consume(inbox.put, no_ack=False)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    os.close(fd)
    await conn.close()


def worker_cmd(url: str, progress: Path, *, prefetch: int = PREFETCH, batch: int = BATCH,
               linger: float = LINGER) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--amqp", url, "--progress", str(progress),
            "--prefetch", str(prefetch), "--batch", str(batch), "--linger", str(linger)]


def acked(progress: Path) -> int:
    """Envelopes acked so far by every relay worker writing into ``progress``."""
    total = 0
    for f in progress.iterdir():
        with contextlib.suppress(OSError, ValueError):
            total += int(f.read_bytes() or b"0")
    return total


async def measure(url: str, n: int, workers: int) -> dict[str, object]:
    c = corpus(n)
    with tempfile.TemporaryDirectory(prefix="axis-bench-relay-") as tmp:
        return (await drain(url, c, n, worker_cmd(url, Path(tmp)), workers, progress=Path(tmp))).as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amqp", help="run as a relay worker on this AMQP URL")
    ap.add_argument("--progress", type=Path, help="the worker's progress directory")
    ap.add_argument("--prefetch", type=int, default=PREFETCH)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--linger", type=float, default=LINGER)
    ap.add_argument("--envelopes", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    if a.amqp:
        if a.progress is None:
            ap.error("--amqp needs --progress")
        asyncio.run(relay(a.amqp, a.progress, prefetch=a.prefetch, batch=a.batch, linger=a.linger))
        return
    with temp_vhost("axis-bench-relay") as url:
        print(asyncio.run(measure(url, a.envelopes, a.workers)))


if __name__ == "__main__":
    main()
