"""The simulator's lean HTTP/1.1 client against real local servers: keep-alive reuse, body framings, stale
connections, refused connections and timeouts (a raw asyncio server, to answer exactly as each case needs),
and a real uvicorn app for the everyday path."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import orjson
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from axis.sim.api import Api
from axis.sim.http import Pool, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1])
    return head, await r.readexactly(n) if n else b""


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_keep_alive_framings_and_connection_close() -> None:
    connections = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head, body = await _read_request(r)
                path = head.split(b" ")[1]
                if path == b"/chunked":
                    w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    w.write(b"4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n")
                elif path == b"/close":
                    w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye")
                    await w.drain()
                    w.close()
                    return
                else:
                    out = orjson.dumps({"path": path.decode(), "len": len(body), "head": head.decode()})
                    w.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
                await w.drain()
        except asyncio.IncompleteReadError:
            w.close()

    async def main() -> None:
        server, url = await _serve(handler)
        async with server, Pool() as pool:
            a = await pool.request("POST", f"{url}/v1/documents", content=b"x" * 10_000, headers={"X-A": "1"})
            assert a.status == 202 and a.json()["len"] == 10_000 and "X-A: 1" in a.json()["head"]
            b = await pool.request("GET", f"{url}/q", params={"limit": 5, "offset": 10})
            assert b.json()["path"] == "/q?limit=5&offset=10"
            c = await pool.request("POST", f"{url}/s", json={"code": "03"})
            assert c.json()["len"] == len(b'{"code":"03"}') and "application/json" in c.json()["head"]
            assert (await pool.request("GET", f"{url}/chunked")).content == b"abcdefg"
            assert connections == 1  # all on one keep-alive connection
            assert (await pool.request("GET", f"{url}/close")).text == "bye"
            assert (await pool.request("GET", f"{url}/again")).status == 202
            assert connections == 2  # the closed one was not reused

    asyncio.run(main())


def test_stale_idle_connection_is_replaced_but_a_fresh_failure_is_reported() -> None:
    served = 0

    async def one_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal served
        await _read_request(r)
        served += 1
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        w.close()  # like a keep-alive timeout: closed without saying so

    async def main() -> None:
        server, url = await _serve(one_then_close)
        async with server, Pool() as pool:
            assert (await pool.request("GET", f"{url}/a")).status == 200
            await asyncio.sleep(0.05)
            assert (await pool.request("POST", f"{url}/b", content=b"d")).status == 200
            assert served == 2

        async def hang_up(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await _read_request(r)
            w.close()

        server, url = await _serve(hang_up)
        async with server, Pool() as pool:
            with pytest.raises(TransportError, match="without an answer"):
                await pool.request("GET", f"{url}/x")

    asyncio.run(main())


def test_refused_and_timeout_are_transport_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with Pool() as pool:
            with pytest.raises(TransportError):
                await pool.request("GET", f"http://127.0.0.1:{port}/")
        server, url = await _serve(silent)
        async with server, Pool(timeout=0.3) as pool:
            t = time.monotonic()
            with pytest.raises(TransportError, match="timed out"):
                await pool.request("GET", f"{url}/")
            assert time.monotonic() - t < 2
        with pytest.raises(ValueError):
            await Pool().request("GET", "ftp://127.0.0.1/")

    asyncio.run(main())


@pytest.fixture
def uvicorn_app() -> Iterator[str]:
    app = FastAPI()
    calls = {"n": 0}

    @app.post("/v1/documents")
    async def submit(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] % 3 == 1:  # every third call first answers 503: the Api retries it
            return Response(b'{"reason": "busy"}', status_code=503, media_type="application/json")
        body = await request.body()
        auth = request.headers.get("authorization")
        return Response(orjson.dumps({"id": "1", "len": len(body), "auth": auth}), status_code=202)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    th.join(10)


def test_api_over_uvicorn_retries_503(uvicorn_app: str) -> None:
    async def main() -> list[int]:
        async with Pool() as pool:
            api = Api(pool)
            answers = await asyncio.gather(*(api.submit(uvicorn_app, "tok", b"<x/>" * 100) for _ in range(30)))
            assert all(a.body == {"id": "1", "len": 400, "auth": "Bearer tok"} for a in answers)
            return [a.status for a in answers]

    assert asyncio.run(main()) == [202] * 30
