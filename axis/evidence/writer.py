"""The log writer (``axis log-writer``): consume ``axis.evidence``, append the events to the log, sign tree heads.

Exactly one writer runs per axis (``axis up`` starts it): the log is append-only and its order is the order in
which the writer commits. Every component that sees a document's life publishes its events to the fanout
exchange ``axis.evidence`` (:func:`axis.core.wire.evidence`: an orjson list of events); they wait in the quorum
queue ``axis.evidence`` until the writer takes them.

- **Batches.** Messages are taken with a prefetch of ``prefetch`` (2,000) and manual acks. A batch is what
  arrived within ``linger`` (50 ms) of its first message, up to ``batch`` (2,000) events. Its events are appended
  in ONE transaction (:meth:`axis.log.store.LogStore.append`), in arrival order, and only after the commit are
  its messages acked (one ack, ``multiple``). A crash between the commit and the ack redelivers them: the store
  is idempotent by :meth:`axis.core.evidence.Event.key`, so a redelivered event — like the same event published
  twice — stays one leaf.
- **Bad messages.** A message that is not a JSON list of valid events (or whose leaf would exceed
  :data:`axis.core.evidence.MAX_LEAF_BYTES`) is rejected without requeue: the queue's dead-letter exchange
  (``axis.dlx``) puts it in ``axis.dead`` with RabbitMQ's ``x-death`` header. It is never dropped silently and
  never blocks the queue.
- **Store failures.** When a batch cannot be appended, the writer asks the store its size: when that fails too,
  the store is down — the batch stays unacked (nothing else is taken meanwhile) and is tried again with a growing
  pause, so an outage of the database never burns the messages' delivery limit. When the store answers, the
  batch itself is at fault: its messages are appended one by one, and one that still fails alone goes back to the
  queue (``nack``, requeue) — after ``x-delivery-limit`` tries RabbitMQ dead-letters it.
- **Signed tree heads.** At start, when the log holds leaves past the latest STH, one is signed at once; then,
  every ``evidence.sth_interval_seconds`` (10 s), a new STH is signed when the log has grown since the last one
  (:func:`axis.core.evidence.sign_sth` with the log key of ``evidence.key``/``evidence.cert``) and saved
  (:meth:`LogStore.save_sth`).

The writer connects as its own broker user ``axis-evidence`` (read ``axis.evidence``, nothing else) unless
``broker.auth`` is ``shared``. It announces that it is consuming as the other children do (the reload
acknowledgement of :mod:`axis.config.reload`, which ``axis up`` waits for); SIGHUP reloads the tree-head
interval and the log key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from axis.broker.topology import attach_exchanges, attach_queue
from axis.broker.transport import Connection, IncomingMessage, connect
from axis.broker.users import EVIDENCE_USER, component_url
from axis.config import Config, ConfigError
from axis.core.evidence import MAX_LEAF_BYTES, Event, SignedTreeHead, sign_sth
from axis.core.pki import PrivateKey, load_key
from axis.core.wire import Q_EVIDENCE, now_ms, read_events
from axis.log.store import LogStore

log = logging.getLogger("axis.evidence")

PREFETCH = 2000
BATCH_EVENTS = 2000
LINGER_SECONDS = 0.05
#: pauses between attempts while the store is down
RETRY_FIRST, RETRY_MAX = 0.2, 5.0


@dataclass(frozen=True, slots=True)
class LogKey:
    """The log's signing key and certificate (PEM)."""

    key: PrivateKey
    cert_pem: str

    @classmethod
    def from_config(cls, config: Config) -> LogKey:
        ev = config.evidence
        if ev.key is None or ev.cert is None:
            raise ConfigError("evidence.key and evidence.cert are needed to sign tree heads (the log's key and "
                              "certificate, issued by the axis CA: axis.core.pki.issue_log_certificate)")
        try:
            return cls(load_key(ev.key.read_bytes()), ev.cert.read_text("ascii"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"evidence.key/evidence.cert ({ev.key}, {ev.cert}) cannot be read: {exc}") from None


def decode(body: bytes) -> list[Event]:
    """The events of one message; ValueError when it is not a list of valid events of bounded leaves."""
    events = read_events(body)
    for e in events:
        if len(e.leaf()) > MAX_LEAF_BYTES:
            raise ValueError(f"an event's leaf is over {MAX_LEAF_BYTES} bytes")
    return events


class LogWriter:
    """The ``axis.evidence`` consumer (module docstring). ``store``: an open :class:`LogStore` (the writer opens
    ``config.evidence.url`` and closes it itself otherwise); ``clock``: ms since the epoch, for tree heads."""

    def __init__(self, config: Config, *, store: LogStore | None = None, prefetch: int = PREFETCH,
                 batch: int = BATCH_EVENTS, linger: float = LINGER_SECONDS,
                 clock: Callable[[], int] = now_ms) -> None:
        self.config = config
        self.store = store
        self._own_store = store is None
        self.prefetch = prefetch
        self.batch = batch
        self.linger = linger
        self.clock = clock
        self.key = LogKey.from_config(config)
        self.sth_interval = config.evidence.sth_interval_seconds
        self._inbox: asyncio.Queue[IncomingMessage] = asyncio.Queue()
        self._conn: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()  # a commit and a tree head's (size, root) never interleave
        self._signed: SignedTreeHead | None = None
        self.committed = 0  # events committed by this writer (a redelivered one counts again, stays one leaf)
        self.rejected = 0  # messages dead-lettered as undecodable

    # -- life cycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.store is None:
            self.store = await LogStore.open(self.config.evidence.url)
        self._signed = await self.store.latest_sth()
        await self.sign_if_grown()  # leaves past the latest tree head (the writer stopped before signing them)
        self._conn = await connect(component_url(self.config, EVIDENCE_USER))
        if not self.config.broker.per_component:  # development: declare what we use (axis.broker.topology)
            await attach_exchanges(self._conn, declare=[s.id for s in self.config.servers])
        _, queue = await attach_queue(self._conn, Q_EVIDENCE, prefetch=self.prefetch)
        self._tasks = [asyncio.create_task(self._work(), name="axis-log-writer"),
                       asyncio.create_task(self._sign_loop(), name="axis-log-sth")]
        await queue.consume(self._inbox.put, no_ack=False)
        log.info("log writer consuming %s (log of %d leaves)", Q_EVIDENCE, await self.store.size())

    async def stop(self) -> None:
        """Stop taking messages (what is unacked goes back to the queue), sign what was committed, close."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.sign_if_grown()
            if self._own_store:
                await self.store.close()
                self.store = None

    async def run_forever(self) -> None:
        from axis.config.reload import install_sighup

        try:
            await self.start()
            install_sighup(self.config, self.reload, "log-writer")  # also tells `axis up` the writer is ready
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def reload(self, config: Config) -> None:
        """SIGHUP: the new tree-head interval and log key apply from the next tree head on."""
        key = await asyncio.to_thread(LogKey.from_config, config)
        self.config, self.key, self.sth_interval = config, key, config.evidence.sth_interval_seconds

    # -- signed tree heads -------------------------------------------------------------------------------------
    async def sign_if_grown(self) -> SignedTreeHead | None:
        """Sign and save a tree head of the whole log when it has leaves past the last one; returns it (or None)."""
        assert self.store is not None
        async with self._lock:
            size = await self.store.size()
            if size == 0 or (self._signed is not None and size <= self._signed.tree_size):
                return None
            root = await self.store.root(size)
            # never older than the previous head: a clock stepped back must not make the log look rewound
            timestamp = max(self.clock(), self._signed.timestamp if self._signed else 0)
            sth = sign_sth(size, timestamp, root, self.key.key, self.key.cert_pem)
            await self.store.save_sth(sth)
            self._signed = sth
        log.info("signed tree head: %d leaves, root %s", size, sth.root_hash[:16])
        return sth

    async def _sign_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sth_interval)
            try:
                await self.sign_if_grown()
            except Exception:  # the store is down: the next tick tries again
                log.exception("log writer: signing a tree head failed")

    # -- the work loop -----------------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            batch = await self._take()
            if batch:
                await self._commit(batch)

    async def _take(self) -> list[tuple[IncomingMessage, list[Event]]]:
        """Messages that arrived within ``linger`` of the first, up to ``batch`` events; the undecodable ones are
        dead-lettered on the way."""
        loop = asyncio.get_running_loop()
        taken: list[tuple[IncomingMessage, list[Event]]] = []
        count = 0
        message = await self._inbox.get()
        deadline = loop.time() + self.linger
        while True:
            events = await self._decode(message)
            if events is not None:
                taken.append((message, events))
                count += len(events)
            if count >= self.batch:
                return taken
            if self._inbox.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return taken
                try:
                    message = await asyncio.wait_for(self._inbox.get(), remaining)
                except TimeoutError:
                    return taken
            else:
                message = self._inbox.get_nowait()

    async def _decode(self, message: IncomingMessage) -> list[Event] | None:
        try:
            return decode(message.body)
        except ValueError as exc:
            log.warning("log writer: message %s is not a list of events (%s); dead-lettered", message.message_id,
                        str(exc)[:200])
            self.rejected += 1
            with contextlib.suppress(Exception):  # the channel closed: it comes back and is rejected again
                await message.reject(requeue=False)
            return None

    async def _append(self, events: Sequence[Event]) -> None:
        assert self.store is not None
        async with self._lock:
            await self.store.append(events)
        self.committed += len(events)

    async def _commit(self, batch: list[tuple[IncomingMessage, list[Event]]]) -> None:
        """Append the batch in one transaction, then ack it; see the module docstring for failures."""
        delay = RETRY_FIRST
        while True:
            try:
                await self._append([e for _, events in batch for e in events])
            except Exception:
                log.exception("log writer: appending a batch of %d messages failed", len(batch))
                if await self._store_answers():
                    break  # the batch is at fault, not the store: one by one
                await asyncio.sleep(delay)  # the store is down: keep the batch, try again
                delay = min(delay * 2, RETRY_MAX)
                continue
            await _ack(batch[-1][0], multiple=len(batch) > 1)
            return
        for message, events in batch:
            try:
                await self._append(events)
            except Exception:
                log.exception("log writer: message %s cannot be appended; back to the queue (delivery limit)",
                              message.message_id)
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                continue
            await _ack(message, multiple=False)

    async def _store_answers(self) -> bool:
        assert self.store is not None
        try:
            await self.store.size()
        except Exception:
            return False
        return True


async def _ack(message: IncomingMessage, *, multiple: bool) -> None:
    # Batches are taken in delivery order and committed one after the other: every unsettled delivery up to the
    # batch's last message belongs to the batch (the rejected ones are settled already).
    try:
        await message.ack(multiple=multiple)
    except Exception:  # the channel closed under us: the broker redelivers; the store keeps them one leaf each
        log.warning("log writer: an ack failed; the messages will be redelivered (and stay one leaf each)")


async def run_log_writer(config: Config) -> None:
    writer = LogWriter(config)
    await writer.run_forever()
