"""Read side of the statistics store: totals and breakdowns for ``/admin/stats``, the dashboard and ``axis stats``.

One call, :func:`query_stats`, answers everything with a handful of grouped SQL queries and returns a plain
JSON-ready dict (keys documented in the README, section "Statistics"). The directory (any object with
``.agencies: Mapping[code, Agency(code, name, server)]`` and ``.servers: Mapping[id, Server(id, kind)]``) gives
the agency/server totals and names; without one, the agencies seen in the traffic are counted instead.

Filters: ``start`` (inclusive) and ``end`` (exclusive) in UTC epoch seconds (see :func:`parse_when` for the
ISO strings the HTTP and CLI layers accept), and ``agency``: documents it sent, deliveries it received,
refusals of messages it sent; the route matrix then counts deliveries from or to it. An agency whose code changed
is counted under its current code, its traffic under former codes (the directory's ``aliases``) included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVarTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from axis.stats.store import StatsStore, accepted_table, delivered_table, refused_table

KINDS = ("dedicated", "shared")
ROUTES = tuple(f"{a}->{b}" for a in KINDS for b in KINDS)
LATENCY_BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
SERIES_STEPS = (1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)
SERIES_MAX_POINTS = 120
By = Literal["agency", "server", "day"]
BY_CHOICES: tuple[str, ...] = ("agency", "server", "day")


class _Agency(Protocol):
    code: str
    name: str
    server: str


class _Server(Protocol):
    id: str
    kind: str


class DirectoryLike(Protocol):
    @property
    def agencies(self) -> Mapping[str, Any]: ...

    @property
    def servers(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class StatsFilter:
    start: float | None = None  # UTC epoch seconds, inclusive
    end: float | None = None  # exclusive
    agency: str | None = None


def parse_when(text: str | None, *, end: bool = False) -> float | None:
    """ISO date or datetime → UTC epoch seconds. A bare date as ``end`` means the end of that day (inclusive
    day); naive datetimes are UTC. Raises ValueError on anything else."""
    if text is None or text == "":
        return None
    text = text.strip()
    if len(text) == 10:  # YYYY-MM-DD
        d = date.fromisoformat(text)
        dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
        if end:
            dt += timedelta(days=1)
        return dt.timestamp()
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _where(table: sa.Table, flt: StatsFilter, agency_col: str | None,
           codes: tuple[str, ...] = ()) -> list[sa.ColumnElement[bool]]:
    """The time filter and, with ``agency_col``, the agency filter: its code and ``codes`` (its former codes)."""
    conds: list[sa.ColumnElement[bool]] = []
    if flt.start is not None:
        conds.append(table.c.at >= flt.start)
    if flt.end is not None:
        conds.append(table.c.at < flt.end)
    if flt.agency and agency_col:
        conds.append(table.c[agency_col].in_((flt.agency, *codes)))
    return conds


def _aliases(directory: DirectoryLike | None) -> Mapping[str, str]:
    """Former code → current code (an agency's code change, :mod:`axis.config.renames`): traffic recorded under a
    former code is counted under the current one, so an agency's statistics stay continuous."""
    found = getattr(directory, "aliases", None)
    return found if isinstance(found, Mapping) else {}


def _bucket(col: sa.ColumnElement[Any], step: int, dialect: str) -> sa.ColumnElement[Any]:
    """floor(col / step) as an integer, portable (CAST truncates in SQLite, rounds in PostgreSQL)."""
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(col / step), sa.BigInteger)
    return sa.cast(col / step, sa.Integer)


_Cols = TypeVarTuple("_Cols")


async def _rows(conn: AsyncConnection, stmt: sa.Select[*_Cols]) -> list[sa.Row[*_Cols]]:
    """The rows of ``stmt``, each typed as its selected columns (so unpacking a row is checked)."""
    return list((await conn.execute(stmt)).all())


def _directory_totals(directory: DirectoryLike | None) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(agency → server kind, agency → name, agency → server id) from the directory (empty without one)."""
    kind_of: dict[str, str] = {}
    name_of: dict[str, str] = {}
    server_of: dict[str, str] = {}
    if directory is None:
        return kind_of, name_of, server_of
    servers = directory.servers
    for code, agency in directory.agencies.items():
        server = servers.get(agency.server)
        kind_of[code] = getattr(server, "kind", "shared") if server is not None else "unknown"
        name_of[code] = agency.name
        server_of[code] = agency.server
    return kind_of, name_of, server_of


def _choose_step(span: float) -> int:
    for step in SERIES_STEPS:
        if span / step <= SERIES_MAX_POINTS:
            return step
    return SERIES_STEPS[-1]


async def query_counters(store: StatsStore) -> dict[str, int]:
    """Just the totals ``{"sent", "received", "refused"}``: three ``count(*)`` in one read, a few ms at any
    volume (``/admin/counters``, for progress and drain polling; :func:`query_stats` computes everything)."""
    A, D, R = accepted_table, delivered_table, refused_table
    stmt = sa.select(
        sa.select(sa.func.count()).select_from(A).scalar_subquery(),
        sa.select(sa.func.count()).select_from(D).scalar_subquery(),
        sa.select(sa.func.count()).select_from(R).scalar_subquery(),
    )
    async with store.engine.connect() as conn:
        sent, received, refused = (await conn.execute(stmt)).one()
    return {"sent": int(sent), "received": int(received), "refused": int(refused)}


async def query_stats(
    store: StatsStore,
    directory: DirectoryLike | None = None,
    flt: StatsFilter | None = None,
    *,
    by: str = "agency",
    top: int = 20,
    limit: int = 1000,
) -> dict[str, Any]:
    """Totals and breakdowns (see the module docstring)."""
    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {', '.join(BY_CHOICES)}")
    flt = flt or StatsFilter()
    dialect = store.dialect
    A, D, R = accepted_table, delivered_table, refused_table
    alias_of = _aliases(directory)
    former = tuple(old for old, code in alias_of.items() if code == flt.agency) if flt.agency else ()
    a_where = _where(A, flt, "sender", former)
    d_where = _where(D, flt, "recipient", former)
    r_where = _where(R, flt, "sender", former)
    route_where = _where(D, StatsFilter(flt.start, flt.end), None)
    if flt.agency:
        mine = (flt.agency, *former)
        route_where.append(sa.or_(D.c.sender.in_(mine), D.c.recipient.in_(mine)))

    n = sa.func.count().label("n")
    async with store.engine.connect() as conn:
        sent_rows = await _rows(
            conn,
            sa.select(A.c.sender, A.c.sender_kind, n, sa.func.sum(A.c.size), sa.func.sum(A.c.n_recipients))
            .where(*a_where)
            .group_by(A.c.sender, A.c.sender_kind),
        )
        recv_rows = await _rows(
            conn,
            sa.select(D.c.recipient, D.c.recipient_kind, n).where(*d_where).group_by(D.c.recipient, D.c.recipient_kind),
        )
        refused_rows = await _rows(
            conn,
            sa.select(R.c.sender, R.c.server, R.c.reason, n, sa.func.sum(R.c.size))
            .where(*r_where)
            .group_by(R.c.sender, R.c.server, R.c.reason),
        )
        route_rows = await _rows(
            conn,
            sa.select(D.c.sender_kind, D.c.recipient_kind, n)
            .where(*route_where)
            .group_by(D.c.sender_kind, D.c.recipient_kind),
        )
        size_row = (
            await conn.execute(
                sa.select(
                    sa.func.coalesce(sa.func.max(A.c.size), 0),
                    sa.func.min(A.c.at),
                    sa.func.max(A.c.at),
                    sa.func.coalesce(sa.func.avg(A.c.latency_ms), 0.0),
                    sa.func.coalesce(sa.func.max(A.c.latency_ms), 0.0),
                ).where(*a_where)
            )
        ).one()
        lat_cols = []
        lower = None
        for i, upper in enumerate((*LATENCY_BUCKETS_MS, None)):
            cond: list[sa.ColumnElement[bool]] = []
            if lower is not None:
                cond.append(A.c.latency_ms > lower)
            if upper is not None:
                cond.append(A.c.latency_ms <= upper)
            expr = sa.and_(*cond) if cond else sa.true()
            lat_cols.append(sa.func.coalesce(sa.func.sum(sa.case((expr, 1), else_=0)), 0).label(f"b{i}"))
            lower = upper
        lat_row = (await conn.execute(sa.select(*lat_cols).where(*a_where))).one()

        hourly: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for idx, (table, where) in enumerate(((A, a_where), (D, d_where), (R, r_where))):
            for hour, count in await _rows(conn, sa.select(table.c.hour, n).where(*where).group_by(table.c.hour)):
                hourly[int(hour)][idx] += int(count)

        first, last = size_row[1], size_row[2]
        series_points: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        step = _choose_step((last - first) if first is not None else 0.0)
        if first is not None:
            for idx, (table, where) in enumerate(((A, a_where), (D, d_where), (R, r_where))):
                b = _bucket(table.c.at, step, dialect).label("b")
                for bucket, count in await _rows(conn, sa.select(b, n).where(*where).group_by(b)):
                    series_points[int(bucket)][idx] += int(count)

    kind_of, name_of, server_of = _directory_totals(directory)

    # --- totals
    sent_by: dict[str, int] = defaultdict(int)
    bytes_by: dict[str, int] = defaultdict(int)
    recv_by: dict[str, int] = defaultdict(int)
    refused_by_sender: dict[str, int] = defaultdict(int)
    refused_by_server: dict[str, int] = defaultdict(int)  # sender never proven: the publishing server's
    by_reason: dict[str, int] = defaultdict(int)
    seen_kind: dict[str, str] = {}
    by_kind = {k: {"sent": 0, "received": 0} for k in KINDS}
    expected = 0
    bytes_sent = 0
    def current(code: str) -> str:
        return alias_of.get(code, code)

    for sender, kind, count, size, nrec in sent_rows:
        sender = current(sender)
        sent_by[sender] += int(count)
        bytes_by[sender] += int(size or 0)
        bytes_sent += int(size or 0)
        expected += int(nrec or 0)
        seen_kind[sender] = kind
        by_kind.setdefault(kind, {"sent": 0, "received": 0})["sent"] += int(count)
    for recipient, kind, count in recv_rows:
        recipient = current(recipient)
        recv_by[recipient] += int(count)
        seen_kind.setdefault(recipient, kind)
        by_kind.setdefault(kind, {"sent": 0, "received": 0})["received"] += int(count)
    refused_bytes = 0
    for sender, server, reason, count, size in refused_rows:
        by_reason[reason] += int(count)
        refused_bytes += int(size or 0)
        if sender:
            refused_by_sender[current(sender)] += int(count)
        elif server:
            refused_by_server[server] += int(count)
    routes = dict.fromkeys(ROUTES, 0)
    for sk, rk, count in route_rows:
        routes[f"{sk}->{rk}"] = routes.get(f"{sk}->{rk}", 0) + int(count)

    sent = sum(sent_by.values())
    received = sum(recv_by.values())
    refused = sum(by_reason.values())
    if directory is not None:
        agencies = len(kind_of)
        dedicated = sum(1 for k in kind_of.values() if k == "dedicated")
        shared = sum(1 for k in kind_of.values() if k == "shared")
        servers = {k: sum(1 for s in directory.servers.values() if s.kind == k) for k in KINDS}
        source = "directory"
    else:  # offline: the agencies seen in the traffic
        agencies = len(seen_kind)
        dedicated = sum(1 for k in seen_kind.values() if k == "dedicated")
        shared = sum(1 for k in seen_kind.values() if k == "shared")
        servers = None
        source = "traffic"
        kind_of = dict(seen_kind)

    def agency_entry(code: str, **counts: int) -> dict[str, Any]:
        return {
            "agency": code,
            "name": name_of.get(code, ""),
            "kind": kind_of.get(code, seen_kind.get(code, "")),
            **counts,
        }

    top_senders = [agency_entry(c, sent=v) for c, v in sorted(sent_by.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    top_receivers = [
        agency_entry(c, received=v) for c, v in sorted(recv_by.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    ]

    hours = sorted(hourly)
    days: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for h in hours:
        for i in range(3):
            days[h // 24][i] += hourly[h][i]

    def point(ts: float, counts: list[int]) -> dict[str, Any]:
        return {"t": iso(ts), "sent": counts[0], "received": counts[1], "refused": counts[2]}

    # --- breakdown by the requested dimension
    breakdown: list[dict[str, Any]]
    if by == "agency":
        codes = set(sent_by) | set(recv_by) | set(refused_by_sender)
        if directory is not None and not flt.agency:
            codes |= set(kind_of)
        elif flt.agency:
            codes = {flt.agency}
        breakdown = [
            {
                "key": c,
                "name": name_of.get(c, ""),
                "kind": kind_of.get(c, seen_kind.get(c, "")),
                "server": server_of.get(c, ""),
                "sent": sent_by.get(c, 0),
                "received": recv_by.get(c, 0),
                "refused": refused_by_sender.get(c, 0),
            }
            for c in codes
        ]
        breakdown.sort(key=lambda r: (-(r["sent"] + r["received"]), r["key"]))
    elif by == "server":
        per: dict[str, dict[str, Any]] = {}
        for c in set(sent_by) | set(recv_by) | set(refused_by_sender) | set(server_of):
            if flt.agency and c != flt.agency:
                continue
            sid = server_of.get(c) or f"({kind_of.get(c, seen_kind.get(c, 'unknown'))})"
            row = per.setdefault(
                sid,
                {
                    "key": sid,
                    "kind": kind_of.get(c, seen_kind.get(c, "")),
                    "agencies": 0,
                    "sent": 0,
                    "received": 0,
                    "refused": 0,
                },
            )
            if c in server_of or c in sent_by or c in recv_by:
                row["agencies"] += 1
            row["sent"] += sent_by.get(c, 0)
            row["received"] += recv_by.get(c, 0)
            row["refused"] += refused_by_sender.get(c, 0)
        if not flt.agency:
            for sid, count in refused_by_server.items():
                per.setdefault(sid, {"key": sid, "kind": "", "agencies": 0, "sent": 0, "received": 0,
                                     "refused": 0})["refused"] += count
        breakdown = sorted(per.values(), key=lambda r: (-(r["sent"] + r["received"]), r["key"]))
    else:
        breakdown = [
            {"key": iso(d * 86400)[:10], "sent": v[0], "received": v[1], "refused": v[2]}
            for d, v in sorted(days.items())
        ]

    latency_buckets = [
        {"le": le if le is not None else "+Inf", "count": int(lat_row[i])}
        for i, le in enumerate((*LATENCY_BUCKETS_MS, None))
    ]
    return {
        "agencies": agencies,
        "dedicated": dedicated,
        "shared": shared,
        "sent": sent,
        "received": received,
        "refused": refused,
        "expected": expected,
        "pending": max(expected - received, 0),
        "servers": servers,
        "agencies_source": source,
        "filters": {
            "from": iso(flt.start) if flt.start is not None else None,
            "to": iso(flt.end) if flt.end is not None else None,
            "agency": flt.agency,
            "by": by,
        },
        "first": iso(first) if first is not None else None,
        "last": iso(last) if last is not None else None,
        "sizes": {
            "bytes_sent": bytes_sent,
            "mean_bytes": (bytes_sent / sent) if sent else 0.0,
            "max_bytes": int(size_row[0] or 0),
            "bytes_refused": refused_bytes,
        },
        "by_kind": by_kind,
        "routes": routes,
        "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "top_senders": top_senders,
        "top_receivers": top_receivers,
        "latency": {
            "unit": "ms",
            "count": sent,
            "mean_ms": float(size_row[3] or 0.0),
            "max_ms": float(size_row[4] or 0.0),
            "buckets": latency_buckets,
        },
        "hourly": [point(h * 3600, hourly[h]) for h in hours],
        "daily": [point(d * 86400, v) for d, v in sorted(days.items())],
        "series": {"step": step, "points": [point(b * step, series_points[b]) for b in sorted(series_points)]},
        "breakdown": breakdown[:limit],
    }
