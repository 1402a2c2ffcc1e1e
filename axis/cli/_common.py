"""Small helpers shared by the CLI modules: JSON output, refusal reporting, exit codes, and the one way untrusted
text reaches a human-readable output (:func:`axis.core.termsafe.safe`)."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console

from axis.core.reasons import Refusal
from axis.core.termsafe import plain, safe

__all__ = ["EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "console", "err_console", "fail", "plain", "print_json", "safe",
           "usage_error"]

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


def usage_error(message: str) -> NoReturn:
    """Print ``message`` (plain text, never markup: it may quote a file name or a server's answer) and exit 2."""
    err_console.print(f"[bold red]error:[/] {safe(message, lines=True)}")
    raise typer.Exit(EXIT_USAGE)
