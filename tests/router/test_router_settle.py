"""The router's settler: the forwarded statuses, evidence, counts and acks of several decided batches together, in
order — published, logged and counted before the ack, one ack covering them — and, when that fails, each batch on
its own."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from axis.core import bundle
from axis.core.evidence import Event
from axis.core.wire import EX_DELIVER, EX_EVIDENCE, H_KIND, KIND_STATUS, KIND_STATUS_BUNDLE, Outgoing
from axis.router.core import Outcome
from axis.router.settle import Settler


class FakeMessage:
    def __init__(self, tag: int, log: list[Any]) -> None:
        self.delivery_tag = tag
        self.log = log

    async def ack(self, multiple: bool = False) -> None:
        self.log.append(("ack", self.delivery_tag, multiple))

    async def nack(self, requeue: bool = True) -> None:
        self.log.append(("nack", self.delivery_tag, requeue))


class FakePublisher:
    def __init__(self, log: list[Any], fail: int = 0) -> None:
        self.log = log
        self.fail = fail  # how many publishes fail before they work

    async def publish_all(self, outgoing: list[Any]) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("broker gone")
        for o in outgoing:
            if o.exchange == EX_EVIDENCE:
                self.log.append(("evidence", [e["document_id"] for e in orjson.loads(o.body)]))
            else:
                items = bundle.unpack(o.body) if o.headers[H_KIND] == KIND_STATUS_BUNDLE else [o]
                self.log.append(("statuses", o.routing_key, [i.body for i in items]))


class FakeCounter:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def record(self, *, accepted: Any, delivered: Any, refused: Any) -> None:
        self.log.append(("count", len(accepted)))


def decided(tag: int, log: list[Any], outgoing: list[Outgoing] | None = None) -> tuple[Any, Outcome]:
    event = Event(type="submitted", at=1_700_000_000_000, sender="000.00.00.G22", document_id=f"doc-{tag}",
                  doc_type=0, sha256="")
    return FakeMessage(tag, log), Outcome(outgoing=outgoing or [], accepted=[object()],  # type: ignore[list-item]
                                          events=[event])


def status_to(server: str, body: bytes) -> Outgoing:
    return Outgoing(EX_DELIVER, server, body, {H_KIND: KIND_STATUS})


def settler(log: list[Any], **kw: Any) -> tuple[Settler, list[int]]:
    settled: list[int] = []
    s = Settler(FakePublisher(log, kw.pop("fail", 0)), FakeCounter(log),  # type: ignore[arg-type]
                on_settled=lambda d: settled.extend(m.delivery_tag for m, _ in d), **kw)
    return s, settled


async def test_batches_within_the_linger_share_one_settlement() -> None:
    log: list[Any] = []
    s, settled = settler(log, max_messages=100, linger=0.05)
    await s.add([decided(1, log), decided(2, log)])
    await s.add([decided(3, log)])
    assert log == [] and s.waiting == 3  # nothing before the linger
    await asyncio.sleep(0.1)
    assert log == [("evidence", ["doc-1", "doc-2", "doc-3"]), ("count", 3), ("ack", 3, True)]
    assert settled == [1, 2, 3] and s.waiting == 0


async def test_a_full_settler_settles_at_once_and_close_settles_the_rest() -> None:
    log: list[Any] = []
    s, settled = settler(log, max_messages=2, linger=10.0)
    await s.add([decided(1, log), decided(2, log)])  # half the prefetch: no waiting
    assert log == [("evidence", ["doc-1", "doc-2"]), ("count", 2), ("ack", 2, True)]
    await s.add([decided(3, log)])
    assert len(log) == 3
    await s.close()  # the router stops: what waits is settled, a single message acked alone
    assert log[3:] == [("evidence", ["doc-3"]), ("count", 1), ("ack", 3, False)]
    assert settled == [1, 2, 3]


async def test_a_failed_settlement_is_retried_batch_by_batch() -> None:
    """The evidence publish fails once: the batches are settled one at a time, each acking its own."""
    log: list[Any] = []
    s, settled = settler(log, max_messages=100, linger=0.0, fail=1)
    await s.add([decided(1, log), decided(2, log)])
    assert log == [("evidence", ["doc-1", "doc-2"]), ("count", 2), ("ack", 2, True)]
    log.clear()
    # two waiting batches, the first settlement fails: each batch alone, in order
    s.linger = 0.05
    s.publisher.fail = 2  # type: ignore[attr-defined]
    await s.add([decided(3, log)])
    await s.add([decided(4, log), decided(5, log)])
    await asyncio.sleep(0.1)
    # the together attempt and the first batch alone fail (requeued), the second batch alone works
    assert log == [("nack", 3, True), ("evidence", ["doc-4", "doc-5"]), ("count", 2), ("ack", 5, True)]
    assert settled == [1, 2, 4, 5]


async def test_the_statuses_of_the_batches_travel_in_one_bundle_per_server_before_the_ack() -> None:
    """Statuses are forwarded at settlement: those of every waiting batch bound for one server share a message."""
    log: list[Any] = []
    s, _ = settler(log, max_messages=100, linger=0.05)
    await s.add([decided(1, log, [status_to("d1", b"<a/>"), status_to("d2", b"<b/>")])])
    await s.add([decided(2, log, [status_to("d1", b"<c/>")])])
    assert log == []  # not before the linger
    await asyncio.sleep(0.1)
    assert log == [("statuses", "d1", [b"<a/>", b"<c/>"]), ("statuses", "d2", [b"<b/>"]),
                   ("evidence", ["doc-1", "doc-2"]), ("count", 2), ("ack", 2, True)]
