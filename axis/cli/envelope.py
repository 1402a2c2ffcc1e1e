"""``axis envelope new | validate | inspect`` (contract section 3). ``sign`` and ``verify`` live in trust.py."""

from __future__ import annotations

import base64
import binascii
import sys
from pathlib import Path
from typing import Any

import typer
from lxml import etree
from rich.panel import Panel
from rich.table import Table

from axis.cli._common import EXIT_REFUSED, console, err_console, fail, print_json, safe, usage_error
from axis.core import envelope as env
from axis.core import schema
from axis.core.reasons import Reason, Refusal
from axis.core.xmlsafe import parse_untrusted

app = typer.Typer(
    help="edXML envelopes: create, validate, inspect (sign and verify: see their own help).",
    no_args_is_help=True,
)

_KINDS = ("edoc", "revocation", "update", "replacement")


@app.command("new")
def new(
    sender: str = typer.Option(..., "--from", metavar="CODE", help="Sender agency code (e.g. 000.00.00.G22)."),
    to: list[str] = typer.Option(..., "--to", metavar="CODE", help="Recipient agency code; repeat for several."),
    subject: str = typer.Option(..., "--subject", help="Subject (trích yếu) of the document."),
    attach: list[Path] = typer.Option([], "--attach", metavar="FILE", help="Attach a file; repeat for several."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write here instead of stdout."),
    number: str | None = typer.Option(None, "--number", help="Document number (generated if omitted)."),
    notation: str | None = typer.Option(None, "--notation", help="Notation after the number (default VBDT)."),
    content: str = typer.Option("", "--content", help="Content / summary text."),
    kind: str = typer.Option("edoc", "--type", metavar="TYPE", help="edoc (new), revocation, update or replacement."),
    related: str | None = typer.Option(
        None, "--related", metavar="DOCUMENT_ID", help="The document a revocation/update/replacement acts on."
    ),
    date: str | None = typer.Option(None, "--date", metavar="YYYY/MM/DD", help="Promulgation date (default today)."),
) -> None:
    """Write an unsigned edXML document from SENDER to one or more recipients.

    The DocumentId is "<sender>,<yyyy/MM/dd>,<number>/<notation>". Without -o only the XML goes to stdout.
    Agency codes are dot-separated groups of 0-9/A-Z (000.00.00.H41 or H55.242). Sign it with
    `axis envelope sign`.
    """
    if kind not in _KINDS:
        usage_error(f"--type must be one of {', '.join(_KINDS)}, not {kind!r}")
    if kind != "edoc" and not related:
        usage_error(f"--type {kind} needs --related DOCUMENT_ID (the document it acts on)")
    if related and kind == "edoc":
        usage_error("--related only goes with --type revocation, update or replacement")
    if date is not None and not (len(date) == 10 and date[4] == date[7] == "/" and date.replace("/", "").isdigit()):
        usage_error(f"--date must be YYYY/MM/DD, not {date!r}")
    for path in attach:
        if not path.is_file():
            usage_error(f"attachment not found: {path}")
    try:
        msg = env.new_document(
            sender,
            to,
            subject,
            number=number,
            notation=notation,
            content=content,
            attachments=[env.attachment_from_file(p) for p in attach],
            doc_type=kind,
            related_document_id=related,
            date=date,
        )
        data = env.build(msg)
    except ValueError as exc:
        usage_error(str(exc))
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        err_console.print(f"wrote {safe(output)} ({len(data)} bytes), DocumentId [bold]{safe(msg.document_id)}[/]")


def _collect(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in (".edxml", ".xml"))
            if not found:
                usage_error(f"no .edxml or .xml files in {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            usage_error(f"no such file or directory: {p}")
    return files


def check_file(path: Path) -> dict[str, Any]:
    """XML safety, schema and model checks of one file: the validate result object."""
    result: dict[str, Any] = {"file": str(path), "ok": True, "reason": None, "detail": "", "kind": None}
    try:
        root = parse_untrusted(path.read_bytes())
        schema.validate(root)
        result["kind"] = env.message_kind(env.from_element(root))
    except Refusal as r:
        result.update(ok=False, reason=r.reason.value, detail=r.detail)
    except OSError as exc:
        result.update(ok=False, reason=Reason.XML_MALFORMED.value, detail=f"cannot read: {exc.strerror}")
    return result


@app.command("validate")
def validate(
    files: list[Path] = typer.Argument(..., metavar="FILE...", help="edXML files or directories of *.edxml/*.xml."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file per line on stdout."),
) -> None:
    """Check XML safety and the edXML schema only (no signature): exit 1 if any file is refused.

    JSON lines: {"file", "ok", "reason", "detail", "kind"}; kind is edoc, status, revocation, update or
    replacement.
    """
    results = [check_file(f) for f in _collect(files)]
    if as_json:
        for r in results:
            print_json(r)
    else:
        table = Table(title="edXML validation", show_lines=False)
        table.add_column("file", overflow="fold")
        table.add_column("result")
        table.add_column("reason")
        table.add_column("detail", overflow="fold")
        for r in results:
            mark = f"[green]ok[/] ({safe(r['kind'])})" if r["ok"] else "[red]refused[/]"
            table.add_row(safe(r["file"]), mark, safe(r["reason"]), safe(r["detail"]))
        console.print(table)
        bad = sum(not r["ok"] for r in results)
        console.print(f"{len(results) - bad} valid, {bad} refused")
    if any(not r["ok"] for r in results):
        raise typer.Exit(EXIT_REFUSED)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def certificate_info(b64: str) -> dict[str, Any]:
    """Subject, UID, issuer and validity of a base64 DER certificate, read WITHOUT verifying anything."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        der = base64.b64decode("".join(b64.split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
        uids = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
        return {
            "subject": cert.subject.rfc4514_string(),
            "uid": str(uids[0].value) if uids else None,
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "error": None,
        }
    except (binascii.Error, ValueError, TypeError) as exc:
        return {"subject": None, "uid": None, "error": f"unreadable certificate: {str(exc)[:80] or type(exc).__name__}"}


def signature_info(root: etree._Element) -> dict[str, Any]:
    """Signature elements (XML-DSig or misplaced in the edXML namespace) and the signer certificate, unverified."""
    sigs = [el for el in root.iter(f"{{{env.DS_NS}}}Signature", f"{{{env.NS}}}Signature")]
    info: dict[str, Any] = {"present": bool(sigs), "count": len(sigs), "verified": False}
    if not sigs:
        return info
    sig = sigs[0]
    info["namespace"] = etree.QName(sig).namespace  # both names iterated are namespaced
    info["in_dsig_namespace"] = info["namespace"] == env.DS_NS
    algs = [el.get("Algorithm") for el in sig.iter() if _local(el.tag) in ("SignatureMethod", "DigestMethod")]
    info["algorithms"] = [a for a in algs if a]
    cert_el = next((el for el in sig.iter() if _local(el.tag) == "X509Certificate"), None)
    if cert_el is None:
        info["certificate"] = None
    else:
        info["certificate"] = certificate_info(cert_el.text or "")
    return info


def summary(path: Path, root: etree._Element, msg: env.Message) -> dict[str, Any]:
    out: dict[str, Any] = {"file": str(path), "ok": True, "reason": None, "detail": "", "kind": env.message_kind(msg)}
    out["sender"] = {"organ_id": msg.sender.organ_id, "organ_name": msg.sender.organ_name}
    if isinstance(msg, env.StatusMessage):
        out.update(
            status_code=msg.status_code,
            status_meaning=env.STATUS_CODES.get(msg.status_code, "unknown"),
            description=msg.description,
            timestamp=msg.timestamp,
            response_for={
                "organ_id": msg.response_for.organ_id,
                "document_id": msg.response_for.document_id,
                "code": msg.response_for.code,
                "promulgation_date": msg.response_for.promulgation_date,
            },
        )
    else:
        out.update(
            recipients=[{"organ_id": r.organ_id, "organ_name": r.organ_name} for r in msg.recipients],
            document_id=msg.document_id,
            subject=msg.subject,
            promulgation_date=msg.promulgation_date,
            business_type=msg.business.doc_type,
            related_document_id=msg.business.document_id or None,
            attachments=[
                {"content_id": a.content_id, "name": a.name, "content_type": a.content_type, "size": len(a.data)}
                for a in msg.attachments
            ],
        )
    try:
        schema.validate(root)
        out["schema"] = {"ok": True, "reason": None, "detail": ""}
    except Refusal as r:
        out["schema"] = {"ok": False, "reason": r.reason.value, "detail": r.detail}
    out["signature"] = signature_info(root)
    return out


def _render(s: dict[str, Any]) -> None:
    """The human summary. Every value comes from the file (its name, the document, an unverified certificate):
    all of it goes through ``safe`` — only this function's own labels and styles are markup."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column(overflow="fold")

    def org(o: dict[str, Any]) -> str:
        return f"{safe(o['organ_id'])}  {safe(o['organ_name'])}"

    t.add_row("kind", safe(s["kind"]))
    t.add_row("sender", org(s["sender"]))
    if s["kind"] == "status":
        rf = s["response_for"]
        t.add_row("status", f"{safe(s['status_code'])} ({safe(s['status_meaning'])})")
        t.add_row("about", f"{safe(rf['document_id'])} (from {safe(rf['organ_id'])})")
        t.add_row("description", safe(s["description"]))
        t.add_row("timestamp", safe(s["timestamp"]))
    else:
        for i, r in enumerate(s["recipients"]):
            t.add_row("recipients" if i == 0 else "", org(r))
        t.add_row("document id", safe(s["document_id"]))
        t.add_row("subject", safe(s["subject"]))
        bt = f"{safe(s['business_type'])} ({safe(s['kind'])})"
        if s["related_document_id"]:
            bt += f", acts on {safe(s['related_document_id'])}"
        t.add_row("business type", bt)
        if not s["attachments"]:
            t.add_row("attachments", "none")
        for i, a in enumerate(s["attachments"]):
            t.add_row("attachments" if i == 0 else "",
                      f"{safe(a['name'])}  {safe(a['content_type'])}  {a['size']:,} bytes")
    sch = s["schema"]
    t.add_row("schema", "[green]valid[/]" if sch["ok"] else f"[red]{safe(sch['reason'])}[/] {safe(sch['detail'])}")
    sig = s["signature"]
    if not sig["present"]:
        t.add_row("signature", "[yellow]none[/]")
    else:
        ns = "XML-DSig" if sig["in_dsig_namespace"] else f"[red]wrong namespace[/] {safe(sig['namespace'])}"
        t.add_row("signature", f"{sig['count']} element(s), {ns} — [yellow]unverified[/] (use axis envelope verify)")
        cert = sig["certificate"]
        if cert is None:
            t.add_row("signer", "no X509Certificate")
        elif cert["error"]:
            t.add_row("signer", f"[red]{safe(cert['error'])}[/]")
        else:
            t.add_row("signer", f"{safe(cert['subject'])} (UID {safe(cert['uid'] or 'none')}) [yellow]unverified[/]")
    console.print(Panel(t, title=safe(s["file"]), expand=False))


@app.command("inspect")
def inspect(
    file: Path = typer.Argument(..., metavar="FILE", help="An edXML file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Summarize an envelope: kind, sender, recipients, document id, subject, business type, attachments,
    schema result and signer certificate (read from the Signature WITHOUT verifying it).

    Exit 1 if the file cannot be read as edXML at all (XML_MALFORMED, XML_FORBIDDEN, SCHEMA_INVALID...).
    """
    if not file.is_file():
        usage_error(f"no such file: {file}")
    try:
        root = parse_untrusted(file.read_bytes())
        msg = env.from_element(root)
    except Refusal as r:
        fail(r, as_json=as_json, extra={"file": str(file)})
    s = summary(file, root, msg)
    if as_json:
        print_json(s)
    else:
        _render(s)
