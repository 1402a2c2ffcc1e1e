"""What the commands that talk to a running axis's admin app share (``axis agency``, ``axis dead``,
``axis uncollected``, ``axis reminders``): finding the admin app and its token, the call itself over HTTPS with the
axis CA, and how a failure is told (exit 1, ``--json`` or a red line)."""

from __future__ import annotations

import getpass
import ssl
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer

from axis.cli._common import (
    EXIT_REFUSED,
    connection_tls,
    err_console,
    print_json,
    read_connections,
    safe,
    tls_problem,
    usage_error,
)
from axis.client import tls_verify

#: (admin app URL, admin token, the CA to trust or None)
Target = tuple[str, str, str | None]
TIMEOUT = 120.0  # a scan of a long dead-letter queue


def admin_target(connections: Path | None, admin: str | None, token: str | None, ca: Path | None = None) -> Target:
    """The admin app's URL, token and the CA to trust: ``--admin``/``--token`` (``--ca``), else connections.json."""
    if admin is not None:
        if not token:
            usage_error("--admin needs --token (or AXIS_ADMIN_TOKEN)")
        return admin, token, str(ca) if ca else connection_tls(admin, connections=connections)["ca"]
    raw, path = read_connections(connections, alternative="--connections FILE or --admin URL")
    section = raw.get("admin")
    if not isinstance(section, dict) or not section.get("url"):
        usage_error(f"{path} has no admin.url")
    if not (token or section.get("token")):
        usage_error(f"{path} has no admin.token: pass --token")
    return str(section["url"]), str(token or section["token"]), str(ca) if ca else raw.get("ca")


def failed(detail: str, as_json: bool, status: int | None = None) -> NoReturn:
    """Exit 1 with ``detail`` (no reason code: the admin app could not be asked, or answered an error)."""
    if as_json:
        print_json({"ok": False, "reason": None, "detail": detail, "status": status})
    else:
        err_console.print(f"[bold red]error:[/] {safe(detail, lines=True)}")
    raise typer.Exit(EXIT_REFUSED)


def login_name() -> str:
    """Who is acting, for the evidence log's ``admin`` leaves (the login name; ``admin`` when there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "admin"


def send(target: Target, method: str, path: str, as_json: bool, *, params: dict[str, Any] | None = None,
         json: Any = None, headers: dict[str, str] | None = None, timeout: float = TIMEOUT) -> httpx.Response:
    """One request to the admin app; a transport failure exits 1 (:func:`failed`). The caller judges the status."""
    url, token, ca = target
    verify: ssl.SSLContext | bool = tls_verify(ca, None, None) if url.startswith("https://") and ca else True
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, verify=verify, trust_env=False) as c:
            return c.request(method, path, params=params, json=json,
                             headers={"Authorization": f"Bearer {token}", **(headers or {})})
    except httpx.HTTPError as exc:
        failed(f"cannot reach the admin app at {url}: {tls_problem(exc)}", as_json)


def ok_or_fail(r: httpx.Response, method: str, path: str, as_json: bool) -> httpx.Response:
    """``r`` when it is a 200, else exit 1 naming the status and the problem's detail."""
    if r.status_code != 200:
        try:
            body = r.json()
            detail = str(body.get("detail") or body.get("title")) if isinstance(body, dict) else r.text[:300]
        except ValueError:
            detail = r.text[:300]
        failed(f"{method} {path}: {r.status_code} {detail}", as_json, r.status_code)
    return r
