"""Liveness that does not cost the axis (axis.admin.probe): the rules (pure), and a real broker and HTTP door."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from fastapi import FastAPI

from axis.admin.probe import Prober, ProbeState, doors_due
from axis.core.wire import server_queue
from tests.stats.stats_live import serve

SERVERS = [f"s{i:02d}" for i in range(70)]


def watched_state(consumers: int = 1, servers: list[str] = SERVERS) -> ProbeState:
    return ProbeState(consumers={server_queue(s): consumers for s in servers})


def test_doors_spread_over_the_door_interval() -> None:
    """70 servers the broker reports, polls every 5 s, doors every 60 s: 6 probes a poll, each door once a minute."""
    state = watched_state()
    probed: list[str] = []
    for tick in range(24):  # two minutes
        mono = tick * 5.0
        due = doors_due(state, SERVERS, mono, interval=5.0, door_interval=60.0)
        assert len(due) <= 6
        for sid in due:
            state.door(sid, None, 1000.0 + mono, mono)
        probed += due
    assert sorted(probed) == sorted(SERVERS * 2)  # every server exactly twice in two minutes
    # a server the broker does not report, and one whose door failed, are probed at every poll
    state.consumers.pop(server_queue("s00"))
    state.door("s01", "ConnectError", 2000.0, 200.0)
    due = doors_due(state, SERVERS, 201.0, interval=5.0, door_interval=60.0)
    assert due[:2] == ["s00", "s01"]
    # no broker view at all (no management API): every server at every poll, as before
    state.queues_error = "ConnectError: refused"
    assert doors_due(state, SERVERS, 202.0, interval=5.0, door_interval=60.0) == SERVERS


def test_liveness_rules_and_their_changes() -> None:
    state = watched_state(servers=["a", "b"])
    assert state.broker(["a", "b"], 100.0) == []  # first sighting: seen, nothing to announce
    assert state.last_seen == {"a": 100.0, "b": 100.0} and state.last_error == {}
    state.consumers[server_queue("b")] = 0
    changes = state.broker(["a", "b"], 105.0)
    assert [(c.server_id, c.up) for c in changes] == [("b", False)]
    assert state.last_seen == {"a": 105.0, "b": 100.0}
    assert state.last_error == {"b": "no consumer on axis.server.b"}
    assert state.broker(["a", "b"], 110.0) == []  # still down: said once
    # the door answering does not make a server without a consumer alive
    assert state.door("b", None, 111.0, 11.0) is None and state.last_seen["b"] == 100.0
    state.consumers[server_queue("b")] = 1
    back = state.broker(["a", "b"], 115.0)
    assert [(c.server_id, c.up) for c in back] == [("b", True)] and state.last_seen["b"] == 115.0
    # a failing door wins over the broker until the door answers again
    down = state.door("a", "HTTP 503", 116.0, 16.0)
    assert down is not None and not down.up and "HTTP 503" in down.text
    assert state.broker(["a", "b"], 120.0) == [] and state.last_seen["a"] == 115.0
    assert state.last_error["a"] == "HTTP 503"
    up = state.door("a", None, 121.0, 21.0)
    assert up is not None and up.up and state.last_seen["a"] == 121.0 and "a" not in state.last_error
    # a server never seen does not announce going down
    assert ProbeState().door("new", "ConnectError", 1.0, 1.0) is None


def test_broker_consumers_keep_servers_seen_with_few_door_probes(vhost_url: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Real RabbitMQ: s1 and s2 have delivery queues, s3 none. s1's consumer keeps it seen at every poll with one
    /healthz in the door interval; s2 without a consumer is down; s3 (no queue) is probed at every poll. Routine
    polls log nothing; s1 losing its consumer is logged once (WARNING), coming back once (INFO)."""
    from axis.broker.transport import connect, declare_topology, open_channel

    hits: dict[str, int] = {"s1": 0, "s2": 0, "s3": 0}
    health = FastAPI()

    @health.get("/{server}/healthz")
    def healthz(server: str) -> dict[str, bool]:
        hits[server] += 1
        return {"ok": True}

    async def scenario(base: str) -> None:
        connection = await connect(vhost_url)
        try:
            channel = await open_channel(connection)
            await declare_topology(channel, ["s1", "s2"])
            queue = await channel.get_queue(server_queue("s1"))

            async def ignore(message: Any) -> None:  # pragma: no cover - nothing is published
                await message.ack()

            tag = await queue.consume(ignore)
            prober = Prober({s: f"{base}/{s}" for s in hits}, amqp_url=vhost_url, interval=0.3, door_interval=60.0)
            polls = 0
            with caplog.at_level(logging.INFO):
                caplog.clear()
                while polls < 8 or prober.state.consumers.get(server_queue("s1"), 0) == 0:
                    await prober.poll_once()
                    polls += 1
                    await asyncio.sleep(0.3)
                    assert polls < 100, prober.state
                routine = [r for r in caplog.records if r.levelno >= logging.INFO]
                assert routine == [], [r.getMessage() for r in routine]
                st = prober.state
                assert st.queues_error is None
                assert time.time() - st.last_seen["s1"] < 2 and "s1" not in st.last_error
                assert hits["s1"] == 1  # one door probe in the door interval, however many polls
                assert st.last_error["s2"] == "no consumer on axis.server.s2" and "s2" not in st.last_seen
                assert hits["s2"] == 1
                assert hits["s3"] >= polls and time.time() - st.last_seen["s3"] < 2  # no queue: every poll

                await queue.cancel(tag)  # s1's host "dies"; the management API sees it within its stats interval

                async def poll_until(cond: Any) -> None:
                    deadline = time.monotonic() + 25
                    while not cond():
                        assert time.monotonic() < deadline, prober.state
                        await prober.poll_once()
                        await asyncio.sleep(0.3)

                await poll_until(lambda: "s1" in prober.state.last_error)
                await queue.consume(ignore)
                await poll_until(lambda: "s1" not in prober.state.last_error)
                lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
                assert lines == [(logging.WARNING, "endpoint server s1 is down: no consumer on axis.server.s1"),
                                 (logging.INFO, "endpoint server s1 is back (was: no consumer on axis.server.s1)")]
            await prober.stop()
        finally:
            await connection.close()

    with serve(health) as base:
        asyncio.run(scenario(base))


def test_the_admin_broker_user_sees_every_server_consuming(tmp_path: Any, vhost_url: str) -> None:
    """A real axis (router and endpoint servers with their delivery consumers, one least-privilege broker user per
    component): the admin's own broker user (monitoring tag, no read permission on the delivery queues) sees each
    server's consumer through the one management call (the broker's statistics catch up within ~10 s)."""
    from axis.broker.users import ADMIN_USER, component_url
    from tests.faults.harness import SERVERS, running_axis

    async def scenario() -> None:
        async with running_axis(tmp_path / "work", vhost_url) as env:
            assert env.config.broker.per_component
            admin_url = component_url(env.config, ADMIN_USER)
            assert "axis-admin" in admin_url
            ids = [sid for sid, _ in SERVERS]
            prober = Prober({}, amqp_url=admin_url, interval=0.5)
            http = await prober._client()

            async def poll_until(cond: Any) -> None:
                deadline = time.monotonic() + 30
                while True:
                    await prober._queues(http)
                    if prober.state.queues_error is None and cond():
                        return
                    assert time.monotonic() < deadline, prober.state
                    await asyncio.sleep(0.5)

            await poll_until(lambda: all(prober.state.consumers.get(server_queue(s), 0) > 0 for s in ids))
            assert prober.state.broker(ids, time.time()) == [] and set(prober.state.last_seen) == set(ids)
            assert all(prober.state.watched(s) for s in ids) and prober.state.last_error == {}
            await prober.stop()

    asyncio.run(scenario())
