"""The log writer against the real RabbitMQ (a vhost of its own) and a real SQLite log: what is published to
``axis.evidence`` becomes leaves in arrival order, once each; tree heads are signed and verify; bad messages go to
the dead letters without blocking the queue."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from axis.broker.setup import prepare_broker
from axis.broker.topology import attach_exchanges
from axis.broker.transport import Publisher, connect
from axis.broker.users import EVIDENCE_USER, component_url, publisher_user_id, server_user
from axis.config import Config, generate_workdir, load_config
from axis.core.evidence import Event, verify_sth
from axis.core.reasons import Refusal
from axis.core.wire import Q_DEAD, Q_EVIDENCE, evidence, read_events
from axis.evidence import writer as writer_mod
from axis.evidence.writer import LogWriter
from axis.log.store import LogStore

pytestmark = pytest.mark.rabbitmq

G22, H53 = "000.00.00.G22", "000.00.00.H53"
AGENCIES = [(G22, "Văn phòng Chính phủ", "d1"), (H53, "UBND tỉnh Tây Ninh", "d2")]
SERVERS = [("d1", "dedicated"), ("d2", "dedicated")]


def event(kind: str, doc: str, at: int, **extra: Any) -> Event:
    return Event(kind, at, G22, doc, 1, hashlib.sha256(doc.encode()).hexdigest(), **extra)


async def wait_for(check: Callable[[], Awaitable[Any] | Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def config(tmp_path: Path, vhost_url: str) -> Config:
    """A generated axis (its own CA and log key) on the test's vhost, its topology declared and its broker users
    provisioned as `axis up` does (the writer runs as axis-evidence, the publishers as endpoint servers)."""
    path, _ = generate_workdir(tmp_path / "work", AGENCIES, SERVERS, amqp_url=vhost_url, sth_interval_seconds=0.5)
    cfg = load_config(path)
    assert cfg.broker.per_component and cfg.evidence.key is not None and cfg.evidence.cert is not None
    await prepare_broker(cfg)
    return cfg


@pytest.fixture
async def store(config: Config) -> AsyncIterator[LogStore]:
    """A reader of the log the writer writes (its own handle on the same SQLite file)."""
    s = await LogStore.open(config.evidence.url)
    try:
        yield s
    finally:
        await s.close()


class Server:
    """Publishes events as endpoint server d1 does (its own broker user, confirmed)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    async def __aenter__(self) -> Server:
        user = server_user("d1")
        self.conn = await connect(component_url(self.config, user))
        _, exchanges = await attach_exchanges(self.conn)
        self.publisher = Publisher(exchanges, user_id=publisher_user_id(self.config, user))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()

    async def send(self, *messages: Sequence[Event]) -> None:
        for events in messages:  # one after the other: the queue's order is the publish order
            await self.publisher.publish(evidence(events))


async def leaves(store: LogStore) -> list[bytes]:
    return [await store.leaf(i) for i in range(await store.size())]


async def queue_depth(config: Config) -> int:
    conn = await aio_pika.connect(config.amqp_url)
    try:
        q = await (await conn.channel()).declare_queue(Q_EVIDENCE, passive=True)
        return q.declaration_result.message_count or 0
    finally:
        await conn.close()


def test_wire_round_trip() -> None:
    events = [event("submitted", "d-1", 1), event("stored", "d-1", 2, agency=H53, ref="m-1")]
    out = evidence(events)
    assert out.exchange == "axis.evidence" and out.routing_key == ""
    assert read_events(out.body) == events
    for bad in (b"", b"not json", b"{}", b"[1]", b'[{"type": "routed"}]', b'[{"nope": 1}]'):
        with pytest.raises(ValueError):
            read_events(bad)


async def test_events_become_leaves_in_arrival_order(config: Config, store: LogStore) -> None:
    first = [event("submitted", "d-1", 10), event("routed", "d-1", 11)]
    second = [event("stored", "d-1", 12, agency=H53, server="d2")]
    third = [event("submitted", "d-2", 13), event("refused", "d-2", 14, reason="SIGNATURE_INVALID", ref="x"),
             event("status", "d-1", 15, agency=H53, code="01")]
    async with Server(config) as server:
        await server.send(first, second, third)
    writer = LogWriter(config)
    await writer.start()
    try:
        expected = [e.leaf() for e in (*first, *second, *third)]
        await wait_for(lambda: store.size(), 20, "the first leaf")
        await wait_for(lambda: _equals(leaves(store), expected), 20, "six leaves in order")
        # later events follow, in their order
        later = [event("acked", "d-1", 16, agency=H53)]
        async with Server(config) as server:
            await server.send(later)
        await wait_for(lambda: _equals(leaves(store), [*expected, later[0].leaf()]), 20, "the seventh leaf")
        await wait_for(lambda: writer.committed == 7, 20, "seven events committed")
    finally:
        await writer.stop()
    assert await queue_depth(config) == 0  # every message was acked (an unacked one is back in the queue now)


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def test_an_event_published_twice_is_one_leaf(config: Config, store: LogStore) -> None:
    a, b = event("submitted", "d-1", 10), event("routed", "d-1", 11)
    again = dataclasses.replace(a, at=99)  # a redelivery by its publisher, later: same key
    async with Server(config) as server:
        await server.send([a, b], [a], [again, b, b])
    writer = LogWriter(config)
    await writer.start()
    try:
        await wait_for(lambda: writer.committed == 6, 20, "six events committed")
        assert await leaves(store) == [a.leaf(), b.leaf()]
    finally:
        await writer.stop()
    assert await queue_depth(config) == 0


async def test_a_message_redelivered_after_a_crash_before_the_ack_is_one_leaf(
        config: Config, store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [event("submitted", f"d-{i}", i) for i in range(5)]
    committed = asyncio.Event()

    async def crash(message: Any, *, multiple: bool) -> None:  # committed, then the writer dies before acking
        committed.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(writer_mod, "_ack", crash)
    async with Server(config) as server:
        await server.send(events)  # one message: one batch, deterministically
    first = LogWriter(config)
    await first.start()
    try:
        await asyncio.wait_for(committed.wait(), 20)
        await wait_for(lambda: _equals(store.size(), 5), 20, "the batch committed")
    finally:
        await first.stop()  # its connection closes: the broker requeues what it never saw acked
    assert await queue_depth(config) == 1  # the message is back

    monkeypatch.undo()
    second = LogWriter(config)
    await second.start()
    try:
        await wait_for(lambda: second.committed == 5, 20, "the redelivered events committed again")
        assert await leaves(store) == [e.leaf() for e in events]  # … and stayed one leaf each
    finally:
        await second.stop()
    assert await queue_depth(config) == 0  # acked this time


async def test_tree_heads_are_signed_within_the_interval_and_verify(config: Config, store: LogStore) -> None:
    assert config.pki.ca is not None and config.pki.crl is not None
    ca, crl = config.pki.ca.read_bytes(), config.pki.crl.read_bytes()
    writer = LogWriter(config)
    await writer.start()
    try:
        assert await store.latest_sth() is None  # nothing to sign for an empty log
        async with Server(config) as server:
            await server.send([event("submitted", "d-1", 1), event("routed", "d-1", 2)])
            await wait_for(lambda: _equals(store.size(), 2), 20, "two leaves")
            loop = asyncio.get_running_loop()
            appended = loop.time()
            sth = await wait_for(lambda: _sth_of(store, 2), 5, "a tree head of two leaves")
            assert loop.time() - appended <= config.evidence.sth_interval_seconds + 0.5
            verify_sth(sth, [ca], crl)
            assert sth.root == await store.root(2)
            # the log grows: a new head, consistent with the log
            await server.send([event("stored", "d-1", 3, agency=H53)])
            sth3 = await wait_for(lambda: _sth_of(store, 3), 5, "a tree head of three leaves")
            verify_sth(sth3, [ca], crl)
            assert sth3.root == await store.root(3) and sth3.timestamp >= sth.timestamp
            # a tampered head does not verify
            with pytest.raises(Refusal):
                verify_sth(dataclasses.replace(sth3, tree_size=2), [ca], crl)
        assert await store.verify([ca], crl) == []
    finally:
        await writer.stop()


async def _sth_of(store: LogStore, size: int) -> Any:
    sth = await store.latest_sth()
    return sth if sth is not None and sth.tree_size == size else None


async def test_a_tree_head_is_signed_at_start_for_leaves_past_the_latest(config: Config, store: LogStore) -> None:
    """Leaves committed by a writer that stopped before signing them get their tree head as the next one starts,
    whatever the interval."""
    await store.append([event("submitted", "d-1", 1), event("routed", "d-1", 2), event("submitted", "d-2", 3)])
    slow = dataclasses.replace(config, evidence=dataclasses.replace(config.evidence, sth_interval_seconds=3600))
    writer = LogWriter(slow)
    await writer.start()
    try:
        sth = await store.latest_sth()
        assert sth is not None and sth.tree_size == 3
        assert config.pki.ca is not None
        verify_sth(sth, [config.pki.ca.read_bytes()])
    finally:
        await writer.stop()


async def test_a_bad_message_goes_to_the_dead_letters_and_blocks_nothing(config: Config, store: LogStore) -> None:
    good = [event("submitted", "d-1", 1)]
    later = [event("routed", "d-1", 2)]
    bad = [b"not json", b'{"type": "submitted"}', b'[{"type": "bogus", "at": 1}]',
           b'[{"type": "submitted", "at": 1.5, "sender": "x", "document_id": "d", "doc_type": 1, "sha256": ""}]',
           evidence([event("submitted", "d-big", 1, reason="x" * 20_000)]).body]
    async with Server(config) as server:
        await server.send(good)
        for i, body in enumerate(bad):
            await server.publisher.publish(dataclasses.replace(evidence([]), body=body, message_id=f"bad-{i}"))
        await server.send(later)
    writer = LogWriter(config)
    await writer.start()
    try:
        await wait_for(lambda: _equals(leaves(store), [good[0].leaf(), later[0].leaf()]), 20, "the good events")
        await wait_for(lambda: writer.rejected == len(bad), 20, "the bad messages rejected")
    finally:
        await writer.stop()
    assert await queue_depth(config) == 0
    conn = await aio_pika.connect(config.amqp_url)
    try:
        dead = await (await conn.channel()).declare_queue(Q_DEAD, passive=True)
        got = []
        while (m := await dead.get(no_ack=True, fail=False, timeout=5)) is not None:
            got.append(m)
        assert sorted(m.message_id or "" for m in got) == [f"bad-{i}" for i in range(len(bad))]
        for m in got:
            death = (m.headers or {}).get("x-death")
            assert isinstance(death, list) and isinstance(death[0], dict), death
            assert death[0]["reason"] == "rejected" and death[0]["queue"] == Q_EVIDENCE, death
    finally:
        await conn.close()


async def test_the_writer_runs_as_its_own_broker_user(config: Config, rabbit_mgmt: tuple[str, tuple[str, str], str]
                                                      ) -> None:
    import httpx

    writer = LogWriter(config)
    await writer.start()
    try:
        base, auth, _ = rabbit_mgmt
        vhost = config.amqp_url.rsplit("/", 1)[1]

        async def consumers() -> set[str]:
            async with httpx.AsyncClient(base_url=base, auth=auth, timeout=10) as http:
                r = await http.get(f"/api/queues/{vhost}/{Q_EVIDENCE}")
                details = r.json().get("consumer_details") or []
                # The management API gives channel_details as [] until it has
                # collected the channel's statistics: wait until every
                # consumer's user is known.
                channels = [c.get("channel_details") for c in details]
                users = {ch.get("user", "") if isinstance(ch, dict) else "" for ch in channels}
                return users if users and "" not in users else set()

        await wait_for(consumers, 20, "the writer's consumer")
        assert await consumers() == {config.broker.user_prefix + EVIDENCE_USER}
    finally:
        await writer.stop()
