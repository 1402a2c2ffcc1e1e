"""The ``axis`` command line (contract section 3).

Exit status: 0 success, 1 refused (a reason code is printed), 2 usage error. ``--json`` prints JSON on stdout.
Each command group lives in its own module; this one only assembles them — lazily: ``axis.cli.app`` is built on
first use (:func:`build_app`), and :func:`main` runs ``axis envelope verify`` without importing the other command
groups (what integrators run over many files starts in a fraction of the time).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer


def build_app() -> typer.Typer:
    """The whole ``axis`` application, every command group registered (add new groups here)."""
    import typer

    from axis.cli import agency, backup, dead, directory, envelope, evidence, pki, run, sim, stats, trust, uncollected

    app = typer.Typer(
        name="axis",
        help="axis — national document axis: signed edXML envelopes over RabbitMQ.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.add_typer(pki.app, name="pki")
    app.add_typer(envelope.app, name="envelope")
    trust.register(envelope.app)
    run.register(app)
    stats.register(app)
    sim.register(app)
    evidence.register(app)
    directory.register(app)
    agency.register(app)
    backup.register(app)
    uncollected.register(app)
    dead.register(app)
    return app


def __getattr__(name: str) -> Any:
    """``axis.cli.app``: built once, on first access."""
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    args = sys.argv[1:]
    if args[:2] == ["envelope", "verify"]:
        from axis.cli.verify import run_standalone

        run_standalone(args[2:])  # exits, unless the arguments are for the Typer command (--help, usage errors)
    build_app()()
