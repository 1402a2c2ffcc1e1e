"""The no-op relay: the ceiling the broker sets for the router on this machine.

It does everything the router does on the wire and nothing else: consume ``axis.submissions`` (manual acks,
the same prefetch), publish one persistent, mandatory copy per target server to ``axis.deliver`` on a confirmed
channel, wait for the confirms of the batch, then ack the batch. It does not parse, verify, validate or count:
the target servers come from the ``x-bench-targets`` header the pre-fill wrote. The router's drain rate divided
by this relay's rate (same run, same worker count) is the router's efficiency.

    python bench/relay.py --amqp URL            # a worker (the drain harness starts these)
    python bench/relay.py --envelopes 2000      # a stand-alone relay drain measurement
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika

from bench._common import H_TARGETS, corpus, temp_vhost
from bench._drain import Q_SUBMISSIONS, drain

EX_DELIVER = "axis.deliver"


async def relay(url: str, *, prefetch: int = 128, batch: int = 32, inflight: int = 4) -> None:
    """Relay until SIGTERM: batches of up to ``batch`` messages, up to ``inflight`` batches awaiting their
    confirms at once (the broker's confirm latency is hidden, as a well-built router would), then each acked."""
    conn = await aio_pika.connect(url)
    pub = await conn.channel(publisher_confirms=True)
    deliver = await pub.get_exchange(EX_DELIVER)
    sub = await conn.channel()
    await sub.set_qos(prefetch_count=prefetch)
    queue = await sub.get_queue(Q_SUBMISSIONS)
    inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(inbox.put, no_ack=False)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    slots = asyncio.Semaphore(inflight)

    async def handle(batch_msgs: list[aio_pika.abc.AbstractIncomingMessage]) -> None:
        try:
            publishes = []
            for m in batch_msgs:
                targets = (m.headers or {}).get(H_TARGETS, b"")
                targets = targets.decode() if isinstance(targets, bytes) else str(targets)
                for t in targets.split(","):
                    out = aio_pika.Message(m.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                           content_type="application/xml",
                                           headers={"x-axis-kind": "document", "x-axis-recipients": [t]})
                    publishes.append(deliver.publish(out, routing_key=t, mandatory=True))
            await asyncio.gather(*publishes)
            for m in batch_msgs:
                await m.ack()
        finally:
            slots.release()

    async def work() -> None:
        tasks: set[asyncio.Task[None]] = set()
        while True:
            batch_msgs = [await inbox.get()]
            while len(batch_msgs) < batch and not inbox.empty():
                batch_msgs.append(inbox.get_nowait())
            await slots.acquire()
            t = asyncio.create_task(handle(batch_msgs))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    task = asyncio.create_task(work())
    await stopping.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await conn.close()


def worker_cmd(url: str, *, prefetch: int = 128, batch: int = 32, inflight: int = 4) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--amqp", url, "--prefetch", str(prefetch),
            "--batch", str(batch), "--inflight", str(inflight)]


async def measure(url: str, n: int, workers: int, **kw: int) -> dict[str, object]:
    c = corpus(n)
    return (await drain(url, c, n, worker_cmd(url, **kw), workers)).as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amqp", help="run as a relay worker on this AMQP URL")
    ap.add_argument("--prefetch", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--inflight", type=int, default=4, help="batches awaiting confirms at once")
    ap.add_argument("--envelopes", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if a.amqp:
        asyncio.run(relay(a.amqp, prefetch=a.prefetch, batch=a.batch, inflight=a.inflight))
        return
    with temp_vhost("axis-bench-relay") as url:
        print(asyncio.run(measure(url, a.envelopes, a.workers, prefetch=a.prefetch, batch=a.batch,
                                  inflight=a.inflight)))


if __name__ == "__main__":
    main()
