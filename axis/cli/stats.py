"""`axis stats`: traffic statistics from a running admin app or, offline, straight from a statistics store.

Where the numbers come from, first match wins:
1. ``--db URL`` — read the store directly (``sqlite:///PATH`` or ``postgresql://…``); ``--config FILE`` adds the
   directory (agency names, dedicated/shared totals), else the agencies seen in the traffic are counted;
2. ``--admin URL`` (or env ``AXIS_ADMIN_URL``) with ``--token`` (or env ``AXIS_ADMIN_TOKEN``);
3. ``./axis-work/connections.json`` (written by ``axis up``/``axis demo``): its ``admin.url`` and ``admin.token``.

An ``https://`` admin app is checked against ``--ca`` (env ``AXIS_CA``), else connections.json's ``ca`` when the URL
is its admin app's.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.table import Table

from axis.cli._common import (
    EXIT_REFUSED,
    connection_tls,
    console,
    err_console,
    fail,
    print_json,
    read_connections,
    safe,
    tls_problem,
    usage_error,
)
from axis.client import tls_verify
from axis.core.reasons import Reason, Refusal

BY_CHOICES = ("agency", "server", "day")


def _admin_from_connections() -> tuple[str, str | None]:
    """The admin URL and token of ./axis-work/connections.json; a usage error (exit 2) naming the file when it is
    missing, unreadable, or names no admin URL."""
    raw, path = read_connections(None, alternative="--admin URL or --db")
    admin = raw.get("admin")
    url, token = (admin.get("url"), admin.get("token")) if isinstance(admin, dict) else (None, None)
    if not isinstance(url, str) or not url:
        usage_error(f"{path} names no admin URL (pass --admin URL or --db)")
    return url, token if isinstance(token, str) else None


def _params(by: str, since: str | None, until: str | None, agency: str | None) -> dict[str, str]:
    params = {"by": by}
    if since:
        params["from"] = since
    if until:
        params["to"] = until
    if agency:
        params["agency"] = agency
    return params


def _fetch(admin: str, token: str | None, params: dict[str, str], as_json: bool, ca: Path | None = None
           ) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    tls = connection_tls(admin, ca=ca)
    try:
        r = httpx.get(admin.rstrip("/") + "/admin/stats", params=params, headers=headers, timeout=30, trust_env=False,
                      verify=tls_verify(tls["ca"]))
    except httpx.HTTPError as exc:
        _error(f"cannot reach the admin app at {admin}: {type(exc).__name__}: {tls_problem(exc)}", as_json)
    if r.status_code == 401:
        fail(Refusal(Reason.UNAUTHORIZED, "missing or wrong admin token (--token)"), as_json=as_json)
    if r.status_code != 200:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        _error(f"admin app answered {r.status_code}: {detail}", as_json)
    result: dict[str, Any] = r.json()
    return result


async def _query_db(url: str, config: Path | None, params: dict[str, str], top: int) -> dict[str, Any]:
    from axis.stats.query import StatsFilter, parse_when, query_stats
    from axis.stats.store import StatsStore

    directory = None
    if config is not None:
        from axis.config import load_config

        directory = load_config(config).directory
    flt = StatsFilter(parse_when(params.get("from")), parse_when(params.get("to"), end=True), params.get("agency"))
    store = await StatsStore.open(url, create=False)
    try:
        return await query_stats(store, directory, flt, by=params["by"], top=top)
    finally:
        await store.close()


def _error(message: str, as_json: bool) -> None:
    if as_json:
        print_json({"ok": False, "reason": None, "detail": message})
    else:
        err_console.print(f"[bold red]error:[/] {safe(message, lines=True)}")
    raise typer.Exit(EXIT_REFUSED)


def headline(s: dict[str, Any]) -> str:
    """The report's own terms: "95 agencies connected, 68 dedicated, 27 shared; 28,024 documents sent, …"."""
    return (
        f"{_n(s.get('agencies'))} agencies connected, {_n(s.get('dedicated'))} dedicated, {_n(s.get('shared'))} "
        f"shared; {_n(s.get('sent'))} documents sent, {_n(s.get('received'))} received, {_n(s.get('refused'))} refused"
    )


def _n(value: Any) -> str:
    """A count for the table: ``1,234``; anything else the admin app answered (it is a server's answer, and
    ``--admin`` may point anywhere) as inert text (``safe``), never as markup or terminal controls."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else safe(value)


COLUMNS = {
    "agency": [
        ("key", "agency"),
        ("name", "name"),
        ("kind", "kind"),
        ("server", "server"),
        ("sent", "sent"),
        ("received", "received"),
        ("refused", "refused"),
    ],
    "server": [
        ("key", "server"),
        ("kind", "kind"),
        ("agencies", "agencies"),
        ("sent", "sent"),
        ("received", "received"),
        ("refused", "refused"),
    ],
    "day": [("key", "day"), ("sent", "sent"), ("received", "received"), ("refused", "refused")],
}


def _print_table(s: dict[str, Any], by: str, rows_limit: int) -> None:
    console.print(f"[bold]{headline(s)}[/]")
    window = s.get("filters") or {}
    bits = [f"{k} {safe(window[k])}" for k in ("from", "to", "agency") if window.get(k)]
    if bits:
        console.print("[dim]" + ", ".join(bits) + "[/]")
    if s.get("pending"):
        console.print(f"[dim]{_n(s['pending'])} deliveries pending[/]")
    table = Table(title=f"by {by}", show_lines=False)
    rows = s.get("breakdown") or []
    columns = [(k, t) for k, t in COLUMNS[by] if k not in ("name", "server") or any(r.get(k) for r in rows)]
    for _, title in columns:
        numeric = title in ("sent", "received", "refused", "agencies")
        table.add_column(title, justify="right" if numeric else "left")
    for row in rows[:rows_limit]:
        table.add_row(*(_n(row.get(k)) for k, _ in columns))
    if len(rows) > rows_limit:
        table.caption = f"{len(rows) - rows_limit:,} more rows (use --csv or --json for all)"
    console.print(table)
    routes = s.get("routes") or {}
    if any(routes.values()):
        matrix = Table(title="deliveries by route (server kinds)")
        matrix.add_column("from \\ to")
        matrix.add_column("dedicated", justify="right")
        matrix.add_column("shared", justify="right")
        for a in ("dedicated", "shared"):
            matrix.add_row(a, _n(routes.get(f"{a}->dedicated", 0)), _n(routes.get(f"{a}->shared", 0)))
        console.print(matrix)
    reasons = s.get("by_reason") or {}
    if reasons:
        rt = Table(title="refusals by reason")
        rt.add_column("reason")
        rt.add_column("refused", justify="right")
        for reason, n in reasons.items():
            rt.add_row(safe(reason), _n(n))
        console.print(rt)


def _print_csv(s: dict[str, Any], by: str) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([title for _, title in COLUMNS[by]])
    for row in s.get("breakdown") or []:
        writer.writerow([row.get(k, "") for k, _ in COLUMNS[by]])


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("stats")
    def stats(
        admin: str | None = typer.Option(
            None, "--admin", envvar="AXIS_ADMIN_URL", help="admin app URL (default: ./axis-work/connections.json)"
        ),
        token: str | None = typer.Option(None, "--token", envvar="AXIS_ADMIN_TOKEN", help="admin token"),
        by: str = typer.Option("agency", "--by", help="breakdown: agency | server | day"),
        since: str | None = typer.Option(None, "--from", help="from this ISO date/datetime (UTC if naive)"),
        until: str | None = typer.Option(None, "--to", help="up to this ISO datetime, or through this date"),
        agency: str | None = typer.Option(None, "--agency", help="only traffic of this agency code"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object (totals and breakdowns)"),
        as_csv: bool = typer.Option(False, "--csv", help="print the breakdown as CSV"),
        db: str | None = typer.Option(None, "--db", help="read a statistics store directly (offline)"),
        config: Path | None = typer.Option(None, "--config", help="with --db: config file for the directory"),
        rows: int = typer.Option(40, "--rows", help="breakdown rows shown in the table"),
        ca: Path | None = typer.Option(None, "--ca", envvar="AXIS_CA", help="the axis CA to trust (default: "
                                       "connections.json's ca)"),
    ) -> None:
        """Traffic statistics: agencies connected (dedicated/shared), documents sent, received, refused."""
        if by not in BY_CHOICES:
            usage_error(f"--by must be one of {', '.join(BY_CHOICES)}")
        if as_json and as_csv:
            usage_error("choose one of --json and --csv")
        params = _params(by, since, until, agency)
        if db:
            try:
                s = asyncio.run(_query_db(db, config, params, 20))
            except ValueError as exc:
                usage_error(str(exc))
            except Exception as exc:  # the store cannot be opened or read
                _error(f"cannot read the statistics store {db}: {type(exc).__name__}: {exc}", as_json)
        else:
            if admin is None:
                admin, known_token = _admin_from_connections()
                token = token or known_token
            s = _fetch(admin, token, params, as_json, ca)
        if as_json:
            print_json(s)
        elif as_csv:
            _print_csv(s, by)
        else:
            _print_table(s, by, rows)
