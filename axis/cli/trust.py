"""`axis envelope sign` and `axis envelope verify` (contract section 3).

``verify`` takes files and directories (their ``*.edxml`` and ``*.xml`` files); ``--json`` prints one object per
file and line: ``{"file", "ok", "reason", "detail", "signer"}``. Exit 1 if any file is refused, 2 on usage errors
(missing files, unreadable CA or CRL).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from axis.cli._common import EXIT_REFUSED, console, fail, print_json, safe, usage_error
from axis.core import pki, signing
from axis.core.reasons import Refusal
from axis.core.schema import validate as _schema_validate
from axis.core.verify import Verifier, VerifyPolicy
from axis.core.xmlsafe import parse_untrusted


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".edxml", ".xml")))
        elif p.is_file():
            out.append(p)
        else:
            usage_error(f"no such file or directory: {p}")
    return out


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
) -> None:
    """Full check: XML safety, schema, profile, signature, certificate, signer."""
    try:
        verifier = Verifier(VerifyPolicy.from_files(ca, crl))
    except (OSError, ValueError) as exc:
        usage_error(f"cannot load the trust anchors / CRL: {exc}")
    rows: list[dict[str, Any]] = []
    for path in _files(files):
        row: dict[str, Any] = {"file": str(path), "ok": True, "reason": None, "detail": "", "signer": None}
        try:
            data = path.read_bytes()
            _schema_validate(parse_untrusted(data, max_bytes=verifier.policy.max_bytes))
            verified = verifier.verify(data)
            row["signer"] = verified.signer
        except Refusal as refusal:
            row.update(ok=False, reason=refusal.reason.value, detail=refusal.detail)
        except OSError as exc:
            usage_error(f"cannot read {path}: {exc}")
        rows.append(row)
        if as_json:
            print_json(row)
    if not as_json:
        table = Table("file", "result", "signer / detail")
        for row in rows:
            result = "[green]ok[/]" if row["ok"] else f"[red]{safe(row['reason'])}[/]"
            table.add_row(safe(row["file"]), result, safe(row["signer"] if row["ok"] else row["detail"]))
        console.print(table)
    if any(not r["ok"] for r in rows):
        raise typer.Exit(EXIT_REFUSED)


def register(app: typer.Typer) -> None:
    """Add ``sign`` and ``verify`` to the ``axis envelope`` sub-app."""
    app.command("sign")(sign_cmd)
    app.command("verify")(verify_cmd)
