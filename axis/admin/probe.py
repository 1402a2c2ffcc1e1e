"""Liveness of the endpoint servers and RabbitMQ queue depths, polled in the background for the admin app.

Liveness must not cost the axis (issue 15 item 5). Every ``interval`` (5 s) the admin makes ONE call, whatever the
number of servers: ``GET /api/queues/<vhost>?columns=name,messages,consumers`` on the RabbitMQ management API
(credentials and vhost taken from the AMQP URL: ``amqp://user:pass@host/vhost``; an empty path is the default
vhost ``/``). It gives the queue depths (as before) and, for each endpoint server, whether its delivery queue
``axis.server.<id>`` has a consumer — the server's host process is running and holds its broker connection (the
broker drops the consumer when the process dies or stops answering AMQP heartbeats; the management API's
statistics show it within ~5–10 s, its ``collect_statistics_interval``).

The HTTP door is still checked, ``GET <server url>/healthz`` (HTTPS checked against the axis CA, ``ca``), through
one shared client, but each server whose queue the broker reports only once per ``door_interval`` (60 s), a
few servers per poll so that the probes are spread over the minute; a server the broker does not report (no
management API, or its queue not declared yet) is probed every poll, as before. So liveness costs, per server
and minute, one ``/healthz`` (a TLS handshake on both sides: the servers close idle connections after 5 s) and a
share of 12 management calls — instead of 12 handshakes and 12 requests per server and minute.

What a server's state means (:class:`ProbeState`, pure; the dashboard's "servers" view reads ``last_seen`` and
``last_error``):

- ``last_seen[id]``: the last time it was seen alive — a 2xx ``/healthz``, or a poll that found a consumer on its
  queue while its door's last probe had not failed;
- ``last_error[id]``: why it is not seen now ("HTTP 503", "ConnectError", "no consumer on axis.server.<id>").

Routine probes are never logged; a server going down is logged once (WARNING), coming back once (INFO).

Why not heartbeats over the broker (each host publishing one message per interval for its servers to a queue
the admin consumes)? The consumer count already is a broker-side heartbeat that costs nothing more than the call
the admin made anyway: no message, no new exchange or queue, no new broker permission (the servers keep their
least privilege, the admin its monitoring tag), no change to the hosts. A heartbeat would also not see the HTTP
door the agencies use; the slow ``/healthz`` round does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx

from axis.admin.background import stop_task
from axis.core.tlsconfig import client_context
from axis.core.wire import server_queue

DEFAULT_RABBIT_MGMT = "http://127.0.0.1:15672"

log = logging.getLogger("axis.admin.probe")
# httpx logs every request at INFO ("HTTP Request: GET ..."): in the admin process these are routine probes.
logging.getLogger("httpx").setLevel(logging.WARNING)


def amqp_vhost_and_auth(amqp_url: str) -> tuple[str, tuple[str, str]]:
    """(vhost, (user, password)) from an AMQP URL."""
    parts = urlsplit(amqp_url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    return vhost, (unquote(parts.username or "guest"), unquote(parts.password or "guest"))


@dataclass(frozen=True)
class Change:
    """A server seen going down or coming back: the one log line routine polls may produce."""

    server_id: str
    up: bool
    text: str


@dataclass
class ProbeState:
    """What the last polls found, and the liveness rules (pure: no I/O; mutated only by :class:`Prober`)."""

    last_seen: dict[str, float] = field(default_factory=dict)  # server id → epoch seconds
    last_error: dict[str, str] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)  # queue name → messages
    consumers: dict[str, int] = field(default_factory=dict)  # queue name → consumers (last successful poll)
    queues_error: str | None = None
    queues_at: float | None = None
    door_at: dict[str, float] = field(default_factory=dict)  # server id → monotonic time of its last /healthz
    door_failed: set[str] = field(default_factory=set)  # servers whose last /healthz failed

    def watched(self, server_id: str) -> bool:
        """Whether the broker reports this server's queue (then its door is probed only every door interval)."""
        return self.queues_error is None and server_queue(server_id) in self.consumers

    def _consuming(self, server_id: str) -> bool:
        """Unless the broker reports its queue without a consumer."""
        return not self.watched(server_id) or self.consumers[server_queue(server_id)] > 0

    def _down(self, server_id: str, why: str) -> Change | None:
        was_up = server_id not in self.last_error and server_id in self.last_seen
        self.last_error[server_id] = why
        return Change(server_id, False, f"endpoint server {server_id} is down: {why}") if was_up else None

    def _up(self, server_id: str, now: float) -> Change | None:
        was = self.last_error.pop(server_id, None)
        known = server_id in self.last_seen
        self.last_seen[server_id] = now
        return Change(server_id, True, f"endpoint server {server_id} is back (was: {was})") if was and known else None

    def door(self, server_id: str, error: str | None, now: float, mono: float) -> Change | None:
        """A ``/healthz`` answer (``error`` None for 2xx)."""
        self.door_at[server_id] = mono
        if error is not None:
            self.door_failed.add(server_id)
            return self._down(server_id, error)
        self.door_failed.discard(server_id)
        if not self._consuming(server_id):
            return self._down(server_id, f"no consumer on {server_queue(server_id)}")
        return self._up(server_id, now)

    def broker(self, server_ids: Sequence[str], now: float) -> list[Change]:
        """After a successful queue poll: a watched server whose queue has a consumer (and whose door did not fail
        at its last probe) is alive now; one whose queue has none is not."""
        changes = []
        for sid in server_ids:
            if not self.watched(sid) or sid in self.door_failed:
                continue
            if self._consuming(sid):
                change = self._up(sid, now)
            else:
                change = self._down(sid, f"no consumer on {server_queue(sid)}")
            if change:
                changes.append(change)
        return changes


def doors_due(state: ProbeState, server_ids: Sequence[str], mono: float, *, interval: float,
              door_interval: float) -> list[str]:
    """The servers whose ``/healthz`` to probe in this poll: every server the broker does not report or whose door
    failed at its last probe, plus the watched servers not probed for ``door_interval`` — at most their share of
    one poll (watched servers × interval ÷ door_interval, rounded up), the longest unprobed first, so that the
    probes spread evenly over the door interval."""
    every_poll = [s for s in server_ids if not state.watched(s) or s in state.door_failed]
    watched = [s for s in server_ids if state.watched(s) and s not in state.door_failed]
    stale = [s for s in watched if mono - state.door_at.get(s, -math.inf) >= door_interval]
    stale.sort(key=lambda s: state.door_at.get(s, -math.inf))
    share = math.ceil(len(watched) * interval / door_interval) if door_interval > interval else len(watched)
    return every_poll + stale[:share]


def _log(change: Change | None) -> None:
    if change is not None:
        log.log(logging.INFO if change.up else logging.WARNING, "%s", change.text)


class Prober:
    """Polls every ``interval`` seconds while running; :meth:`poll_once` does one round (used by tests too)."""

    def __init__(
        self,
        endpoints: Mapping[str, str],
        *,
        amqp_url: str,
        rabbit_mgmt_url: str = DEFAULT_RABBIT_MGMT,
        interval: float = 2.0,
        timeout: float = 1.5,
        ca: Path | str | None = None,
        door_interval: float = 60.0,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.ca = ca
        self.vhost, self.auth = amqp_vhost_and_auth(amqp_url)
        self.mgmt = rabbit_mgmt_url.rstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.door_interval = door_interval
        self.state = ProbeState()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            trusted = self.ca is not None and Path(self.ca).is_file()
            verify: ssl.SSLContext | bool = client_context(self.ca) if trusted else True
            self._http = httpx.AsyncClient(timeout=self.timeout, trust_env=False, verify=verify)
        return self._http

    async def _health(self, http: httpx.AsyncClient, server_id: str, url: str) -> None:
        error: str | None
        try:
            r = await http.get(url.rstrip("/") + "/healthz")
            error = None if r.is_success else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        _log(self.state.door(server_id, error, time.time(), time.monotonic()))

    async def _queues(self, http: httpx.AsyncClient) -> None:
        try:
            r = await http.get(
                f"{self.mgmt}/api/queues/{quote(self.vhost, safe='')}",
                params={"columns": "name,messages,consumers"},
                auth=self.auth,
            )
            r.raise_for_status()
            listed = r.json()
            self.state.queues = {q["name"]: int(q.get("messages") or 0) for q in listed}
            self.state.consumers = {q["name"]: int(q.get("consumers") or 0) for q in listed}
            self.state.queues_error = None
            self.state.queues_at = time.time()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self.state.queues_error = f"{type(exc).__name__}: {exc}"[:200]
            self.state.consumers = {}

    async def poll_once(self) -> None:
        http = await self._client()
        await self._queues(http)
        servers = [s for s, u in self.endpoints.items() if u]
        if self.state.queues_error is None:
            for change in self.state.broker(servers, time.time()):
                _log(change)
        due = doors_due(self.state, servers, time.monotonic(), interval=self.interval,
                        door_interval=self.door_interval)
        await asyncio.gather(*(self._health(http, s, self.endpoints[s]) for s in due))

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a poll must never kill the loop; errors are kept in state
                await self.poll_once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="axis-admin-prober")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
