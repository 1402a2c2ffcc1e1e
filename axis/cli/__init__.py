"""The ``axis`` command line (contract section 3).

Exit status: 0 success, 1 refused (a reason code is printed), 2 usage error. ``--json`` prints JSON on stdout.
Each command group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import typer

from axis.cli import agency, directory, envelope, evidence, pki, run, sim, stats, trust

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


def main() -> None:
    app()
