"""``axis dead list|show|resend|discard``: the dead letters of a running axis, through its admin app
(``/admin/dead-letters``, :mod:`axis.admin.deadletters`).

The admin app is found as ``axis stats`` finds it: ``./axis-work/connections.json`` by default, ``--connections
FILE`` otherwise, or ``--admin URL --token T`` (``AXIS_ADMIN_URL``/``AXIS_ADMIN_TOKEN``). ``resend`` and
``discard`` name the administrator in the evidence log: ``--as NAME``, else the login name (``X-Axis-Admin``).

Exit status (contract section 3): 0 done; 1 the operation failed (no such dead letter, the admin app refused or
cannot be reached; ``--json``: ``{"ok": false, "reason": null, "detail", "status"}``); 2 usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import typer

from axis.cli._admin import Target, admin_target, login_name, ok_or_fail, send
from axis.cli._common import console, print_json, safe, usage_error

app = typer.Typer(help="List, inspect, resend and discard the dead letters (refused and poison messages) of a "
                       "running axis.", no_args_is_help=True)

CONNECTIONS = typer.Option(None, "--connections", metavar="FILE",
                           help="connections.json of the running axis (default ./axis-work/connections.json)")
ADMIN = typer.Option(None, "--admin", envvar="AXIS_ADMIN_URL", help="admin app URL (default: from connections.json)")
TOKEN = typer.Option(None, "--token", envvar="AXIS_ADMIN_TOKEN", help="admin token (default: from connections.json)")
JSON = typer.Option(False, "--json", help="print the answer as one JSON object")
AS = typer.Option(None, "--as", metavar="NAME", help="the administrator named in the evidence log (default: your "
                  "login name)")


def _request(target: Target, method: str, path: str, as_json: bool, *, params: dict[str, Any] | None = None,
             admin_name: str | None = None) -> httpx.Response:
    body = None if admin_name is None else {"admin": admin_name}
    return ok_or_fail(send(target, method, path, as_json, params=params, json=body), method, path, as_json)


def _path(letter_id: str, suffix: str = "") -> str:
    return f"/admin/dead-letters/{quote(letter_id, safe='')}{suffix}"


@app.command("list")
def list_(
    reason: str | None = typer.Option(None, "--reason", help="only this reason (a contract code, or RabbitMQ's "
                                      "delivery_limit/rejected for poison messages)"),
    sender: str | None = typer.Option(None, "--sender", metavar="CODE", help="only this sending agency"),
    server: str | None = typer.Option(None, "--server", metavar="ID", help="only what this endpoint server submitted"),
    document_id: str | None = typer.Option(None, "--document-id", help="only this DocumentId"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
) -> None:
    """The dead letters, oldest first (one page: --limit, --offset)."""
    params = {k: v for k, v in {"reason": reason, "sender": sender, "server": server, "document_id": document_id,
                                "limit": limit, "offset": offset}.items() if v is not None}
    target = admin_target(connections, admin, token)
    page = _request(target, "GET", "/admin/dead-letters", as_json, params=params).json()
    if as_json:
        print_json({"ok": True, **page})
        return
    items = page.get("items") or []
    console.print(f"[bold]dead letters[/] ({len(items)} of {page.get('total', len(items))})", highlight=False)
    for i in items:  # one block each (readable in any terminal width); everything came from a refused message
        at = safe(str(i.get("at") or "?").replace("T", " ")[:19])
        console.print(f"{safe(i.get('id'))}  {at}  [bold]{safe(i.get('reason'))}[/]  server {safe(i.get('server'))}",
                      soft_wrap=True, highlight=False)
        console.print(f"    {safe(i.get('sender') or '?')} · {safe(i.get('document_id') or '?')}", soft_wrap=True,
                      highlight=False)
        console.print(f"    {safe(str(i.get('detail') or ''))}", soft_wrap=True, highlight=False)
    if page.get("next_offset") is not None:
        console.print(f"more: --offset {page['next_offset']}")


@app.command("show")
def show(
    letter_id: str = typer.Argument(..., metavar="ID"),
    output: Path | None = typer.Option(None, "-o", "--output", help="write the dead letter's bytes to this file"),
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
) -> None:
    """One dead letter: its fields and headers (-o FILE: its bytes, exactly as refused)."""
    target = admin_target(connections, admin, token)
    letter = _request(target, "GET", _path(letter_id), as_json).json()
    if output is not None:
        raw = _request(target, "GET", _path(letter_id, "/bytes"), as_json).content
        try:
            output.write_bytes(raw)
        except OSError as exc:
            usage_error(f"cannot write {output}: {exc.strerror or exc}")
        letter["written"] = str(output)
    if as_json:
        print_json({"ok": True, **letter})
        return
    for key in ("id", "reason", "detail", "sender", "document_id", "server", "at", "kind", "source", "size",
                "sha256", "message_id", "content_type", "written"):
        if letter.get(key) is not None:
            console.print(f"[bold]{key}[/]: {safe(letter[key])}", soft_wrap=True, highlight=False)
    for name, value in (letter.get("headers") or {}).items():
        console.print(f"  {safe(name)}: {safe(value)}", soft_wrap=True, highlight=False)


def _act(action: str, letter_id: str, name: str | None, as_json: bool, connections: Path | None,
         admin: str | None, token: str | None) -> None:
    target = admin_target(connections, admin, token)
    done = _request(target, "POST", _path(letter_id, f"/{action}"), as_json, admin_name=name or login_name()).json()
    if as_json:
        print_json({"ok": True, **done})
        return
    what = "resent" if action == "resend" else "discarded"
    console.print(f"[green]{what}[/] {safe(letter_id)} ({safe(done.get('reason'))}; {safe(done.get('sender'))} "
                  f"{safe(done.get('document_id'))}) by {safe(done.get('admin'))}; logged", soft_wrap=True)


@app.command("resend")
def resend(
    letter_id: str = typer.Argument(..., metavar="ID"),
    as_name: str | None = AS,
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
) -> None:
    """Send a dead letter back where it came from, as if just submitted (after fixing its cause)."""
    _act("resend", letter_id, as_name, as_json, connections, admin, token)


@app.command("discard")
def discard(
    letter_id: str = typer.Argument(..., metavar="ID"),
    as_name: str | None = AS,
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
) -> None:
    """Remove a dead letter for good (the evidence log keeps the action)."""
    _act("discard", letter_id, as_name, as_json, connections, admin, token)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dead")
