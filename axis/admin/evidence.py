"""The admin app's view of the evidence log (contract section 5): search, per-document traces, the latest tree
head, and a monitor that checks every new tree head against the previous one.

Routes (admin token, as every ``/admin`` path; RFC 9457 problems otherwise):

- ``GET /admin/documents?sender=&recipient=&document_id=&from=&to=&type=&limit=&offset=`` — the leaves matching
  every filter given, in log order: ``{"items": [{"leaf_index", "v", "type", "at", "sender", "document_id", …leaf
  fields, "time"}], "next_offset": N|null}``. ``recipient`` matches the leaves whose ``agency`` is that agency
  (stored, acked, a status it sent); ``from``/``to`` are ISO 8601 dates or datetimes (UTC when naive; a bare
  ``to`` date includes that day); ``limit`` 1..1000 (default 100). ``time`` is ``at`` in ISO 8601 UTC.
- ``GET /admin/documents/{sender}/{document_id}/trace`` — ``{"document_id", "sender", "events": [...]}`` (same
  items) in leaf order; 404 when the log holds nothing of it. A DocumentId holds ``/``: send it percent-encoded
  or as is, both route here.
- ``GET /admin/log/sth`` — the latest signed tree head (404 before the first one is signed).
- ``GET /admin/log/counts`` — leaves per event type and ``tree_size``.
- ``GET /admin/log/status`` — the monitor's state: ``{"consistent", "tree_size", "sth", "checked_at", "gap",
  "problem", "error", "checks"}``.

**The monitor.** Every ``log_check_seconds`` it reads the latest tree head; when it is new, it checks its
signature and certificate against the axis CA (:func:`axis.core.evidence.verify_sth`, the CA's current CRL) and
that it extends the last good tree head it saw: a consistency proof from the store, checked with
:func:`axis.core.evidence.check_consistency` against both signed roots (a log that shrank, or whose new root does
not extend the old one, is inconsistent). An inconsistency is a fact about the log that no later tree head
undoes: the alarm stays until the admin app restarts (and the problem is logged). The Prometheus gauges
``axis_log_consistent`` (1/0) and ``axis_log_tree_size`` (the last good tree head's size) are on ``/metrics``;
the dashboard shows the alarm. A store that cannot be read is an ``error``, not an inconsistency. When leaves were
archived and dropped (``axis log archive --drop``) past the last tree head the monitor checked, the store can no
longer prove the link between the two heads: that is a ``gap`` (the new head's signature is still checked; the
link is in the archive segment, ``axis log verify``), noted in the status, never a false alarm.

The admin app only reads the log (the log writer, :mod:`axis.evidence.writer`, is its one writer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from axis.admin.background import stop_task
from axis.core.evidence import (
    EVENT_TYPES,
    SignedTreeHead,
    check_consistency,
    consistency_json,
    event_from_leaf,
    verify_sth,
)
from axis.core.reasons import Reason, Refusal
from axis.log.store import LogStore
from axis.stats.query import iso, parse_when

log = logging.getLogger("axis.admin.evidence")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
CONSISTENT = "axis_log_consistent"
TREE_SIZE = "axis_log_tree_size"


def _problem(status: int, title: str, detail: str, reason: Reason | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if reason is not None:
        body["reason"] = reason.value
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _json(obj: Any) -> Response:
    return Response(orjson.dumps(obj), media_type="application/json")


def leaf_item(index: int, leaf: bytes) -> dict[str, Any]:
    """One leaf as the API shows it: ``leaf_index``, the leaf's fields, ``time`` (ISO 8601 UTC of ``at``)."""
    try:
        fields = event_from_leaf(leaf).as_dict()
    except Refusal as exc:  # the store's own check (axis log verify) reports it; show what is there
        return {"leaf_index": index, "type": None, "invalid": exc.detail}
    return {"leaf_index": index, **fields, "time": iso(fields["at"] / 1000)}


@dataclass
class MonitorState:
    consistent: bool = True
    last_good: SignedTreeHead | None = None
    last_seen: SignedTreeHead | None = None
    problem: str | None = None
    error: str | None = None
    gap: str | None = None
    checked_at: float | None = None
    checks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "tree_size": self.last_good.tree_size if self.last_good else None,
            "sth": self.last_good.to_json() if self.last_good else None,
            "checked_at": iso(self.checked_at) if self.checked_at else None,
            "problem": self.problem,
            "error": self.error,
            "gap": self.gap,
            "checks": self.checks,
        }


class _LogCollector(Collector):
    def __init__(self, state: MonitorState) -> None:
        self.state = state

    def collect(self) -> Iterable[Any]:
        s = self.state
        yield GaugeMetricFamily(CONSISTENT, "1 while every tree head seen extends the previous one and verifies, "
                                            "else 0", value=1 if s.consistent else 0)
        yield GaugeMetricFamily(TREE_SIZE, "Leaves in the evidence log (the last verified tree head)",
                                value=s.last_good.tree_size if s.last_good else 0)


class EvidenceApi:
    """The evidence routes and the tree-head monitor of one admin app (``url`` None: the routes answer 503)."""

    def __init__(self, url: str | None, ca_path: Path | None = None, crl_path: Path | None = None,
                 interval: float = 5.0) -> None:
        self.url = url
        self.ca_path, self.crl_path = ca_path, crl_path
        self.interval = interval
        self.state = MonitorState()
        self._store: LogStore | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- the store ------------------------------------------------------------------------------------------------

    async def store(self) -> LogStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    if self.url is None:
                        raise LookupError("the evidence log is not configured (evidence.url)")
                    self._store = await LogStore.open(self.url)
        return self._store

    async def start(self) -> None:
        if self.url is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="axis-log-monitor")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._store is not None:
            await self._store.close()
            self._store = None

    # -- the monitor ----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    def _trust(self) -> tuple[list[bytes], bytes | None] | None:
        if self.ca_path is None:
            return None
        ca = self.ca_path.read_bytes()
        crl = self.crl_path.read_bytes() if self.crl_path is not None and self.crl_path.exists() else None
        return [ca], crl

    def _inconsistent(self, detail: str) -> None:
        if self.state.consistent:
            log.error("evidence log INCONSISTENT: %s", detail)
        self.state.consistent = False
        self.state.problem = self.state.problem or detail

    async def check(self) -> None:
        """One round of the monitor (module docstring)."""
        s = self.state
        try:
            store = await self.store()
            sth = await store.latest_sth()
            s.checked_at, s.checks, s.error = time.time(), s.checks + 1, None
            if sth is None or sth == s.last_seen:
                return
            s.last_seen = sth
            name = f"tree head {sth.tree_size}@{sth.timestamp}"
            trust = await asyncio.to_thread(self._trust)
            if trust is not None:
                try:
                    verify_sth(sth, trust[0], trust[1])
                except Refusal as exc:
                    self._inconsistent(f"{name}: {exc.detail}")
                    return
            prev = s.last_good
            if prev is not None:
                if sth.tree_size < prev.tree_size:
                    self._inconsistent(f"{name}: the log shrank from {prev.tree_size} leaves")
                    return
                archived = await store.archived_upto()
                if prev.tree_size < archived:
                    s.gap = (f"{name}: the leaves below {archived} were archived since tree head "
                             f"{prev.tree_size}@{prev.timestamp}; the link between the two is in the archive segment")
                    log.warning("evidence log monitor: %s", s.gap)
                    s.last_good = sth
                    return
                try:
                    path = await store.consistency(prev.tree_size, sth.tree_size)
                    check_consistency(consistency_json(prev.tree_size, sth.tree_size, path), prev, sth)
                except (Refusal, ValueError) as exc:
                    self._inconsistent(f"{name} does not extend tree head {prev.tree_size}@{prev.timestamp}: "
                                       f"{getattr(exc, 'detail', exc)}")
                    return
            s.last_good = sth
        except Exception as exc:  # the store is down or unreadable: not a fact about the log
            s.error = f"{type(exc).__name__}: {exc}"
            log.warning("evidence log monitor: %s", s.error)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_LogCollector(self.state))

    # -- the routes -----------------------------------------------------------------------------------------------

    def install(self, app: FastAPI) -> None:
        api = self

        async def opened() -> LogStore | JSONResponse:
            try:
                return await api.store()
            except LookupError as exc:
                return _problem(503, "Service Unavailable", str(exc))

        @app.get("/admin/documents", response_model=None)
        async def search(request: Request) -> Response:
            q = request.query_params
            try:
                limit = int(q.get("limit") or DEFAULT_LIMIT)
                offset = int(q.get("offset") or 0)
            except ValueError:
                return _problem(400, "Bad Request", "limit and offset must be integers")
            if not 1 <= limit <= MAX_LIMIT or offset < 0:
                return _problem(400, "Bad Request", f"limit must be in 1..{MAX_LIMIT} and offset at least 0")
            kind = q.get("type") or None
            if kind is not None and kind not in EVENT_TYPES:
                return _problem(400, "Bad Request", f"type must be one of {', '.join(EVENT_TYPES)}")
            try:
                start = parse_when(q.get("from"))
                end = parse_when(q.get("to"), end=True)
            except ValueError as exc:
                return _problem(400, "Bad Request", f"from/to must be ISO dates or datetimes: {exc}")
            store = await opened()
            if isinstance(store, JSONResponse):
                return store
            rows = await store.search(
                sender=q.get("sender") or None, recipient=q.get("recipient") or None,
                document_id=q.get("document_id") or None,
                start_ms=None if start is None else int(start * 1000), end_ms=None if end is None else int(end * 1000),
                type=kind, limit=limit + 1, offset=offset)
            items = [leaf_item(i, leaf) for i, leaf in rows[:limit]]
            return _json({"items": items, "next_offset": offset + limit if len(rows) > limit else None})

        @app.get("/admin/documents/{sender}/{document_id:path}/trace", response_model=None)
        async def trace(sender: str, document_id: str) -> Response:
            store = await opened()
            if isinstance(store, JSONResponse):
                return store
            rows = await store.leaves_of(sender, document_id)
            if not rows:
                return _problem(404, "Not Found", f"the log holds nothing of document {document_id!r} from "
                                                  f"{sender!r}")
            return _json({"document_id": document_id, "sender": sender,
                          "events": [leaf_item(i, leaf) for i, leaf in rows]})

        @app.get("/admin/log/sth", response_model=None)
        async def latest_sth() -> Response:
            store = await opened()
            if isinstance(store, JSONResponse):
                return store
            sth = await store.latest_sth()
            if sth is None:
                return _problem(404, "Not Found", "no tree head has been signed yet")
            return _json(sth.to_json())

        @app.get("/admin/log/counts", response_model=None)
        async def counts() -> Response:
            """Leaves per event type and the log's size (the simulator checks them against the counters)."""
            store = await opened()
            if isinstance(store, JSONResponse):
                return store
            return _json({**await store.counts(), "tree_size": await store.size()})

        @app.get("/admin/log/status", response_model=None)
        async def status() -> Response:
            if api.url is None:
                return _problem(503, "Service Unavailable", "the evidence log is not configured (evidence.url)")
            return _json(api.state.as_dict())
