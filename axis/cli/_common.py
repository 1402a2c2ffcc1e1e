"""Small helpers shared by the CLI modules: JSON output, refusal reporting, exit codes, and the one way untrusted
text reaches a human-readable output (:func:`axis.core.termsafe.safe`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console

from axis.core.reasons import Refusal
from axis.core.termsafe import plain, safe

__all__ = ["EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "announce_plaintext", "connection_tls", "console", "err_console",
           "fail", "plain", "print_json", "safe", "tls_problem", "usage_error"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

# emoji=False: ":warning:" in a subject stays text (rich.markup.escape does not cover emoji codes)
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, default=str).decode() + "\n")
    sys.stdout.flush()


def fail(refusal: Refusal, *, as_json: bool, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report a refusal (JSON on stdout or a red line on stderr) and exit 1."""
    if as_json:
        print_json({**refusal.as_dict(), **(extra or {})})
    else:
        err_console.print(f"[bold red]refused[/] {safe(refusal.reason.value)}: {safe(refusal.detail)}")
    raise typer.Exit(EXIT_REFUSED)


def announce_plaintext(tls_on: bool) -> None:
    """With ``tls: off``, the first line a command that starts servers prints (stderr, loudly)."""
    if not tls_on:
        from axis.core.tlsconfig import PLAINTEXT_WARNING

        err_console.print(f"[bold red]{PLAINTEXT_WARNING}[/]")


def usage_error(message: str) -> NoReturn:
    """Print ``message`` (plain text, never markup: it may quote a file name or a server's answer) and exit 2."""
    err_console.print(f"[bold red]error:[/] {safe(message, lines=True)}")
    raise typer.Exit(EXIT_USAGE)


# ---- TLS for the commands that talk to a running axis (contract section 6) -------------------------------------

DEFAULT_CONNECTIONS_PATH = "axis-work/connections.json"


def read_connections(path: Path | None, *, alternative: str = "--connections FILE") -> tuple[dict[str, Any], Path]:
    """connections.json (``path``, else ./axis-work/connections.json) as a JSON object, with where it was read; a usage
    error (exit 2) naming the file when it is missing, unreadable or not an object (``alternative``: what else the
    command takes instead)."""
    p = path or Path(DEFAULT_CONNECTIONS_PATH)
    if not p.is_file():
        usage_error(f"no {p} here (run `axis up` or `axis demo` first, or pass {alternative})")
    try:
        raw = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        usage_error(f"{p} cannot be read: {exc}")
    if not isinstance(raw, dict):
        usage_error(f"{p} is not a connections object")
    return raw, p


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def connection_tls(url: str, *, token: str | None = None, ca: Path | None = None, cert: Path | None = None,
                   key: Path | None = None, connections: Path | None = None) -> dict[str, str | None]:
    """The TLS settings of a command talking to ``url``: ``ca`` (the certificate to trust), ``cert``/``key`` (an
    agency's TLS client certificate). What the options leave out comes from connections.json (``--connections``,
    else ``./axis-work/connections.json`` when present) — but only when ``url`` is one of its servers: its ``ca``
    and, for the agency whose token is ``token``, its ``tls_cert``/``tls_key``."""
    out: dict[str, str | None] = {"ca": str(ca) if ca else None, "cert": str(cert) if cert else None,
                                  "key": str(key) if key else None}
    path = connections or Path(DEFAULT_CONNECTIONS_PATH)
    if connections is not None and not path.is_file():
        usage_error(f"{path} not found")
    if (out["ca"] and (out["cert"] or not token)) or not path.is_file():
        return out
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return out
    if not isinstance(raw, dict):
        return out
    agencies = [a for a in raw.get("agencies") or [] if isinstance(a, dict)]
    admin = raw.get("admin") if isinstance(raw.get("admin"), dict) else {}
    servers = {_origin(str(a.get("endpoint"))) for a in agencies if a.get("endpoint")}
    if admin and admin.get("url"):
        servers.add(_origin(str(admin["url"])))
    if _origin(url) not in servers:
        return out
    if out["ca"] is None and raw.get("ca"):
        out["ca"] = str(raw["ca"])
    if out["cert"] is None and token:
        mine = next((a for a in agencies if a.get("token") == token), None)
        if mine is not None and mine.get("tls_cert") and mine.get("tls_key"):
            out["cert"], out["key"] = str(mine["tls_cert"]), str(mine["tls_key"])
    return out


def tls_problem(exc: BaseException) -> str:
    """A hint for a failed TLS connection (certificate verification: the wrong CA, or none given)."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (f"{text} — the server's certificate is not trusted: pass --ca with the axis CA "
                "(connections.json's ca)")
    return text
