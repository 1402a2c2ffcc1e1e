"""Batched AMQP socket writes: what is written in one event-loop turn reaches the transport as one write, in
order; write_eof and close flush first; a real connection uses it and still publishes and confirms."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from axis.broker.amqpio import CorkedTCP, CorkedWriter


class FakeWriter:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def write(self, data: bytes) -> None:
        self.calls.append(data)

    def write_eof(self) -> None:
        self.calls.append("eof")

    def close(self) -> None:
        self.calls.append("close")

    def is_closing(self) -> bool:
        return "close" in self.calls

    async def drain(self) -> None:
        self.calls.append("drain")

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_one_write_per_loop_turn_in_order() -> None:
    raw = FakeWriter()
    w = CorkedWriter(raw)  # type: ignore[arg-type]
    for part in (b"a", b"b", b"c"):
        w.write(part)
    await w.drain()  # flow control only: does not force a write of its own
    assert raw.calls == ["drain"]
    await asyncio.sleep(0)
    assert raw.calls == ["drain", b"abc"]
    w.write(b"d")
    await asyncio.sleep(0)
    assert raw.calls[-1] == b"d"
    assert w.get_extra_info("peername") == "info:peername"  # everything else is the stream writer's


async def test_eof_and_close_flush_first() -> None:
    raw = FakeWriter()
    w = CorkedWriter(raw)  # type: ignore[arg-type]
    w.write(b"close-frame")
    w.write_eof()
    w.write(b"late")
    w.close()
    assert raw.calls == [b"close-frame", "eof", b"late", "close"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to write
    assert raw.calls[-1] == "close"


@pytest.mark.rabbitmq
async def test_a_real_connection_is_corked_and_confirms(amqp_url: str) -> None:
    from axis.broker.transport import connect

    conn = await connect(amqp_url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        q = await ch.declare_queue("", exclusive=True)
        underlay = await ch.get_underlay_channel()
        results = await asyncio.gather(*(
            underlay.basic_publish(f"m{i}".encode(), routing_key=q.name, wait=False) for i in range(50)))
        assert len(results) == 50
        got = []
        async with q.iterator() as it:
            async for m in it:
                got.append(m.body)
                await m.ack()
                if len(got) == 50:
                    break
        assert got == [f"m{i}".encode() for i in range(50)]  # all confirmed, all there, in order
        assert isinstance(conn.transport.connection._transport_factory, CorkedTCP)  # type: ignore[union-attr]
    finally:
        await conn.close()
