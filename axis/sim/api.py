"""The REST calls the simulator makes (contract section 4), over the keep-alive pool of :mod:`axis.sim.http`.

A thin adapter, tolerant where the contract allows variants (a JSON list or ``{"items": [...]}``), strict
elsewhere. Transient failures (connection refused/reset, timeouts, 429, 502/503/504; 500 too for idempotent
calls) are retried with a bounded backoff; anything else is returned to the caller to judge.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from axis.core.tlsconfig import CLIENT_AUTH_OFF, client_context
from axis.sim.connections import Connections
from axis.sim.http import Pool, TransportError

RETRY_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when not JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def reason(self) -> str | None:
        """The reason code of a problem+json answer (contract section 4)."""
        return self.body.get("reason") if isinstance(self.body, dict) else None


def new_client(concurrency: int, conns: Connections | None = None) -> Pool:
    """The simulator's connection pool (the callers bound concurrency; ``concurrency`` caps idle connections);
    HTTPS servers are checked against connections.json's ``ca``."""
    ctx = client_context(conns.ca) if conns is not None and conns.ca else None
    return Pool(timeout=120.0, connect_timeout=10.0, max_idle=max(1, concurrency), ssl_context=ctx)


def _items(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("items", "documents", "statuses"):
            if isinstance(body.get(key), list):
                return body[key]
    return []


class Api:
    """``conns``: with it, an agency whose server asks for client certificates (connections.json's ``client_auth``)
    presents its own (``tls_cert``/``tls_key``): one SSLContext per such agency, made on its first request."""

    def __init__(self, pool: Pool, conns: Connections | None = None, *, retries: int = 8) -> None:
        self.pool = pool
        self.retries = retries
        self._no_counters = False
        self._mtls = {a.token: a for a in (conns.agencies.values() if conns is not None else ())
                      if a.client_auth != CLIENT_AUTH_OFF and a.tls_cert and a.tls_key}
        self._ca = conns.ca if conns is not None else None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _context(self, token: str | None) -> ssl.SSLContext | None:
        """The agency's own SSLContext (its client certificate) when its server asks for one, else None (the
        pool's)."""
        if not token or token not in self._mtls:
            return None
        ctx = self._contexts.get(token)
        if ctx is None:
            a = self._mtls[token]
            ctx = self._contexts[token] = client_context(self._ca, a.tls_cert, a.tls_key)
        return ctx

    async def call(self, method: str, url: str, token: str | None, *, idempotent: bool = False, bearer: bool = True,
                   **kw: Any) -> Answer:
        """One request with bounded retries; ``idempotent`` also retries HTTP 500 (safe for a submission: the
        axis keeps one delivery per (sender, DocumentId) and counts a document once). ``bearer=False``: the token
        only picks the agency's TLS client certificate (the VPCP SDK's requests carry a MAC instead)."""
        retry = RETRY_STATUS | {500} if idempotent else RETRY_STATUS
        headers = dict(kw.pop("headers", {}) or {})
        if token and bearer:
            headers["Authorization"] = f"Bearer {token}"
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                r = await self.pool.request(method, url, headers=headers, ssl_context=self._context(token), **kw)
            except TransportError:
                if attempt == self.retries:
                    raise
            else:
                if r.status not in retry or attempt == self.retries:
                    try:
                        body: Any = r.json()
                    except ValueError:
                        body = r.text
                    return Answer(r.status, body)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
        raise AssertionError("unreachable")

    async def submit(self, endpoint: str, token: str, data: bytes) -> Answer:
        return await self.call(
            "POST",
            f"{endpoint}/v1/documents",
            token,
            idempotent=True,
            content=data,
            headers={"Content-Type": "application/xml"},
        )

    async def inbox(self, endpoint: str, token: str, *, page: int = 1000) -> list[dict[str, Any]]:
        """Every document in the caller's inbox, paging with ``limit``/``offset`` until a short page."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            a = await self.call("GET", f"{endpoint}/v1/inbox", token, params={"limit": page, "offset": offset})
            if not a.ok:
                raise RuntimeError(f"GET {endpoint}/v1/inbox: HTTP {a.status}: {a.body}")
            items = _items(a.body)
            out.extend(items)
            nxt = a.body.get("next_offset", a.body.get("next")) if isinstance(a.body, dict) else None
            if nxt is None and isinstance(a.body, dict) and "total" in a.body:
                nxt = offset + len(items) if offset + len(items) < int(a.body["total"]) else None
            if not items or (len(items) < page and nxt is None):
                return out
            offset += len(items)

    async def post_status(self, endpoint: str, token: str, rid: str, code: str, description: str, *,
                          sender: str | None = None, document_id: str | None = None) -> Answer:
        """A status about received document ``rid`` (``sender``'s ``document_id``: what a status edXML names, for
        the agencies that speak the VPCP SDK's protocol, axis.sim.vxp)."""
        # a status repeated after a 500 is harmless: the sender sees the same (from, code) again
        return await self.call(
            "POST",
            f"{endpoint}/v1/documents/{rid}/status",
            token,
            idempotent=True,
            json={"code": code, "description": description},
        )

    async def statuses(self, endpoint: str, token: str, rid: str) -> list[dict[str, Any]]:
        a = await self.call("GET", f"{endpoint}/v1/documents/{rid}/status", token)
        return _items(a.body) if a.ok else []

    async def counters(self, admin_url: str, token: str | None) -> dict[str, Any]:
        """``{"sent", "received", "refused"}`` from ``GET /admin/counters`` (three counts, cheap); an axis without
        it (404) is asked ``/admin/stats`` (computes everything: seconds at full volume) from then on."""
        if not self._no_counters:
            a = await self.call("GET", f"{admin_url}/admin/counters", token)
            if a.ok and isinstance(a.body, dict):
                return a.body
            if a.status != 404:
                raise RuntimeError(f"GET {admin_url}/admin/counters: HTTP {a.status}: {a.body}")
            self._no_counters = True
        return await self.stats(admin_url, token)

    async def stats(self, admin_url: str, token: str | None) -> dict[str, Any]:
        a = await self.call("GET", f"{admin_url}/admin/stats", token)
        if not a.ok or not isinstance(a.body, dict):
            raise RuntimeError(f"GET {admin_url}/admin/stats: HTTP {a.status}: {a.body}")
        return a.body

    async def log_counts(self, admin_url: str, token: str | None) -> dict[str, int] | None:
        """Leaves per event type in the evidence log (``GET /admin/log/counts``); None for an axis without one."""
        a = await self.call("GET", f"{admin_url}/admin/log/counts", token)
        if a.status in (404, 503):
            return None
        if not a.ok or not isinstance(a.body, dict):
            raise RuntimeError(f"GET {admin_url}/admin/log/counts: HTTP {a.status}: {a.body}")
        return {str(k): int(v) for k, v in a.body.items()}

    async def healthy(self, url: str) -> bool:
        try:
            r = await self.pool.request("GET", f"{url}/healthz", timeout=2.0)
        except (TransportError, ValueError):
            return False
        return r.status == 200

    async def move(self, admin_url: str, token: str | None, code: str, server: str) -> Answer:
        """Migration: ask the axis to re-point ``code`` to ``server`` (needs core's admin move endpoint)."""
        return await self.call("POST", f"{admin_url}/admin/agencies/{code}/move", token, json={"server": server})
