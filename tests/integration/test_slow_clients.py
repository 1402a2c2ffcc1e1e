"""Slow and idle clients against a real endpoint server (uvicorn on httptools, as endpoints/host.py runs it),
over raw sockets: an idle connection, trickled headers and a trickled body are closed within their limits, a
body sent at the minimum rate still gets through, normal keep-alive requests work, and a host's connection
limit refuses the extra connections — over plain HTTP (``tls: off``) and over TLS (the default), where a client that
never finishes its handshake is dropped within the header timeout too. Small limits (fractions of a second) keep
the test fast; no broker."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from axis.config import generate_workdir, load_config
from axis.core.tlsconfig import client_context
from axis.stats.counting import MemoryCounter
from endpoints.app import create_app
from endpoints.gate import GatedApp
from endpoints.host import ConnectionGuard, server_contexts, uvicorn_server
from endpoints.inbox import open_inbox
from endpoints.refusals import RefusalRecorder
from endpoints.server import EndpointServer

G01 = "000.00.00.G01"
HEADER_TIMEOUT = 0.6
BODY_TIMEOUT = 0.6
BODY_MIN_RATE = 2000
KEEP_ALIVE = 0.5
MAX_CONNECTIONS = 4
#: "closed within the limit": the limit plus scheduling slack, far below what a stuck connection would show
SLACK = 1.5


@dataclass
class Endpoint:
    port: int
    token: str
    guard: ConnectionGuard
    ssl: ssl.SSLContext | None = None  # the client's, when the server speaks TLS


@pytest.fixture(params=["plain", "tls"])
async def endpoint(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Endpoint]:
    tls = request.param == "tls"
    path, conn = generate_workdir(tmp_path, [(G01, "A", "sh")], [("sh", "shared")], tls=tls, client_certs=False)
    config = load_config(path)
    store = await open_inbox(f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}")
    srv = EndpointServer(config, "sh", store=store)
    srv.refusals = RefusalRecorder(MemoryCounter())  # no broker, no statistics store: refusals counted in memory
    guard = ConnectionGuard(header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT, body_min_rate=BODY_MIN_RATE,
                            keep_alive=KEEP_ALIVE, max_connections=MAX_CONNECTIONS)
    server = uvicorn_server(GatedApp(create_app(srv), srv.gate), "127.0.0.1", 0, guard,
                            ssl_context=server_contexts(config, ["sh"])["sh"])
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Endpoint(port, conn["agencies"][0]["token"], guard, client_context(config.pki.ca) if tls else None)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await store.close()


async def connect(ep: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", ep.port, ssl=ep.ssl)


async def until_closed(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took; fails if the
    connection is still open after ``within`` seconds."""
    started = time.monotonic()
    data = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        raise AssertionError(f"connection still open after {within} s (got {data[:200]!r})") from None
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


async def response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length")
    return int(lines[0].split()[1]), await asyncio.wait_for(reader.readexactly(length), 5)


def close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_an_idle_connection_is_closed(endpoint: Endpoint) -> None:
    reader, writer = await connect(endpoint)
    data, took = await until_closed(reader, HEADER_TIMEOUT + SLACK)
    assert data == b"" and took >= HEADER_TIMEOUT - 0.1  # nothing was asked: closed without an answer
    close(writer)


async def test_a_connection_that_never_finishes_its_handshake_is_closed(endpoint: Endpoint) -> None:
    """Over TLS the guard's timers start once the handshake is over: the handshake itself gets the header
    timeout (not asyncio's 60 s). A client that sends half a ClientHello and waits is dropped."""
    if endpoint.ssl is None:
        pytest.skip("plain HTTP has no handshake")
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)  # TCP only
    writer.write(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, never finished
    _, took = await until_closed(reader, HEADER_TIMEOUT + SLACK)
    assert took >= HEADER_TIMEOUT - 0.1
    close(writer)


async def test_trickled_headers_are_cut_off(endpoint: Endpoint) -> None:
    reader, writer = await connect(endpoint)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"

    async def trickle() -> None:
        for i in range(len(request)):  # one byte per 0.15 s: the headers would take 20 s
            writer.write(request[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0.15)

    sender = asyncio.create_task(trickle())
    try:
        data, _took = await until_closed(reader, HEADER_TIMEOUT + SLACK)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert data.startswith(b"HTTP/1.1 408 ") and b"connection: close" in data.lower(), data
    close(writer)


async def test_a_trickled_body_is_cut_off_with_408(endpoint: Endpoint) -> None:
    reader, writer = await connect(endpoint)
    writer.write(b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
                 b"Authorization: Bearer " + endpoint.token.encode() + b"\r\nContent-Length: 1000\r\n\r\n<")
    await writer.drain()

    async def trickle() -> None:
        while True:  # one byte every 0.3 s (the finding's "1 byte per 3 s", ten times faster)
            await asyncio.sleep(0.3)
            writer.write(b"x")
            await writer.drain()

    sender = asyncio.create_task(trickle())
    try:
        data, _took = await until_closed(reader, BODY_TIMEOUT + SLACK)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert data.startswith(b"HTTP/1.1 408 ") and b"application/problem+json" in data, data
    assert b'"status":408' in data.replace(b" ", b"")
    close(writer)


async def test_a_body_at_the_minimum_rate_gets_through(endpoint: Endpoint) -> None:
    """Longer than the body's base allowance, but every chunk earns its time: 600 bytes every 0.25 s (2,400 B/s
    against a minimum of 2,000 B/s) for 1.5 s. The garbage body is then refused as XML_MALFORMED, normally."""
    reader, writer = await connect(endpoint)
    body = b"<" + b"x" * 3599
    writer.write(b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
                 b"Authorization: Bearer " + endpoint.token.encode()
                 + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    for i in range(0, len(body), 600):
        writer.write(body[i:i + 600])
        await writer.drain()
        await asyncio.sleep(0.25)
    status, answer = await response(reader)
    assert status == 422 and b"XML_MALFORMED" in answer, answer
    close(writer)


async def test_normal_requests_and_keep_alive(endpoint: Endpoint) -> None:
    reader, writer = await connect(endpoint)
    for _ in range(3):  # several requests on one connection, each well within the limits
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        status, body = await response(reader)
        assert status == 200 and b'"ok":true' in body
    writer.write(b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + endpoint.token.encode()
                 + b"\r\n\r\n")
    await writer.drain()
    assert (await response(reader))[0] == 200
    data, _took = await until_closed(reader, KEEP_ALIVE + SLACK)  # then idle: the keep-alive timeout
    assert data == b""
    close(writer)


async def test_the_connection_limit_refuses_extra_connections(endpoint: Endpoint) -> None:
    held = [await connect(endpoint) for _ in range(MAX_CONNECTIONS)]
    await asyncio.sleep(0.1)
    assert endpoint.guard.open == MAX_CONNECTIONS
    reader, writer = await connect(endpoint)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data, took = await until_closed(reader, 1.0)  # refused at once, long before any timeout
    assert data == b"" or data.startswith(b"HTTP/1.1 503 "), data
    assert took < HEADER_TIMEOUT
    close(writer)
    # one of the held connections goes away: there is room again
    close(held.pop()[1])
    await asyncio.sleep(0.1)
    reader, writer = await connect(endpoint)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await response(reader))[0] == 200
    close(writer)
    for _, w in held:
        close(w)


async def test_a_trickled_second_request_and_a_trickled_unread_body_are_cut_off(endpoint: Endpoint) -> None:
    """On a kept-alive connection, the next request's headers get the same limit; a body the handler never
    reads (a GET answered at once) is still timed: uvicorn alone would keep reading it for ever."""
    reader, writer = await connect(endpoint)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HT")
    await writer.drain()
    assert (await response(reader))[0] == 200

    async def trickle_headers() -> None:  # under the keep-alive timeout each time, never finishing the headers
        while True:
            await asyncio.sleep(0.3)
            writer.write(b"T")
            await writer.drain()

    sender = asyncio.create_task(trickle_headers())
    try:
        data, _took = await until_closed(reader, HEADER_TIMEOUT + SLACK)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert data.startswith(b"HTTP/1.1 408 "), data
    close(writer)

    reader, writer = await connect(endpoint)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
    await writer.drain()
    assert (await response(reader))[0] == 200  # answered without reading the body

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.3)
            writer.write(b"x")
            await writer.drain()

    sender = asyncio.create_task(trickle())
    try:
        data, _took = await until_closed(reader, BODY_TIMEOUT + SLACK)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert data == b""  # the answer was already given: just closed
    close(writer)


async def test_oversized_headers_get_431(endpoint: Endpoint) -> None:
    reader, writer = await connect(endpoint)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    data, _took = await until_closed(reader, 2.0)
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    close(writer)
