"""A host process for one or several logical endpoint servers, each a FastAPI app on its own port.

Each server has its own store, channels, consumer and uvicorn server. The servers of a host share one AMQP
connection as the host's own broker user, and their submissions and status 01s travel in the host's bundles
(:mod:`endpoints.link`; ``axis up`` provisions that user, allowed what the servers may do together); a host
without one (a single server, or a set started by hand) connects each server as its own broker user. In
development mode (``shared``) the servers of a host share one robust AMQP connection, bundled alike.
SIGINT/SIGTERM stop them cleanly (uvicorn finishes in-flight requests; consumers are cancelled, unacked deliveries
go back to their queues).

Slow and idle clients (``limits`` in the config; :class:`ConnectionGuard`). Dozens of logical servers share one
process's file descriptors, and uvicorn alone closes nothing that has not yet sent a whole request (its only
timer is keep-alive, armed after a response, and any byte disarms it). So every connection carries one timer:

- the request line and headers must arrive within ``header_timeout_seconds`` (10 s) of the connection opening,
  or of the request's first byte on a kept-alive connection: an idle connection is closed silently, a started
  request gets ``408`` and the close. Headers over 64 KiB get ``431`` (httptools, unlike h11, has no limit);
- a body gets ``body_timeout_seconds`` (20 s) plus one second per ``body_min_rate`` bytes received (4 KiB/s),
  Apache mod_reqtimeout's rule (``body=20,MinRate=…``): any honest client, even a 25 MiB envelope over a
  64 kbit/s line, keeps ahead of it; a client trickling bytes falls behind within seconds and gets ``408``
  problem+json and the close. Time the server itself stops reading (flow control) is not counted;
- between requests, ``keep_alive_seconds`` (5 s, uvicorn's default) of silence closes the connection;
- a host process serves at most ``max_connections`` (1,000) connections over all its servers: one more is
  answered ``503`` (``Retry-After: 1``) and closed at once, before it costs a file descriptor for long. 1,000
  is far above what agency software needs (a client holds one or a few kept-alive connections; a shared
  server's agencies a few dozen) and, with 256 descriptors kept for AMQP, databases and files, fits the host
  after it raises its soft RLIMIT_NOFILE (often 1,024) towards the hard one; where it cannot fit, the host
  lowers the limit and logs it, rather than let accept() fail with EMFILE for every client.

Holding a connection open thus costs a client real traffic (a byte-per-second trickle is cut after ~30 s),
and no client can exhaust the host's descriptors. A hot reload (SIGHUP) applies new values at once.

TLS (contract section 6; the configuration's ``tls``, on by default): every server serves HTTPS with the SSLContext
of :mod:`axis.core.tlsconfig` (uvicorn's ``ssl_context_factory``). The protocol above sees a connection only once
its handshake is over, so the handshake has its own limit: ``header_timeout_seconds`` (asyncio's default would be
60 s; :class:`GuardedServer`). A verified client certificate reaches the app in the ASGI scope
(``scope["extensions"]["tls"]``, read once per connection: :mod:`endpoints.mtls`), where ``client_auth`` is
decided per request. With ``tls: off`` the host logs a warning first (development only).
"""

from __future__ import annotations

import asyncio
import contextvars
import http
import logging
import signal
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from axis.config import Config, Limits
from axis.config.reload import install_sighup
from axis.config.verifier import make_verifier
from axis.core import schema
from axis.core.tlsconfig import PLAINTEXT_WARNING, reload_server_contexts, server_context, set_client_auth
from axis.stats.counting import open_counter
from endpoints.app import create_app
from endpoints.corked import CorkedTransport
from endpoints.gate import GatedApp
from endpoints.link import HostLink
from endpoints.mtls import tls_extension
from endpoints.server import EndpointServer

log = logging.getLogger("axis.endpoint")

#: Request line plus headers above this get 431 (httptools sets no limit of its own).
MAX_HEADER_BYTES = 64 * 1024
#: Descriptors a host keeps for itself beyond its HTTP connections (AMQP, databases, SQLite files, logs).
FD_RESERVE = 256
_IDLE, _HEADERS, _BODY = 0, 1, 2


@dataclass
class ConnectionGuard:
    """The slow-client limits of one host process and its open-connection count, shared by all its servers."""

    header_timeout: float = 10.0
    body_timeout: float = 20.0
    body_min_rate: float = 4096.0
    keep_alive: float = 5.0
    max_connections: int = 1000
    open: int = 0  # connections being served now
    refused: int = 0  # turned away by max_connections
    timed_out: int = 0  # closed by a header or body timeout

    @classmethod
    def from_limits(cls, limits: Limits) -> ConnectionGuard:
        guard = cls()
        guard.configure(limits)
        return guard

    def configure(self, limits: Limits) -> None:
        """Take the values of ``axis.config.Limits`` (at start and on a hot reload; new connections use them)."""
        self.header_timeout = limits.header_timeout_seconds
        self.body_timeout = limits.body_timeout_seconds
        self.body_min_rate = float(limits.body_min_rate)
        self.keep_alive = limits.keep_alive_seconds
        self.max_connections = limits.max_connections


def _answer(status: int, title: str, detail: str, *extra: bytes) -> bytes:
    """A whole problem+json response that closes the connection (written by the protocol, not by the app)."""
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail, "reason": None})
    head = [b"HTTP/1.1 %d %s" % (status, http.HTTPStatus(status).phrase.encode()),
            b"content-type: application/problem+json",
            b"content-length: %d" % len(body), b"connection: close", *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_503 = _answer(503, "service unavailable", "too many connections to this host, retry shortly", b"retry-after: 1")
_408_HEADERS = _answer(408, "request timeout", "the request headers did not arrive in time")
_408_BODY = _answer(408, "request timeout", "the request body arrived too slowly")
_431 = _answer(431, "request header fields too large", f"request line and headers over {MAX_HEADER_BYTES} bytes")


class _HeadersTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the timers and the connection budget of :class:`ConnectionGuard`.

    One timer per connection at most, armed for the phase's deadline and re-armed when it fires early (a body
    earns time as it arrives): requests in the normal course cost no timer cancellations."""

    guard: ConnectionGuard  # set on the subclass made by :func:`guarded_protocol`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn types it int (its Config's); it only goes to loop.call_later, and limits.keep_alive_seconds is a float
        self.timeout_keep_alive = self.guard.keep_alive  # type: ignore[assignment]
        self._counted = False
        self._phase = _IDLE
        self._since = 0.0
        self._bytes = 0  # of the phase: header bytes, then body bytes
        self._begun = False  # a request has started arriving (else: a silent connection)
        self._too_large = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._extensions: dict[str, Any] | None = None  # the ASGI TLS extension of this connection

    # -- connection --------------------------------------------------------------------------------------------
    # uvicorn's own override narrows BaseTransport to Transport (and ignores [override] the same way)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        if guard.open >= guard.max_connections:
            guard.refused += 1
            if guard.refused % 1000 == 1:  # the first of a burst, then every thousandth
                log.warning("%d connections open: refusing more (limits.max_connections; %d refused so far)",
                            guard.open, guard.refused)
            self.transport = transport
            transport.write(_503)
            transport.close()
            return
        guard.open += 1
        self._counted = True
        super().connection_made(transport)
        tls = tls_extension(transport.get_extra_info("ssl_object"))  # the handshake is over: read its peer once
        if tls is not None:
            self._extensions = {"tls": tls}
        self.transport = CorkedTransport(transport)  # a response's head and body in one write (endpoints.corked)
        self._enter(_HEADERS, begun=False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.guard.open -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = _IDLE
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._counted:  # a refused connection reads nothing
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if self._too_large:  # the parser stopped on our callback's exception: answer 431, not 400
            self._close_with(_431)
        else:
            super().send_400_response(msg)

    # -- parser callbacks --------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._extensions is not None:
            self.scope["extensions"] = self._extensions
        if self._phase == _HEADERS and not self._begun:  # a new connection's first request: its clock runs
            self._begun = True  # from the connection's opening
        else:  # a kept-alive connection's next request (uvicorn's keep-alive timer covered the silence before)
            self._enter(_HEADERS, begun=True)

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._enter(_BODY, begun=True)

    def on_body(self, body: bytes) -> None:
        self._bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _IDLE

    # -- the timer ---------------------------------------------------------------------------------------------
    def _count_header(self, n: int) -> None:
        self._bytes += n
        if self._bytes > MAX_HEADER_BYTES:
            self._too_large = True
            raise _HeadersTooLarge

    def _enter(self, phase: int, *, begun: bool) -> None:
        self._phase, self._begun, self._bytes = phase, begun, 0
        self._since = self.loop.time()
        allowance = self.guard.header_timeout if phase == _HEADERS else self.guard.body_timeout
        self._arm(self._since + allowance)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            if self._timer_at <= at:
                return  # fires earlier and re-arms itself then
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._on_timer)

    def _deadline(self, now: float) -> float:
        guard = self.guard
        if self._phase == _HEADERS:
            return self._since + guard.header_timeout
        deadline = self._since + guard.body_timeout + self._bytes / guard.body_min_rate
        if self.flow is not None and self.flow.read_paused:
            deadline = max(deadline, now + 1.0)  # the server is not reading: not the client's delay
        return deadline

    def _on_timer(self) -> None:
        self._timer = None
        if self._phase == _IDLE or self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        deadline = self._deadline(now)
        if now < deadline:
            self._arm(deadline)
            return
        self.guard.timed_out += 1
        cycle = self.cycle
        if self._phase == _HEADERS:
            answer = (_408_HEADERS if self._begun and (cycle is None or cycle.response_complete) and not self.pipeline
                      else None)
        else:
            answer = _408_BODY if cycle is not None and not cycle.response_started and not self.pipeline else None
        log.info("closing a slow HTTP connection from %s (%s)", self.client,
                 f"body, {self._bytes} bytes" if self._phase == _BODY else "headers" if self._begun else "idle")
        self._close_with(answer)

    def _close_with(self, answer: bytes | None) -> None:
        """Write ``answer`` (if any) and close. The request in progress, if any, sees a disconnect: whatever its
        handler still sends is dropped (uvicorn's own bookkeeping for a client that went away)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self._phase = _IDLE
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedHttpToolsProtocol]:
    """The protocol class of one host process (its servers share ``guard``)."""
    return type("HostHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"guard": guard})


#: The TLS handshake limit of the server being started (GuardedServer.startup, per task).
_HANDSHAKE_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar("axis_handshake_timeout",
                                                                                  default=None)


def _limit_handshakes(loop: asyncio.AbstractEventLoop) -> None:
    """Make the loop's ``create_server`` pass ``ssl_handshake_timeout`` (when a server being started set one):
    uvicorn does not, and asyncio's default lets a client hold a descriptor for 60 s without ever finishing its
    handshake — before the guard's own timers can see the connection. Installed once per loop."""
    original = loop.create_server
    if getattr(original, "_axis_handshake_limit", False):
        return

    async def create_server(*args: Any, **kwargs: Any) -> Any:
        timeout = _HANDSHAKE_TIMEOUT.get()
        if timeout is not None and kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", timeout)
        return await original(*args, **kwargs)

    create_server._axis_handshake_limit = True  # type: ignore[attr-defined]
    loop.create_server = create_server  # type: ignore[method-assign]


class GuardedServer(uvicorn.Server):
    """uvicorn's server, its TLS handshakes limited to the guard's header timeout."""

    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard) -> None:
        super().__init__(config)
        self.guard = guard

    async def startup(self, sockets: list[Any] | None = None) -> None:
        _limit_handshakes(asyncio.get_running_loop())
        token = _HANDSHAKE_TIMEOUT.set(self.guard.header_timeout)
        try:
            await super().startup(sockets)
        finally:
            _HANDSHAKE_TIMEOUT.reset(token)


def uvicorn_server(app: ASGIApp, host: str, port: int, guard: ConnectionGuard, *, log_level: str = "warning",
                   ssl_context: ssl.SSLContext | None = None) -> uvicorn.Server:
    """The uvicorn server of one logical endpoint server (httptools, guarded; no lifespan, no access log): HTTPS
    with ``ssl_context`` (axis.core.tlsconfig.server_context), plain HTTP without."""
    tls: dict[str, Any] = {}
    if ssl_context is not None:
        tls["ssl_context_factory"] = lambda _config, _default: ssl_context
    return GuardedServer(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off",
                                        access_log=False, http=guarded_protocol(guard), ws="none",
                                        timeout_keep_alive=max(1, round(guard.keep_alive)),
                                        # the failed-authentication limit is per peer address: do not let
                                        # X-Forwarded-For (trusted from 127.0.0.1 by default) choose it
                                        proxy_headers=False, **tls), guard)


def server_contexts(config: Config, server_ids: Sequence[str]) -> dict[str, ssl.SSLContext | None]:
    """One SSLContext per logical server (its own ``client_auth``), or None for each with ``tls: off``. Raises
    ConfigError when TLS is on and the server certificate is missing."""
    from axis.config import ConfigError

    if not config.tls.enabled:
        return dict.fromkeys(server_ids)
    problem = config.tls.missing()
    if problem is not None:
        raise ConfigError(problem)
    assert config.tls.cert is not None and config.tls.key is not None
    return {sid: server_context(config.tls.cert, config.tls.key, client_ca=config.pki.ca,
                                client_auth=config.server(sid).client_auth)
            for sid in server_ids}


def fd_headroom(guard: ConnectionGuard) -> None:
    """Raise the soft descriptor limit to fit ``max_connections`` (up to the hard limit); if it cannot fit,
    lower ``max_connections`` rather than let accept() fail with EMFILE for everyone."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = guard.max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(16, soft - FD_RESERVE)
        log.warning("limits.max_connections %d does not fit the descriptor limit %d: serving at most %d",
                    guard.max_connections, soft, fitted)
        guard.max_connections = fitted


async def serve(config: Config, server_ids: Sequence[str], *, log_level: str = "warning") -> None:
    if not config.tls.enabled:
        log.warning(PLAINTEXT_WARNING)
    contexts = server_contexts(config, server_ids)
    stats = await open_counter(config.stats_url)  # one statistics store per host process, shared by its servers
    # One Verifier pair per process (stateless per call, thread-safe; its certificate cache is shared).
    verifier, unsigned_ok = make_verifier(config), make_verifier(config, require_signature=False)
    schema.preload()
    servers = [EndpointServer(config, sid, stats=stats, verifier=verifier, verifier_unsigned_ok=unsigned_ok)
               for sid in server_ids]

    guard = ConnectionGuard.from_limits(config.limits)  # one per host: its servers share the descriptors
    fd_headroom(guard)

    async def apply(new: Config) -> None:
        """Hot reload (SIGHUP, axis.config.reload): every logical server of this host takes the new configuration."""
        pair = await asyncio.to_thread(lambda: (make_verifier(new), make_verifier(new, require_signature=False)))
        for s in servers:
            await s.reload(new, verifier=pair[0], verifier_unsigned_ok=pair[1])
        guard.configure(new.limits)
        fd_headroom(guard)
        for sid, ctx in contexts.items():  # new connections ask for client certificates, or stop asking
            if ctx is not None:
                set_client_auth(ctx, new.server(sid).client_auth)
        if new.tls.enabled and new.tls.missing() is None:  # rotation: new connections get the files as they now are
            assert new.tls.cert is not None and new.tls.key is not None
            reload_server_contexts([c for c in contexts.values() if c is not None], new.tls.cert, new.tls.key,
                                   client_ca=new.pki.ca)

    install_sighup(config, apply, "host " + ",".join(server_ids))
    link = await HostLink.open(config, server_ids)  # None: each server connects as its own broker user
    if link is not None:
        log.info("host of %d servers: one broker connection, their submissions and statuses bundled together",
                 len(link.server_ids))
    for s in servers:
        await s.start(link=link)
    uvis = [uvicorn_server(GatedApp(create_app(s), s.gate),  # requests vs. hot reloads
                           s.server.host, s.server.port, guard, log_level=log_level, ssl_context=contexts[s.id])
            for s in servers]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(u.serve()) for u in uvis]
    try:
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        for u in uvis:
            u.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in servers:
            await s.stop()
        if link is not None:
            await link.close()
        await stats.close()
