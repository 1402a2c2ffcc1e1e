"""``axis agency add|retire|rename|rotate-cert``: the agency lifecycle of a RUNNING axis, through its admin app
(``POST /admin/agencies…``, :mod:`axis.admin.agencies`; the ``axis up`` supervisor does the work without restarting
anything, :mod:`axis.ops.agencies`).

The admin app is found as ``axis stats`` finds it: ``./axis-work/connections.json`` by default, ``--connections
FILE`` otherwise, or ``--admin URL --token T`` (``AXIS_ADMIN_URL``/``AXIS_ADMIN_TOKEN``). The operator's login
name is sent as ``X-Axis-Admin``: it is the ``admin`` of the action's evidence-log leaf.

Exit status: 0 done; 1 refused by the axis (the reason code is printed: ``FORBIDDEN`` — code taken, server in use,
agency retired; ``UNKNOWN_RECIPIENT`` — no such agency) or the axis cannot be reached; 2 usage error (a malformed
code or option: ``SCHEMA_INVALID``, no connections.json). ``--json`` prints the admin app's answer as one object
with ``"ok"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import typer

from axis.cli._admin import Target, admin_target, login_name, send
from axis.cli._common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    console,
    err_console,
    print_json,
    safe,
)

app = typer.Typer(help="Add, retire, rename and re-certify agencies of a running axis (no restart).",
                  no_args_is_help=True)


CONNECTIONS = typer.Option(None, "--connections", metavar="FILE",
                           help="connections.json of the running axis (default ./axis-work/connections.json)")
ADMIN = typer.Option(None, "--admin", envvar="AXIS_ADMIN_URL", help="admin app URL (default: from connections.json)")
TOKEN = typer.Option(None, "--token", envvar="AXIS_ADMIN_TOKEN", help="admin token (default: from connections.json)")
CA = typer.Option(None, "--ca", metavar="CA_PEM", help="the axis CA the admin app's HTTPS certificate is checked "
                                                       "against (default: connections.json's ca)")
JSON = typer.Option(False, "--json", help="Print the answer as one JSON object.")
DAYS = typer.Option(365, "--days", min=1, max=3650, help="Validity of the signing certificate, in days.")
ALGORITHM = typer.Option("ec", "--algorithm", help="Key algorithm of the signing certificate: ec (P-256) or rsa.")


def _refused(status: int, body: Any, as_json: bool) -> NoReturn:
    reason = body.get("reason") if isinstance(body, dict) else None
    detail = str(body.get("detail") or body.get("title") or "") if isinstance(body, dict) else str(body)[:300]
    code = EXIT_USAGE if reason == "SCHEMA_INVALID" else EXIT_REFUSED
    if as_json:
        print_json({"ok": False, "reason": reason, "detail": detail, "status": status})
    else:
        err_console.print(f"[bold red]refused[/] {safe(reason or status)}: {safe(detail, lines=True)}")
    raise typer.Exit(code)


def _post(target: Target, path: str, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    r = send(target, "POST", path, as_json, json=body, headers={"X-Axis-Admin": login_name()},
             timeout=300.0)  # a new server starts a process and waits for it
    try:
        answer = r.json()
    except ValueError:
        answer = r.text
    if r.status_code not in (200, 201) or not isinstance(answer, dict):
        _refused(r.status_code, answer, as_json)
    return answer


def _show(answer: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        print_json({"ok": True, **answer})
        return
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
    if answer.get("evidence") not in (None, "recorded"):
        err_console.print(f"[yellow]warning:[/] the evidence log: {safe(str(answer['evidence']))}")


def _cert_line(cert: dict[str, Any]) -> str:
    return (f"  signing certificate {safe(cert.get('serial'))}, valid until {safe(cert.get('not_after'))}\n"
            f"    cert {safe(cert.get('cert'))}\n    key  {safe(cert.get('key'))}")


@app.command("add")
def add(
    code: str = typer.Argument(..., metavar="CODE", help="The new agency's code (000.00.00.G22 or H55.242 form)."),
    server: str = typer.Option(..., "--server", metavar="ID", help="Its endpoint server (created when new)."),
    name: str | None = typer.Option(None, "--name", help="The agency's name (default: its code)."),
    kind: str | None = typer.Option(None, "--kind", help="dedicated or shared: the kind of a NEW server "
                                                          "(default dedicated)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port of a NEW server (default: the "
                                                                           "next free one of the configuration)."),
    days: int = DAYS,
    algorithm: str = ALGORITHM,
    server_key: bool = typer.Option(True, "--server-key/--no-server-key",
                                    help="The server keeps the agency's signing key (it may then submit unsigned "
                                         "documents, signed by the server)."),
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    """Add an agency to the running axis: its signing certificate, its token, a place on a server, the directory.
    The token is printed once (and kept in connections.json)."""
    body: dict[str, Any] = {"code": code, "server": server, "days": days, "algorithm": algorithm,
                            "holds_key": server_key}
    body |= {k: v for k, v in (("name", name), ("kind", kind), ("port", port)) if v is not None}
    a = _post(admin_target(connections, admin, token, ca), "/admin/agencies", body, as_json)
    _show(a, as_json, [
        f"[bold green]added[/] {safe(a.get('agency'))} ({safe(a.get('name'))}) on "
        f"{'new ' if a.get('new_server') else ''}{safe(a.get('kind'))} server {safe(a.get('server'))}",
        f"  endpoint {safe(a.get('endpoint'))}",
        f"  token    {safe(a.get('token'))}  (shown once; also in connections.json)",
        _cert_line(a.get("certificate") or {}),
        *([f"  TLS client certificate {safe(a['tls_cert'])}"] if a.get("tls_cert") else []),
    ])


@app.command("retire")
def retire(
    code: str = typer.Argument(..., metavar="CODE", help="The agency to retire."),
    revoke: bool = typer.Option(False, "--revoke", help="Also revoke its signing certificate (documents it signed "
                                                        "before then no longer verify)."),
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    """Retire an agency: documents from it are refused FORBIDDEN, to it UNKNOWN_RECIPIENT; its inbox stays readable
    (its token still lists, fetches and acks) until collected."""
    a = _post(admin_target(connections, admin, token, ca), f"/admin/agencies/{quote(code, safe='')}/retire",
              {"revoke": revoke}, as_json)
    _show(a, as_json, [f"[bold]retired[/] {safe(a.get('agency'))} at {safe(a.get('retired_at'))}"
                       + (f"; certificate {safe(a.get('revoked_serial'))} revoked" if a.get("revoked_serial") else "")])


@app.command("rename")
def rename(
    code: str = typer.Argument(..., metavar="CODE", help="The agency's current code."),
    new_code: str = typer.Argument(..., metavar="NEW_CODE", help="Its new code; the old one stays as an alias."),
    name: str | None = typer.Option(None, "--name", help="A new name as well."),
    days: int = DAYS,
    algorithm: str = ALGORITHM,
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    """Change an agency's code: a signing certificate for the new code is issued; envelopes addressed to the old
    code still reach it; its token and server stay."""
    body: dict[str, Any] = {"code": new_code, "days": days, "algorithm": algorithm}
    if name is not None:
        body["name"] = name
    target = admin_target(connections, admin, token, ca)
    a = _post(target, f"/admin/agencies/{quote(code, safe='')}/rename", body, as_json)
    _show(a, as_json, [f"[bold green]renamed[/] {safe(a.get('former'))} → {safe(a.get('agency'))} "
                       f"(the old code is an alias)", _cert_line(a.get("certificate") or {})])


@app.command("rotate-cert")
def rotate_cert(
    code: str = typer.Argument(..., metavar="CODE", help="The agency."),
    days: int = DAYS,
    algorithm: str = ALGORITHM,
    as_json: bool = JSON,
    connections: Path | None = CONNECTIONS,
    admin: str | None = ADMIN,
    token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    """Issue a new signing key and certificate; the previous certificate stays valid until it expires (documents
    signed with either verify)."""
    a = _post(admin_target(connections, admin, token, ca), f"/admin/agencies/{quote(code, safe='')}/rotate-cert",
              {"days": days, "algorithm": algorithm}, as_json)
    prev = a.get("previous") or {}
    _show(a, as_json, [f"[bold green]new certificate[/] for {safe(a.get('agency'))}", _cert_line(a.get("certificate")
                                                                                                 or {}),
                       *([f"  the previous one ({safe(prev.get('serial'))}) stays valid until "
                          f"{safe(prev.get('valid_until'))}"] if prev else [])])


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="agency")
