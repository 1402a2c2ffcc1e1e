"""`axis envelope` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="envelope commands", no_args_is_help=True)
