"""THE BASELINE of bench/admin_probe.py: ``axis/admin/probe.py`` as it was before issue 15 item 5 (commit
2cb63d1), its code kept verbatim below so that the benchmark compares both in the same run without git history.

It probed every server's ``GET /healthz`` through httpx at every poll (one request, and with the servers' 5 s
keep-alive one TLS handshake, per server every 5 s), which httpx logs at INFO; the queue depths came from one
management API call per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx

from axis.core.tlsconfig import client_context

DEFAULT_RABBIT_MGMT = "http://127.0.0.1:15672"


def amqp_vhost_and_auth(amqp_url: str) -> tuple[str, tuple[str, str]]:
    """(vhost, (user, password)) from an AMQP URL."""
    parts = urlsplit(amqp_url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    return vhost, (unquote(parts.username or "guest"), unquote(parts.password or "guest"))


@dataclass
class ProbeState:
    """What the last polls found (mutated only by :class:`Prober`)."""

    last_seen: dict[str, float] = field(default_factory=dict)  # server id → epoch seconds
    last_error: dict[str, str] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)  # queue name → messages
    queues_error: str | None = None
    queues_at: float | None = None


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
    ) -> None:
        self.endpoints = dict(endpoints)
        self.ca = ca
        self.vhost, self.auth = amqp_vhost_and_auth(amqp_url)
        self.mgmt = rabbit_mgmt_url.rstrip("/")
        self.interval = interval
        self.timeout = timeout
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
        try:
            r = await http.get(url.rstrip("/") + "/healthz")
            if r.is_success:
                self.state.last_seen[server_id] = time.time()
                self.state.last_error.pop(server_id, None)
            else:
                self.state.last_error[server_id] = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            self.state.last_error[server_id] = type(exc).__name__

    async def _queues(self, http: httpx.AsyncClient) -> None:
        try:
            r = await http.get(
                f"{self.mgmt}/api/queues/{quote(self.vhost, safe='')}",
                params={"columns": "name,messages"},
                auth=self.auth,
            )
            r.raise_for_status()
            self.state.queues = {q["name"]: int(q.get("messages") or 0) for q in r.json()}
            self.state.queues_error = None
            self.state.queues_at = time.time()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self.state.queues_error = f"{type(exc).__name__}: {exc}"[:200]

    async def poll_once(self) -> None:
        http = await self._client()
        await asyncio.gather(self._queues(http), *(self._health(http, s, u) for s, u in self.endpoints.items() if u))

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a poll must never kill the loop; errors are kept in state
                await self.poll_once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="axis-admin-prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
