"""`axis directory`: the directory as agency software syncs it (contract section 7, ``GET /v1/directory``).

Where it comes from, first match wins:
1. ``--config FILE`` — offline, from a configuration file: its directory journal
   (``directory-journal.json`` beside it) is advanced to the file first, as a server would on a reload;
2. ``--endpoint URL --token TOKEN`` — an endpoint server, as that agency (``--ca`` for HTTPS);
3. connections.json (``--connections FILE``, default ``./axis-work/connections.json``): the endpoint, token, CA and
   client certificate of ``--agency CODE`` (default: its first agency).

``--since VERSION`` lists only what changed after that version. Exit 0; 1 when the server refuses (reason code
printed); 2 for usage errors (nothing to ask, an unreachable server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import typer
from rich.table import Table

from axis.cli._common import (
    DEFAULT_CONNECTIONS_PATH,
    connection_tls,
    console,
    fail,
    print_json,
    safe,
    tls_problem,
    usage_error,
)
from axis.client import AxisError, Client, agency_connection
from axis.core.reasons import Reason, Refusal


def _offline(config_path: Path, since: int | None) -> dict[str, Any]:
    from axis.config import ConfigError, load_config
    from axis.config.directory_journal import sync_journal
    from axis.core.directory_versions import changes_since

    try:
        return changes_since(sync_journal(load_config(config_path)), since)
    except (ConfigError, OSError) as exc:
        usage_error(str(exc))


def _client_args(endpoint: str | None, token: str | None, agency: str | None, ca: Path | None,
                 connections: Path | None) -> dict[str, Any]:
    if endpoint or token:
        if not (endpoint and token):
            usage_error("--endpoint and --token go together")
        return {"endpoint": endpoint, "token": token, **connection_tls(endpoint, token=token, ca=ca,
                                                                        connections=connections)}
    path = connections or Path(DEFAULT_CONNECTIONS_PATH)
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        usage_error(f"no --config, --endpoint or readable connections file ({path}: {exc})")
    agencies = [a for a in (raw.get("agencies") or []) if isinstance(a, dict)] if isinstance(raw, dict) else []
    code = agency or (str(agencies[0].get("code")) if agencies else None)
    if code is None:
        usage_error(f"{path} lists no agency")
    try:
        args = agency_connection(raw, code)
    except KeyError as exc:
        usage_error(str(exc.args[0]))
    if ca is not None:
        args["ca"] = str(ca)
    return args


def _show(out: dict[str, Any], since: int | None) -> None:
    table = Table(title=f"directory version {out['version']}" + ("" if out.get("full") else f", changes after "
                                                                                          f"{since}"))
    for column in ("code", "name", "kind", "active", "former codes"):
        table.add_column(column)
    for a in out["agencies"]:
        table.add_row(safe(a["code"]), safe(a["name"]), safe(a["kind"]), "yes" if a["active"] else "retired",
                      safe(", ".join(a["aliases"])))
    console.print(table)
    if out["deleted"]:
        console.print("deleted: " + safe(", ".join(out["deleted"])))
    console.print(f"{len(out['agencies'])} agencies listed, {len(out['deleted'])} codes deleted; next sync: "
                  f"--since {out['version']}")


def register(app: typer.Typer) -> None:
    """Add this module's command to the root app."""

    @app.command("directory")
    def directory(
        since: int | None = typer.Option(None, "--since", min=0, help="only what changed after this version"),
        config: Path | None = typer.Option(None, "--config", help="offline: read this configuration file"),
        endpoint: str | None = typer.Option(None, "--endpoint", help="an endpoint server URL (with --token)"),
        token: str | None = typer.Option(None, "--token", help="an agency token of that server"),
        agency: str | None = typer.Option(None, "--agency", help="with connections.json: act as this agency "
                                                                 "(default: its first)"),
        connections: Path | None = typer.Option(None, "--connections", help="connections.json of a running axis "
                                                                             "(default ./axis-work/connections.json)"),
        ca: Path | None = typer.Option(None, "--ca", help="the axis CA to trust (default: connections.json's ca)"),
        as_json: bool = typer.Option(False, "--json", help="print the JSON answer (contract section 7)"),
    ) -> None:
        """The directory for agency software: agencies (code, name, kind, active, former codes) and deleted codes,
        by version."""
        if config is not None:
            out = _offline(config, since)
        else:
            args = _client_args(endpoint, token, agency, ca, connections)
            try:
                with Client(**args) as client:
                    out = client.directory(since)
            except AxisError as exc:
                try:
                    reason = Reason(exc.reason or "")
                except ValueError:
                    usage_error(f"the server answered {exc.status}: {exc.detail}")
                fail(Refusal(reason, exc.detail), as_json=as_json)
            except httpx.HTTPError as exc:
                usage_error(f"cannot reach {args['endpoint']}: {tls_problem(exc)}")
        if as_json:
            print_json(out)
        else:
            _show(out, since)
