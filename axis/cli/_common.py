"""Small helpers shared by the CLI modules: JSON output, refusal reporting, exit codes."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console

from axis.reasons import Refusal

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, default=str).decode() + "\n")
    sys.stdout.flush()


def fail(refusal: Refusal, *, as_json: bool, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report a refusal (JSON on stdout or a red line on stderr) and exit 1."""
    if as_json:
        print_json({**refusal.as_dict(), **(extra or {})})
    else:
        err_console.print(f"[bold red]refused[/] {refusal.reason.value}: {refusal.detail}")
    raise typer.Exit(EXIT_REFUSED)


def usage_error(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(EXIT_USAGE)
