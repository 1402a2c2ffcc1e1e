"""`axis envelope sign` (contract section 3); `axis envelope verify` lives in :mod:`axis.cli.verify` and is
registered here beside it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from axis.cli._common import console, fail, safe, usage_error
from axis.cli.verify import run_verify
from axis.core import pki, signing
from axis.core.reasons import Refusal


def sign_cmd(
    file: Annotated[Path, typer.Argument(help="unsigned edXML document ('-' for stdin)")],
    key: Annotated[Path, typer.Option("--key", help="signer's private key (PEM)")],
    cert: Annotated[Path, typer.Option("--cert", help="signer's certificate (PEM; intermediates may follow)")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write here instead of stdout")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="remove an existing signature and sign again")] = False,
) -> None:
    """Sign per the profile: one enveloped XML-DSig Signature, last child of edXMLHeader."""
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        private_key = pki.load_key(key.read_bytes())
        chain = pki.load_certs(cert.read_bytes())
    except (OSError, ValueError) as exc:
        usage_error(str(exc))
    try:
        signed = signing.sign(data, private_key, chain[0], chain[1:], replace=replace)
    except ValueError as exc:
        usage_error(str(exc))
    except Refusal as refusal:
        fail(refusal, as_json=False)
    if output is None:
        sys.stdout.buffer.write(signed)
        sys.stdout.flush()
    else:
        output.write_bytes(signed)
        console.print(f"signed: {safe(output)}", highlight=False)


def verify_cmd(
    files: Annotated[list[Path], typer.Argument(help="signed edXML files or directories of them")],
    ca: Annotated[Path, typer.Option("--ca", help="trust anchor(s): the axis CA certificate (PEM)")],
    crl: Annotated[Path | None, typer.Option("--crl", help="certificate revocation list (PEM)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file and line")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N",
                                      help="verify in N processes (0: one per CPU); same results and order")] = 1,
) -> None:
    """Full check: XML safety, schema, profile, signature, certificate, signer.

    Each file is parsed once. JSON lines: {"file", "ok", "reason", "detail", "signer"}, in the order of the files
    (a directory's files sorted by name) whatever --jobs is. Above 200 files the table lists only the refused
    ones, then the counts. Exit 1 if any file is refused, 2 on usage errors.
    """
    status = run_verify(files, ca, crl, as_json, jobs)
    if status:
        raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    """Add ``sign`` and ``verify`` to the ``axis envelope`` sub-app."""
    app.command("sign")(sign_cmd)
    app.command("verify")(verify_cmd)
