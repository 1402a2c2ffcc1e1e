"""A minimal keep-alive HTTP/1.1 client on asyncio streams: the simulator's load-generator path.

The simulator makes ~150,000 small requests to local servers in a full seed-2019 replay; a general-purpose client
(httpx: URL models, header classes, pool bookkeeping, per-request state machines) costs ~3-4 ms of CPU per
document, which the load generator then steals from the axis on a small machine. This client does only what the
simulator needs, cheaply (``bench/sim_http.py`` measures it against httpx and aiohttp):

- one pool of idle keep-alive connections per ``host:port`` (LIFO), no cap of its own: the callers bound their
  concurrency; at most ``max_idle`` idle connections are kept per server;
- requests with a ``bytes`` body (or ``json``), a ``Content-Length``; responses with ``Content-Length``,
  ``chunked`` or read-to-close bodies; ``Connection: close`` honoured;
- a connect timeout and a total timeout per request;
- a request that fails on a REUSED connection before any byte of the answer came back (the server closed it
  while idle: uvicorn does after 5 s) is sent again once on a fresh connection;
- every transport failure (refused, reset, timeout, malformed answer) raises :class:`TransportError`; callers
  retry as they see fit (``axis.sim.api``).

Plain ``http`` and ``https`` URLs; no proxies, no redirects, no cookies, no HTTP/2. TLS (contract section 6): the
pool's ``ssl_context`` (:func:`axis.core.tlsconfig.client_context` over the axis CA; the system's trust store when
None); a request may bring its own (an agency's client certificate for mutual TLS) — connections are pooled per
context, so a kept-alive connection is only ever reused with the certificate it was opened with. Keep-alive is
what keeps TLS cheap here: a handshake per connection, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from axis.core.tlsconfig import client_context

_MAX_HEAD = 256 * 1024


class TransportError(Exception):
    """The request got no (complete) HTTP answer: connection refused/reset/closed, timeout, malformed answer."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    content: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not JSON."""
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


#: A pooled connection's key: scheme, host, port and the SSLContext of a request that brought its own.
_Key = tuple[str, str, int, ssl.SSLContext | None]


class _NoAnswer(Exception):
    """The connection ended before the first byte of an answer (a stale keep-alive connection, or worse)."""


def _origin(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path?query) of an absolute http(s) URL."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    return u.scheme, u.hostname, port, target


#: bodies up to this many bytes are sent in one write with the request's head (a copy that saves a TLS record)
_JOIN_LIMIT = 64 * 1024


class Pool:
    """Keep-alive connections to any number of servers. Use as ``async with Pool() as pool``."""

    def __init__(
        self, *, timeout: float = 120.0, connect_timeout: float = 10.0, max_idle: int = 32,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._ssl = ssl_context
        self._idle: dict[_Key, list[_Conn]] = {}
        self._closed = False

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Response:
        scheme, host, port, target = _origin(url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
        body = content
        if json is not None:
            body = orjson.dumps(json)
            lines.append("Content-Type: application/json")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                return await self._send((scheme, host, port, ssl_context), method, head, body or b"")
        except TimeoutError:
            raise TransportError(f"{method} {url}: timed out") from None

    async def _send(self, key: _Key, method: str, head: bytes, body: bytes) -> Response:
        while True:
            conn = self._take(key)
            fresh = conn is None
            if conn is None:
                conn = await self._connect(key)
            try:
                resp, keep = await self._exchange(conn, method, head, body)
            except _NoAnswer as exc:
                conn.close()
                if fresh:
                    raise TransportError(f"{key[1]}:{key[2]}: connection closed without an answer ({exc})") from None
                continue  # a stale idle connection: send again on another one
            except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError) as exc:
                conn.close()
                raise TransportError(f"{key[1]}:{key[2]}: {type(exc).__name__}: {exc}") from None
            except BaseException:  # cancelled or timed out mid-exchange: the connection's state is unknown
                conn.close()
                raise
            if keep and not self._closed:
                self._give(key, conn)
            else:
                conn.close()
            return resp

    def _take(self, key: _Key) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            c = idle.pop()
            if c.usable():
                return c
            c.close()
        return None

    def _give(self, key: _Key, conn: _Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, key: _Key) -> _Conn:
        scheme, host, port, own = key
        ctx = None
        if scheme == "https":
            if own is None and self._ssl is None:
                self._ssl = client_context()
            ctx = own or self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=ctx, limit=_MAX_HEAD)
        except TimeoutError:
            raise TransportError(f"{host}:{port}: connect timed out") from None
        except OSError as exc:
            raise TransportError(f"{host}:{port}: {exc.strerror or exc}") from None
        return _Conn(reader, writer)

    @staticmethod
    async def _exchange(conn: _Conn, method: str, head: bytes, body: bytes) -> tuple[Response, bool]:
        w, r = conn.writer, conn.reader
        if body and len(body) > _JOIN_LIMIT:
            w.writelines((head, body))
        else:  # one write: one TLS record, which the server decrypts and reads at once
            w.write(head + body if body else head)
        # the server may answer before reading the whole body (413) and close: then read what it said
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await w.drain()
        try:
            raw = await r.readuntil(b"\r\n\r\n")
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _NoAnswer(type(exc).__name__) from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _NoAnswer("EOF") from None
            raise
        status_line, _, rest = raw[:-4].partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        if rest:
            for line in rest.split(b"\r\n"):
                name, sep, value = line.partition(b":")
                if not sep:
                    raise ValueError(f"malformed header line {line[:80]!r}")
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        keep = parts[0] == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = await r.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while (await r.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                chunks.append(await r.readexactly(size))
                await r.readexactly(2)
            content = b"".join(chunks)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            content = await r.readexactly(n) if n else b""
        else:
            content = await r.read()  # until the server closes
            keep = False
        return Response(status, headers, content), keep
