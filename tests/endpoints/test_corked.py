"""An HTTP connection's writes of one loop turn leave as one transport write (endpoints.corked): in order, a large
write at once after what waited, close and write_eof flush first, abort drops what waits, a closing transport gets
nothing; the rest is the transport's. Pure logic with a recording transport (the endpoint servers' HTTP tests run it
on real sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from endpoints.corked import LARGE, CorkedTransport


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Any] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(bytes(data))

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append("eof")

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return f"info:{name}"


async def turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_turns_writes_leave_as_one_in_order() -> None:
    raw = Recording()
    corked = CorkedTransport(raw)
    corked.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
    corked.write(bytearray(b"{}"))
    assert raw.calls == [] and corked.get_write_buffer_size() == 7 + 27
    await turn()
    assert raw.calls == [b"HTTP/1.1 202 Accepted\r\n\r\n{}"]
    corked.writelines([b"a", b"b"])
    await turn()
    corked.write(b"c")
    await turn()
    assert raw.calls[1:] == [b"ab", b"c"]


async def test_a_large_write_goes_at_once_after_what_waited() -> None:
    raw = Recording()
    corked = CorkedTransport(raw)
    big = b"x" * LARGE
    corked.write(b"head")
    corked.write(big)
    corked.write(b"tail")
    assert raw.calls == [b"head", big]
    await turn()
    assert raw.calls == [b"head", big, b"tail"]


async def test_close_and_eof_flush_first_abort_drops() -> None:
    raw = Recording()
    corked = CorkedTransport(raw)
    corked.write(b"answer")
    corked.write_eof()
    corked.write(b"last")
    corked.close()
    corked.write(b"after close")  # the transport is closing: nothing more reaches it
    await turn()
    assert raw.calls == [b"answer", "eof", b"last", "close"]
    aborted = Recording()
    corked = CorkedTransport(aborted)
    corked.write(b"never")
    corked.abort()
    await turn()
    assert aborted.calls == ["abort"]


async def test_the_rest_is_the_transports() -> None:
    raw = Recording()
    corked = CorkedTransport(raw)
    corked.pause_reading()
    assert raw.calls == ["pause"]
    assert corked.get_extra_info("peername") == "info:peername"
    assert not corked.is_closing()
