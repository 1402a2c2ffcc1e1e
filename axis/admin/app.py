"""The admin app: statistics API, Prometheus metrics and the live dashboard (FastAPI shell).

Authentication is the admin token (contract section 4), checked in constant time against its SHA-256:

- API clients send ``Authorization: Bearer <token>`` on every request;
- a person opens ``<admin url>/`` (the URL ``axis up`` prints) and signs in with the token on its form, which
  POSTs it to ``/login`` (never in a URL: not in the browser's history, nor in any proxy's log); the answer is a
  redirect to ``/`` that sets an HttpOnly, SameSite=Strict (and, over HTTPS, Secure) session cookie valid for
  :data:`SESSION_SECONDS` — ``<expiry>.<HMAC of the expiry keyed by the token's hash>``, never the token itself —
  so the dashboard's own requests (``/admin/stats``, ``/admin/servers``, the ``/admin/events`` stream) are
  authenticated by the cookie. ``/?token=<token>`` still signs in (scripts written for earlier versions), with the
  same redirect that takes the token out of the address bar.

Without valid credentials every protected path answers 401 ``application/problem+json`` with reason
``UNAUTHORIZED`` (the dashboard page answers 401 with the HTML form instead). Failed checks are limited per
client address as on the endpoint servers (``limits.auth_failures`` within ``limits.auth_window_seconds``,
:class:`axis.core.ratelimit.FailureLimiter`): a wrong bearer token, a wrong session cookie or a wrong ``?token=``
counts (a request with no credentials at all guesses nothing and does not); past the limit every protected path
and the dashboard answer 429 (reason ``UNAUTHORIZED``, ``Retry-After``) without looking at the credentials.

``POST /admin/agencies/{code}/move`` ``{"server": ID}`` moves an agency to another server live: the app asks
the ``axis up`` supervisor over its control socket (axis.ops.control, axis.ops.livemove) and answers once the move is
complete; it then reloads its own view of the directory from the configuration file.

The evidence log's routes (``/admin/documents``, ``/admin/documents/{sender}/{document_id}/trace``,
``/admin/log/sth``, ``/admin/log/status``), its tree-head monitor and its gauges are :mod:`axis.admin.evidence`;
the dead letters' (``/admin/dead-letters``…) are :mod:`axis.admin.deadletters`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from axis.admin.agencies import AgencyAdmin
from axis.admin.certificates import CertificateWatch
from axis.admin.deadletters import DeadLetterApi
from axis.admin.evidence import EvidenceApi
from axis.admin.liveness import ServerLiveness
from axis.admin.probe import DEFAULT_RABBIT_MGMT, Prober
from axis.admin.reminders import ReminderScheduler
from axis.admin.uncollected import UncollectedApi
from axis.core.ratelimit import FailureLimiter, TooManyFailures
from axis.core.reasons import Reason
from axis.core.wire import server_queue
from axis.ops.control import ControlError, socket_from_env
from axis.ops.control import request as control_request
from axis.stats.metrics import render, snapshot_registry
from axis.stats.query import BY_CHOICES, StatsFilter, iso, parse_when, query_counters, query_stats
from axis.stats.store import StatsStore

STATIC_DIR = Path(__file__).with_name("static")
COOKIE = "axis_admin"
HSTS = "max-age=31536000"  # one year (no includeSubDomains: the admin app does not speak for its domain's others)
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1/"


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """What the admin app needs. ``token`` (cleartext) or ``token_sha256`` must be set."""

    stats_url: str | None = None
    token_sha256: str = ""
    token: str = ""
    directory: Any = None  # .agencies {code: Agency(code, name, server)}, .servers {id: Server(id, kind[, url])}
    amqp_url: str = DEFAULT_AMQP_URL
    rabbit_mgmt_url: str = DEFAULT_RABBIT_MGMT
    endpoints: Mapping[str, str] = field(default_factory=dict)  # server id → base URL (default: directory urls)
    config_path: Path | None = None  # re-read after a move (the directory changed)
    control_socket: Path | None = None  # the `axis up` supervisor's control socket (moves); None: no supervisor
    poll_seconds: float = 5.0
    cache_seconds: float = 0.75
    events_seconds: float = 1.0
    auth_failures: int = 20  # failed token checks per client address within auth_window_seconds → 429
    auth_window_seconds: float = 60.0
    auth_clients: int = 100_000
    evidence_url: str | None = None  # the evidence log's store (axis.admin.evidence); None: its routes answer 503
    ca_path: Path | None = None  # the axis CA (and its CRL): the log monitor checks tree heads against them
    crl_path: Path | None = None
    log_check_seconds: float = 5.0

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> AdminSettings:
        """From ``axis.config.Config`` (duck-typed: stats_url, admin.token_sha256, directory, amqp_url, servers)."""
        endpoints = {s.id: s.url for s in getattr(config, "servers", ()) if getattr(s, "url", None)}
        values: dict[str, Any] = {
            "stats_url": getattr(config, "stats_url", None),
            "token_sha256": getattr(getattr(config, "admin", None), "token_sha256", "") or "",
            "directory": getattr(config, "directory", None),
            "amqp_url": getattr(config, "amqp_url", None) or DEFAULT_AMQP_URL,
            "endpoints": endpoints,
            "config_path": getattr(config, "path", None),
            "control_socket": socket_from_env(),
            "evidence_url": getattr(getattr(config, "evidence", None), "url", None),
            "ca_path": getattr(getattr(config, "pki", None), "ca", None),
            "crl_path": getattr(getattr(config, "pki", None), "crl", None),
        }
        limits = getattr(config, "limits", None)
        for name in ("auth_failures", "auth_window_seconds", "auth_clients"):
            if hasattr(limits, name):
                values[name] = getattr(limits, name)
        values.update(overrides)
        return cls(**values)

    def token_digest(self) -> str:
        digest = self.token_sha256.strip().lower() or (
            hashlib.sha256(self.token.encode()).hexdigest() if self.token else ""
        )
        if len(digest) != 64:
            raise ValueError("the admin app needs an admin token (token or token_sha256)")
        return digest


def problem(status: int, title: str, detail: str, reason: Reason | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if reason is not None:
        body["reason"] = reason.value
    headers = {"WWW-Authenticate": 'Bearer realm="axis-admin"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _json(obj: Any) -> Response:
    return Response(orjson.dumps(obj), media_type="application/json")


#: How long a dashboard session cookie is valid; then the dashboard asks for the token again.
SESSION_SECONDS = 12 * 3600


class _Auth:
    def __init__(self, digest: str) -> None:
        self.digest = digest
        self._key = bytes.fromhex(digest)

    def _mac(self, expires: int) -> str:
        return hmac.new(self._key, b"axis-admin-dashboard|%d" % expires, hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        """A session cookie's value: its expiry (epoch seconds) and an HMAC of it keyed by the token's hash."""
        expires = int(time.time() if now is None else now) + SESSION_SECONDS
        return f"{expires}.{self._mac(expires)}"

    def session_ok(self, cookie: str, now: float | None = None) -> bool:
        expires, _, mac = cookie.partition(".")
        if not expires.isdigit() or len(expires) > 12:
            return False
        return hmac.compare_digest(mac, self._mac(int(expires))) and int(expires) > (now or time.time())

    def token_ok(self, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), self.digest)

    @staticmethod
    def presented(request: Request) -> bool:
        """Whether the request carries credentials at all (a bearer header or the session cookie)."""
        return bool(request.headers.get("authorization") or request.cookies.get(COOKIE))

    def request_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(value.strip()):
            return True
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self.session_ok(cookie)


class _Cache:
    """Memoizes query results, one computation at a time per key, for ``ttl`` seconds or twice as long as the
    query took (whichever is longer), so that live viewers never keep the database more than half busy."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[Any, tuple[float, dict[str, Any]]] = {}  # key → (expires at, value)
        self.locks: dict[Any, asyncio.Lock] = {}

    async def get(self, key: Any, compute: Any) -> dict[str, Any]:
        hit = self.entries.get(key)
        if hit and time.monotonic() < hit[0]:
            return hit[1]
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self.entries.get(key)
            if hit and time.monotonic() < hit[0]:
                return hit[1]
            started = time.monotonic()
            value = await compute()
            done = time.monotonic()
            if len(self.entries) > 256:
                self.entries.clear()
                self.locks = {key: lock}
            self.entries[key] = (done + max(self.ttl, 2 * (done - started)), value)
            return value


def _login_page(message: str) -> str:
    return f"""<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>axis admin</title>
<link rel="stylesheet" href="/static/dashboard.css"></head><body class="login"><main class="card">
<h1>axis — Trục liên thông văn bản</h1><p>{escape(message)}</p>
<form method="post" action="/login"><label>Admin token <input name="token" type="password" autocomplete="off"
autofocus></label> <button type="submit">Sign in</button></form>
<p class="hint">The admin token is the one <code>axis up</code> prints, and <code>admin.token</code> in
<code>connections.json</code>.</p></main></body></html>"""


def create_app(config_or_settings: Any) -> FastAPI:
    """The admin FastAPI app, from :class:`AdminSettings` or an ``axis.config.Config``."""
    settings = (
        config_or_settings
        if isinstance(config_or_settings, AdminSettings)
        else AdminSettings.from_config(config_or_settings)
    )
    auth = _Auth(settings.token_digest())
    limiter = FailureLimiter(settings.auth_failures, settings.auth_window_seconds, settings.auth_clients)
    directory = settings.directory
    endpoints = dict(settings.endpoints)
    if not endpoints and directory is not None:
        endpoints = {sid: s.url for sid, s in directory.servers.items() if getattr(s, "url", None)}
    prober = Prober(
        endpoints, amqp_url=settings.amqp_url, rabbit_mgmt_url=settings.rabbit_mgmt_url, interval=settings.poll_seconds,
        ca=settings.ca_path,  # the endpoint servers' HTTPS certificates are the axis CA's
    )
    cache = _Cache(settings.cache_seconds)
    evidence = EvidenceApi(settings.evidence_url, settings.ca_path, settings.crl_path, settings.log_check_seconds)
    certificates = CertificateWatch.for_settings(settings)
    dead_letters = DeadLetterApi.for_config(settings.amqp_url, config_or_settings)
    liveness = ServerLiveness(prober, settings.poll_seconds)
    uncollected = UncollectedApi.for_settings(settings)  # GET /admin/uncollected; reminders (issue 14)
    reminders = ReminderScheduler.for_settings(settings, uncollected)
    per_server: dict[str, list[str]] = {}  # the directory is immutable: group its agencies by server once

    def set_directory(new: Any, new_endpoints: Mapping[str, str]) -> None:
        """Point the app at a new directory (after a move): rebinds what the handlers below read."""
        nonlocal directory, endpoints
        grouped: dict[str, list[str]] = {}
        if new is not None:
            for code, agency in new.agencies.items():
                grouped.setdefault(agency.server, []).append(code)
            for codes in grouped.values():
                codes.sort()
        directory, endpoints = new, dict(new_endpoints)
        per_server.clear()
        per_server.update(grouped)
        prober.endpoints = dict(new_endpoints)
        cache.entries.clear()

    set_directory(directory, endpoints)
    state: dict[str, Any] = {"store": None}
    store_lock = asyncio.Lock()

    async def store() -> StatsStore:
        if state["store"] is None:
            async with store_lock:
                if state["store"] is None:
                    state["store"] = await StatsStore.open(settings.stats_url)
        return state["store"]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store()
        prober.start()
        await evidence.start()
        await certificates.start()
        await dead_letters.start()
        await reminders.start()
        try:
            yield
        finally:
            await reminders.stop()
            await uncollected.stop()
            await dead_letters.stop()
            await certificates.stop()
            await evidence.stop()
            await prober.stop()
            if state["store"] is not None:
                await state["store"].close()
                state["store"] = None

    app = FastAPI(title="axis admin", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.prober = prober
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.evidence = evidence
    evidence.install(app)
    app.state.certificates = certificates
    certificates.install(app)
    app.state.dead_letters = dead_letters
    dead_letters.install(app)
    uncollected.install(app)
    reminders.install(app)

    async def stats(flt: StatsFilter, by: str = "agency", top: int = 20, limit: int = 1000) -> dict[str, Any]:
        s = await store()
        return await cache.get(
            (flt, by, top, limit), lambda: query_stats(s, directory, flt, by=by, top=top, limit=limit)
        )

    def servers_view(agency_stats: dict[str, Any] | None) -> list[dict[str, Any]]:
        now = time.time()
        st = prober.state
        traffic: dict[str, dict[str, int]] = {}
        for row in (agency_stats or {}).get("breakdown", ()):
            traffic[row["key"]] = row
        out = []
        server_ids = list(directory.servers) if directory is not None else sorted(endpoints)
        for sid in server_ids:
            server = directory.servers.get(sid) if directory is not None else None
            queue = server_queue(sid)
            seen = st.last_seen.get(sid)
            row = traffic.get(sid, {})
            out.append(
                {
                    "id": sid,
                    "kind": getattr(server, "kind", None),
                    "url": endpoints.get(sid),
                    "agencies": per_server.get(sid, []),
                    "last_seen": iso(seen) if seen else None,
                    "seconds_since_seen": round(now - seen, 1) if seen else None,
                    "up": bool(seen and now - seen <= max(3 * settings.poll_seconds, 5.0)),
                    "error": st.last_error.get(sid),
                    "queue": queue,
                    "queue_depth": st.queues.get(queue),
                    "sent": row.get("sent", 0),
                    "received": row.get("received", 0),
                }
            )
        return out

    def over_limit(request: Request) -> TooManyFailures | None:
        """The refusal for an address over the failed-authentication limit (checked before any credential)."""
        try:
            limiter.check(request.client.host if request.client else "-", time.monotonic())
        except TooManyFailures as exc:
            return exc
        return None

    def failed(request: Request) -> None:
        limiter.failed(request.client.host if request.client else "-", time.monotonic())

    def too_many(exc: TooManyFailures, response: Response | None = None) -> Response:
        if response is None:
            response = problem(429, "too many failed authentication attempts", str(exc), Reason.UNAUTHORIZED)
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
        return response

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path in ("/healthz", "/", "/login") or path.startswith("/static/"):
            return await call_next(request)
        limited = over_limit(request)
        if limited is not None:
            return too_many(limited)
        if auth.request_ok(request):
            return await call_next(request)
        if auth.presented(request):
            failed(request)
        return problem(401, "Unauthorized", "missing or wrong admin token", Reason.UNAUTHORIZED)

    @app.middleware("http")  # added last: the outermost, so every answer (401s too) carries it
    async def strict_transport_security(request: Request, call_next: Any) -> Response:
        """HSTS over HTTPS (RFC 6797; a browser ignores it over plain HTTP): a browser that has once reached the
        dashboard over HTTPS never falls back to plain HTTP for it, where the admin token would travel in clear."""
        response: Response = await call_next(request)
        if request.url.scheme == "https":
            response.headers["Strict-Transport-Security"] = HSTS
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "service": "admin"}

    def sign_in(request: Request, token: str) -> Response:
        if not auth.token_ok(token):
            failed(request)
            return HTMLResponse(_login_page("That token is not the admin token."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, auth.new_session(), max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            path="/", secure=request.url.scheme == "https")
        return response

    @app.post("/login", response_model=None)
    async def login(request: Request) -> Response:
        """The sign-in form's POST (application/x-www-form-urlencoded ``token=…``, at most 4 KiB)."""
        limited = over_limit(request)
        if limited is not None:
            return too_many(limited, HTMLResponse(_login_page(f"Too many wrong tokens from your address: try again "
                                                              f"in {math.ceil(limited.retry_after)} s."),
                                                  status_code=429))
        body = await request.body()
        if len(body) > 4096:
            return HTMLResponse(_login_page("That is not an admin token."), status_code=413)
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        return sign_in(request, token)

    @app.get("/", response_model=None)
    async def dashboard(request: Request, token: str | None = None) -> Response:
        limited = over_limit(request)
        if limited is not None:
            return too_many(limited, HTMLResponse(_login_page(f"Too many wrong tokens from your address: try again "
                                                              f"in {math.ceil(limited.retry_after)} s."),
                                                  status_code=429))
        if token is not None:
            return sign_in(request, token)
        if not auth.request_ok(request):
            if auth.presented(request):
                failed(request)
            return HTMLResponse(_login_page("This dashboard needs the admin token."), status_code=401)
        html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def parse_filters(request: Request) -> tuple[StatsFilter, str] | JSONResponse:
        q = request.query_params
        by = q.get("by") or "agency"
        if by not in BY_CHOICES:
            return problem(400, "Bad Request", f"by must be one of {', '.join(BY_CHOICES)}")
        try:
            start = parse_when(q.get("from"))
            end = parse_when(q.get("to"), end=True)
        except ValueError as exc:
            return problem(400, "Bad Request", f"from/to must be ISO dates or datetimes: {exc}")
        return StatsFilter(start, end, q.get("agency") or None), by

    @app.get("/admin/stats", response_model=None)
    async def admin_stats(request: Request) -> Response:
        parsed = parse_filters(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        flt, by = parsed
        try:
            top = min(max(int(request.query_params.get("top", 20)), 1), 1000)
            limit = min(max(int(request.query_params.get("limit", 1000)), 1), 200_000)
        except ValueError:
            return problem(400, "Bad Request", "top and limit must be integers")
        return _json(await stats(flt, by, top, limit))

    @app.get("/admin/counters", response_model=None)
    async def admin_counters() -> Response:
        """The store's exact totals only, uncached: ``{"sent", "received", "refused"}`` (cheap at any volume,
        for scripts and progress polling; ``/admin/stats`` computes everything)."""
        return _json(await query_counters(await store()))

    @app.get("/admin/agencies", response_model=None)
    async def admin_agencies() -> Response:
        s = await stats(StatsFilter(), "agency", 20, 1_000_000)
        rows = {r["key"]: r for r in s["breakdown"]}
        out = []
        codes = list(directory.agencies) if directory is not None else sorted(rows)
        for code in codes:
            agency = directory.agencies.get(code) if directory is not None else None
            server = directory.servers.get(agency.server) if agency is not None else None
            row = rows.get(code, {})
            out.append(
                {
                    "code": code,
                    "name": getattr(agency, "name", row.get("name", "")),
                    "server": getattr(agency, "server", row.get("server", "")),
                    "kind": getattr(server, "kind", row.get("kind", "")),
                    "sent": row.get("sent", 0),
                    "received": row.get("received", 0),
                    "refused": row.get("refused", 0),
                    "active": getattr(agency, "active", True),  # False once retired (axis agency retire)
                    "aliases": list(getattr(agency, "aliases", ())),  # its former codes (axis agency rename)
                }
            )
        return _json(out)

    @app.get("/admin/servers", response_model=None)
    async def admin_servers() -> Response:
        by_server = await stats(StatsFilter(), "server", 20, 1_000_000)
        return _json(servers_view(by_server))

    @app.post("/admin/agencies/{code}/move", response_model=None)
    async def move_agency(code: str, request: Request) -> Response:
        """Move an agency to another server live (axis.ops.livemove, through the `axis up` supervisor); answers
        ``{"agency", "from", "to", "endpoint", ...}`` once the move is complete."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("server"), str):
            return problem(422, "Unprocessable Content", 'expected JSON {"server": "<server id>"}',
                           Reason.SCHEMA_INVALID)
        if settings.control_socket is None:
            return problem(501, "Not Implemented", "moving an agency live needs the `axis up` supervisor, and this "
                           "admin app was not started by `axis up`; move it offline instead (docs/core.md)")
        payload = {k: body[k] for k in ("server", "port", "kind") if k in body}
        try:
            status, answer = await control_request(settings.control_socket, {"op": "move", "agency": code,
                                                                             **payload})
        except ControlError as exc:
            return problem(503, "Service Unavailable", str(exc))
        if status != 200:
            reason = answer.get("reason")
            return problem(status, "move refused" if status < 500 else "move failed", str(answer.get("detail")),
                           Reason(reason) if reason else None)
        if settings.config_path is not None:
            from axis.config import load_config

            new = await asyncio.to_thread(load_config, settings.config_path)
            set_directory(new.directory, {s.id: s.url for s in new.servers})
        return _json(answer)

    async def reread_config() -> None:
        """After an agency was added, retired, renamed or re-certified (axis.admin.agencies): the new directory and
        certificates."""
        if settings.config_path is not None:
            from axis.config import load_config

            new = await asyncio.to_thread(load_config, settings.config_path)
            set_directory(new.directory, {s.id: s.url for s in new.servers})
        await certificates.refresh()

    AgencyAdmin.for_settings(settings, reread_config).install(app)

    @app.get("/metrics", response_model=None)
    async def metrics() -> Response:
        s = dict(await stats(StatsFilter(), "agency", 20, 1_000_000))
        s["breakdown_agencies"] = s["breakdown"]
        queues = {q: n for q, n in prober.state.queues.items() if q.startswith("axis.")}
        registry = snapshot_registry(s, queues)
        evidence.register_metrics(registry)
        certificates.register_metrics(registry)
        dead_letters.register_metrics(registry)
        liveness.register_metrics(registry)
        uncollected.register_metrics(registry)
        reminders.register_metrics(registry)
        body, content_type = render(registry)
        return Response(body, media_type=content_type)

    @app.get("/admin/events", response_model=None)
    async def events(request: Request) -> StreamingResponse:
        """Server-Sent Events: ``stats`` (the /admin/stats object, unfiltered) and ``servers`` on change."""

        async def stream() -> AsyncIterator[bytes]:
            last: dict[str, bytes] = {}
            quiet = 0
            yield b"retry: 2000\n\n"
            while not await request.is_disconnected():
                payloads = {
                    "stats": orjson.dumps(await stats(StatsFilter())),
                    "servers": orjson.dumps(servers_view(await stats(StatsFilter(), "server", 20, 1_000_000))),
                }
                sent_any = False
                for name, data in payloads.items():
                    if last.get(name) != data:
                        last[name] = data
                        sent_any = True
                        yield b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
                quiet = 0 if sent_any else quiet + 1
                if quiet * settings.events_seconds >= 15:
                    quiet = 0
                    yield b": keep-alive\n\n"
                await asyncio.sleep(settings.events_seconds)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return app
