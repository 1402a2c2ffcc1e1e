"""An HTTP connection's writes of one event-loop turn, handed to the transport as one write.

uvicorn writes a response's status line and headers, then its body, as two transport writes: over TLS two records,
two ``send`` system calls, and a client that wakes twice to read them. :class:`CorkedTransport` keeps what is
written during one loop turn and hands it over at the end of the turn (``loop.call_soon``), so a response written in
one step of its task — every JSON answer of the API — leaves as one record and one system call. On the reference
machine a TLS request and its two-write answer cost 97–111 µs of CPU (client and server, uvloop), joined 67–78 µs
(bench/README.md, session 13).

Order is kept (one buffer, flushed in order); a write of :data:`LARGE` bytes or more (a streamed download's chunk)
goes out at once, after what was waiting, without being copied; ``close`` and ``write_eof`` flush first, ``abort``
drops what waits (as the transport's own buffer is dropped). Everything else is the transport's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

#: bytes from which a write is not held for the end of the turn
LARGE = 64 * 1024


class CorkedTransport(asyncio.Transport):
    """``transport``, whose writes within one loop turn reach it as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop or asyncio.get_running_loop()
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= LARGE:
            self.flush()
            self._transport.write(data)
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))  # a caller may reuse a bytearray once write returns

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Hand what was held to the transport now (a no-op when nothing is held or the transport is closing)."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()
