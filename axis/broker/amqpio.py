"""Batched socket writes for aio-pika connections: every frame written in one event-loop turn, one ``send``.

aiormq writes each outgoing frame group (a publish, an ack) to the socket as soon as its writer task takes it,
and uvloop sends at once when nothing is buffered: one ``send`` system call per message. On loopback each call
also runs the receiving side's TCP work, and the broker then reads one small segment at a time; it was 10-15 %
of a router's and an endpoint host's CPU. :class:`CorkedWriter` gathers what is written during one loop turn and
hands it to the transport in one call at the end of the turn (``loop.call_soon``), so a router publishing a
batch of deliveries, or a host acking several, costs one system call. Ordering is kept (one buffer, flushed in
order, at the end of the turn it was written in); ``write_eof`` and ``close`` flush first, so nothing written
is lost.

:class:`AxisConnection` is aio-pika's robust connection on that transport; :mod:`axis.broker.transport` connects
with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aio_pika.robust_connection import RobustConnection
from aiormq.connection import TCPTransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL


class CorkedWriter:
    """A ``StreamWriter`` whose writes within one loop turn reach the transport as one write."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._buffer: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(data)

    def flush(self) -> None:
        if not self._buffer:
            return
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        # flow control only (the transport's buffer under its high-water mark): what is held here leaves at the
        # end of this turn anyway; flushing now would cost an ack or a publish its own system call again
        await self._writer.drain()

    def write_eof(self) -> None:
        self.flush()
        self._writer.write_eof()

    def close(self) -> None:
        self.flush()
        self._writer.close()

    def __getattr__(self, name: str) -> Any:  # wait_closed, is_closing, transport, get_extra_info, ...
        return getattr(self._writer, name)


class CorkedTCP(TCPTransportFactory):
    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await super().create(url, **kwargs)
        if not isinstance(reader, asyncio.StreamReader):  # pragma: no cover - aiormq's contract
            raise AMQPConnectionError("unexpected stream type")
        # aiormq's factory contract names the concrete StreamWriter; CorkedWriter is one by duck typing (it
        # delegates the rest through __getattr__), not by class: there is no wider type to return
        return reader, CorkedWriter(writer)  # type: ignore[return-value]


class AxisConnection(RobustConnection):
    """aio-pika's robust connection whose plain-TCP connections use :class:`CorkedTCP` (aio-pika passes only
    its declared, URL-encodable parameters on to aiormq, so the factory is set here)."""

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(url, loop, **kwargs)
        if self.url.scheme == "amqp":
            self.kwargs["transport_factory"] = CorkedTCP()
