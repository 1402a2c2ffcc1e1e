"""Uncollected documents (contract section 7): ``GET /admin/uncollected?older_than=SECONDS`` — deliveries stored in
an agency's inbox and not acked yet, oldest first, from every endpoint server.

Where the list comes from: the endpoint servers' inbox stores, read directly by the admin app (each server's
``inbox_url`` in config.yaml; servers sharing one database are read once). Chosen over the alternatives because
the inbox store is the one place that knows a delivery's inbox ``id`` (what agency software acks) and whether it
was acked; the admin app already reads the statistics and evidence stores the same way; and it keeps working
while a server process is down — when its documents most need reminding. Rejected: each server listing its own
over HTTP (the admin app holds only the admin token's hash, so it has no credential to call them with, and a
server down would hide its backlog); the evidence log's stored-minus-acked leaves (leaves carry no inbox id,
the stored leaf lags the inbox by the status 01's round trip, and retention archives old leaves).

Items: ``{"id", "document_id", "sender", "recipient", "received_at", "server"}``; filters ``agency`` (the
recipient) and ``server``; paged ``?limit=&offset=`` → ``{"items", "next_offset"}``. The reminders
(:mod:`axis.admin.reminders`) read the same source.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from axis.core.reasons import Reason
from axis.core.reminders import Waiting
from axis.ops.entrypoints import endpoints_entry

MAX_PAGE = 1000


def _problem(status: int, detail: str, reason: Reason | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": "Bad Request" if status == 400 else "error",
                            "status": status, "detail": detail}
    if reason is not None:
        body["reason"] = reason.value
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database)."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    return None


class UncollectedSource:
    """The inbox stores of the endpoint servers, opened once each (lazily, through the ``axis.endpoints`` entry
    point ``open_inbox``: axis never imports the endpoint package) and read for unacked deliveries."""

    def __init__(self, stores: Mapping[str, tuple[str, ...]], server_of: Mapping[str, str] | None = None) -> None:
        #: inbox URL → the servers that keep their inbox there
        self.stores = dict(stores)
        #: agency → its server (for stores shared by several servers); else the store's only server
        self.server_of = dict(server_of or {})
        self._open: dict[str, Any] = {}  # URL → endpoints.inbox.InboxStore
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: Any) -> UncollectedSource:
        stores: dict[str, list[str]] = {}
        for server in config.servers:
            stores.setdefault(server.inbox_url, []).append(server.id)
        return cls({url: tuple(ids) for url, ids in stores.items()},
                   {code: a.server for code, a in config.directory.agencies.items()})

    async def _store(self, url: str) -> Any:
        async with self._lock:
            if url not in self._open:
                path = _sqlite_file(url)
                if path is not None and not path.exists():
                    return None  # the server never ran: nothing delivered there
                self._open[url] = await endpoints_entry("open_inbox")(url)
            return self._open[url]

    async def page(self, older_than: float, *, agency: str | None = None, server: str | None = None,
                   limit: int = 100, offset: int = 0, now: float | None = None) -> tuple[list[Waiting], bool]:
        """Deliveries not acked for ``older_than`` seconds, oldest first, ``offset`` then ``limit`` of them, and
        whether more follow."""
        before = (time.time() if now is None else now) - older_than
        urls = [url for url, ids in self.stores.items() if server is None or server in ids]
        if len(urls) == 1 and server is None:  # one store: paged by the database itself
            found = await self._read(urls[0], before, agency, limit + 1, offset)
            return found[:limit], len(found) > limit
        need = offset + limit + 1
        lists = [await self._matching(url, before, agency, server, need) for url in urls]
        merged = list(heapq.merge(*lists, key=lambda w: (w.received_at, w.server, w.id)))
        return merged[offset:offset + limit], len(merged) > offset + limit

    async def _matching(self, url: str, before: float, agency: str | None, server: str | None, need: int
                        ) -> list[Waiting]:
        """The first ``need`` rows of one store (of ``server`` when given: a store may be shared)."""
        if server is None or len(self.stores[url]) == 1:
            return await self._read(url, before, agency, need, 0)
        out: list[Waiting] = []
        offset = 0
        while len(out) < need:
            rows = await self._read(url, before, agency, MAX_PAGE, offset)
            out += [w for w in rows if w.server == server]
            if len(rows) < MAX_PAGE:
                break
            offset += len(rows)
        return out[:need]

    async def _read(self, url: str, before: float, agency: str | None, limit: int, offset: int) -> list[Waiting]:
        store = await self._store(url)
        if store is None:
            return []
        only = self.stores[url][0] if len(self.stores[url]) == 1 else ""
        rows = await store.uncollected(before, agency=agency, limit=limit, offset=offset)
        return [Waiting(r["id"], r["document_id"], r["sender"], r["recipient"], float(r["received_ts"]),
                        only or self.server_of.get(r["recipient"], "")) for r in rows]

    async def all(self, older_than: float, *, now: float | None = None, page: int = MAX_PAGE) -> list[Waiting]:
        """Every delivery not acked for ``older_than`` seconds (read page by page)."""
        out: list[Waiting] = []
        at = time.time() if now is None else now
        for url in self.stores:
            offset = 0
            while True:
                rows = await self._read(url, at - older_than, None, page, offset)
                out += rows
                if len(rows) < page:
                    break
                offset += len(rows)
        out.sort(key=lambda w: (w.received_at, w.server, w.id))
        return out

    async def close(self) -> None:
        async with self._lock:
            for store in self._open.values():
                await store.close()
            self._open.clear()


def item_json(w: Waiting) -> dict[str, Any]:
    from axis.core.reminders import iso

    return {"id": w.id, "document_id": w.document_id, "sender": w.sender, "recipient": w.recipient,
            "received_at": iso(w.received_at), "server": w.server}


def _number(value: str | None, default: float) -> float:
    if value is None or value == "":
        return default
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError
    return number


class _Gauges(Collector):
    def __init__(self, api: UncollectedApi) -> None:
        self.api = api

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last = self.api.last_count
        if last is None:
            return
        count, oldest, after = last
        g = GaugeMetricFamily("axis_uncollected_documents", "Deliveries not acked longer than reminders.after, "
                              "at the last reminder round", labels=["after_seconds"])
        g.add_metric([str(int(after))], count)
        yield g
        o = GaugeMetricFamily("axis_uncollected_oldest_seconds", "Age of the oldest delivery not acked, at the last "
                              "reminder round (0: none)")
        o.add_metric([], oldest)
        yield o


def file_stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size)


class UncollectedApi:
    """``GET /admin/uncollected`` and the uncollected gauges (fed by the reminder rounds, :meth:`observe`). The
    servers and their stores follow config.yaml (``path``): re-read when the file changed (an agency or a server
    added, a move), the stores still named kept open."""

    def __init__(self, source: UncollectedSource | None, path: Path | None = None) -> None:
        self.source = source
        self.path = path
        self._stamp = file_stamp(path)
        self._reload = asyncio.Lock()
        self.last_count: tuple[int, float, float] | None = None

    async def current(self) -> UncollectedSource | None:
        """The source for the configuration file as it is now."""
        stamp = file_stamp(self.path)
        if self.path is None or stamp == self._stamp or stamp is None:
            return self.source
        async with self._reload:
            if stamp == self._stamp:
                return self.source
            from axis.config import ConfigError, load_config

            try:
                config = await asyncio.to_thread(load_config, self.path)
            except ConfigError:
                return self.source  # a file being edited: the previous servers until it loads
            new = UncollectedSource.from_config(config)
            old, self.source, self._stamp = self.source, new, stamp
            if old is not None:
                async with old._lock:
                    for url, store in old._open.items():
                        if url in new.stores:
                            new._open[url] = store
                        else:
                            await store.close()
                    old._open.clear()
            return new

    @classmethod
    def for_settings(cls, settings: Any) -> UncollectedApi:
        """From the admin settings: the configuration file's servers (no file: the route answers 503)."""
        path = getattr(settings, "config_path", None)
        if path is None:
            return cls(None)
        from axis.config import load_config

        return cls(UncollectedSource.from_config(load_config(path)), Path(path))

    def observe(self, waiting: list[Waiting], now: float, after: float) -> None:
        oldest = now - waiting[0].received_at if waiting else 0.0
        self.last_count = (len(waiting), oldest, after)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_Gauges(self))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self.source is not None:
            await self.source.close()

    def install(self, app: FastAPI) -> None:
        api = self

        @app.get("/admin/uncollected", response_model=None)
        async def uncollected(request: Request) -> Response:
            q = request.query_params
            try:
                older_than = _number(q.get("older_than"), 0.0)
                limit = max(1, min(int(_number(q.get("limit"), 100)), MAX_PAGE))
                offset = int(_number(q.get("offset"), 0))
            except ValueError:
                return _problem(400, "older_than, limit and offset must be non-negative numbers",
                                Reason.SCHEMA_INVALID)
            source = await api.current()
            if source is None:
                return _problem(503, "no configuration file: the inbox stores are unknown")
            items, more = await source.page(older_than, agency=q.get("agency") or None,
                                                server=q.get("server") or None, limit=limit, offset=offset)
            return JSONResponse({"items": [item_json(w) for w in items],
                                 "next_offset": offset + len(items) if more else None})
