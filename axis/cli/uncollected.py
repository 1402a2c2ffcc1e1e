"""`axis uncollected` and `axis reminders`: documents delivered and not acked, and their reminders, from a running
axis's admin app (``GET /admin/uncollected``, ``GET /admin/reminders``, ``POST /admin/reminders/run``).

The admin app is found as ``axis stats`` finds it: ``--admin URL --token T``, else connections.json
(``--connections FILE``, default ``./axis-work/connections.json``). Exit status: 0; 1 when the admin app refuses or
cannot be reached; 2 for usage errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from axis.cli._admin import Target, admin_target, ok_or_fail, send
from axis.cli._common import (
    console,
    print_json,
    safe,
    usage_error,
)

TIMEOUT = 120.0


def _call(target: Target, method: str, path: str, as_json: bool, params: dict[str, Any] | None = None) -> Any:
    return ok_or_fail(send(target, method, path, as_json, params=params), method, path, as_json).json()


CONNECTIONS = typer.Option(None, "--connections", help="connections.json of a running axis (default "
                                                       "./axis-work/connections.json)")
ADMIN = typer.Option(None, "--admin", envvar="AXIS_ADMIN_URL", help="the admin app's URL (with --token)")
TOKEN = typer.Option(None, "--token", envvar="AXIS_ADMIN_TOKEN", help="the admin token")
CA = typer.Option(None, "--ca", envvar="AXIS_CA", help="the axis CA to trust (default: connections.json's ca)")


def register(app: typer.Typer) -> None:
    """Add ``uncollected`` and ``reminders`` to the root app."""

    @app.command("uncollected")
    def uncollected(
        older_than: str = typer.Option("0", "--older-than", help="waiting at least this long (seconds, or 30m, 24h, "
                                                                 "2d)"),
        agency: str | None = typer.Option(None, "--agency", metavar="CODE", help="only deliveries to this agency"),
        server: str | None = typer.Option(None, "--server", metavar="ID", help="only this endpoint server's"),
        limit: int = typer.Option(100, "--limit", min=1, max=1000),
        offset: int = typer.Option(0, "--offset", min=0),
        connections: Path | None = CONNECTIONS,
        admin: str | None = ADMIN,
        token: str | None = TOKEN,
        ca: Path | None = CA,
        as_json: bool = typer.Option(False, "--json", help="print the JSON answer (contract section 7)"),
    ) -> None:
        """Documents delivered to an agency's inbox and not acked (collected) yet, oldest first."""
        from axis.config import ConfigError
        from axis.config.reminders import duration

        try:
            seconds = duration(older_than, "--older-than")
        except ConfigError as exc:
            usage_error(str(exc))
        params: dict[str, Any] = {"older_than": seconds, "limit": limit, "offset": offset}
        if agency:
            params["agency"] = agency
        if server:
            params["server"] = server
        answer = _call(admin_target(connections, admin, token, ca), "GET", "/admin/uncollected", as_json, params)
        if as_json:
            print_json(answer)
            return
        table = Table(title=f"not collected, waiting at least {older_than}")
        for column in ("received at", "recipient", "sender", "document id", "server", "id"):
            table.add_column(column)
        for i in answer["items"]:
            table.add_row(safe(i["received_at"]), safe(i["recipient"]), safe(i["sender"]), safe(i["document_id"]),
                          safe(i["server"]), safe(i["id"]))
        console.print(table)
        more = answer.get("next_offset")
        console.print(f"{len(answer['items'])} shown" + (f"; more with --offset {more}" if more is not None else ""))

    @app.command("reminders")
    def reminders(
        run: bool = typer.Option(False, "--run", help="run a round of reminders now"),
        connections: Path | None = CONNECTIONS,
        admin: str | None = ADMIN,
        token: str | None = TOKEN,
        ca: Path | None = CA,
        as_json: bool = typer.Option(False, "--json", help="print the JSON answer"),
    ) -> None:
        """The reminders' settings (no secrets) and last round; --run sends what is due now."""
        target = admin_target(connections, admin, token, ca)
        answer = _call(target, "POST" if run else "GET", "/admin/reminders/run" if run else "/admin/reminders",
                       as_json)
        if as_json:
            print_json(answer)
            return
        if not answer.get("enabled", True) and not run:
            console.print("reminders are not configured (a reminders: section in config.yaml)")
            return
        rnd = answer if run else answer.get("last_round")
        if not run:
            console.print(f"reminders after {answer['after_seconds']:.0f} s, once per {answer['period_seconds']:.0f} "
                          f"s, every {answer['interval_seconds']:.0f} s; {answer['contacts']} agencies with a contact")
        if rnd:
            def per(counts: dict[str, int]) -> str:
                return ", ".join(f"{n} by {channel}" for channel, n in counts.items())

            console.print(f"round at {safe(rnd['at'])}: {rnd['waiting']} waiting; digests sent {per(rnd['sent'])} "
                          f"(documents {per(rnd['documents'])}); {len(rnd['failed'])} failed")
            for f in rnd["failed"]:
                console.print(f"  failed: {safe(f['agency'])} by {safe(f['channel'])}: {safe(f['error'])}")
