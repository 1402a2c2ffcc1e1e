"""`axis trace`, `axis evidence export|verify`, `axis log verify`: the evidence log from the command line (contract
section 5).

Commands that talk to a running axis find it as ``axis stats`` does: ``./axis-work/connections.json`` by default,
``--connections FILE`` otherwise (``axis trace`` also takes ``--admin URL --token T``, or the environment's
``AXIS_ADMIN_URL``/``AXIS_ADMIN_TOKEN``). ``https://`` URLs are checked against connections.json's ``ca``; an
agency's ``tls_cert``/``tls_key``, when listed, are presented to its endpoint server (mutual TLS).

- ``axis trace DOCUMENT_ID [--sender CODE]`` — the document's events in log order, from the admin app
  (``/admin/documents/{sender}/{document_id}/trace``). Without ``--sender``, the log is searched for the
  DocumentId: one sender, its trace; several, exit 2 listing them.
- ``axis evidence export DOCUMENT_ID --sender CODE -o FILE.zip`` — the document's evidence bundle from the
  sender's endpoint server (``GET /v1/evidence?document_id=…`` with the sender's token; while no signed tree
  head covers its events yet the server answers 503 and the command retries for up to ``--wait`` seconds),
  written to FILE, then checked offline against connections.json's CA (exit 1 when it does not verify).
- ``axis evidence verify FILE.zip --ca CA_PEM [--crl CRL] [--at WHEN]`` — offline, no axis needed
  (:func:`axis.core.evidence_bundle.verify_bundle`): the envelope per the signing profile at the time of its
  ``submitted`` leaf, every inclusion proof, the tree head's signature and certificate chain (at ``--at``, default
  now), the manifest. Exit 1 with the reason (``PROOF_INVALID``, ``STH_INVALID``, ``SIGNATURE_INVALID``, …).
- ``axis log verify [--config FILE]`` — recompute the whole stored log (the store named by the running axis's
  configuration: ``config.yaml`` beside connections.json, or ``--config``) and check every stored tree head
  against the axis CA (:meth:`axis.log.store.LogStore.verify`). Exit 1 listing the problems.
- ``axis log archive --before DATE -o FILE [--drop]`` — write the sealed segment of the log's oldest leaves
  (:func:`axis.log.segment.archive`: the longest prefix, from the archived boundary, of leaves before DATE that a
  tree head covers), checked before it is renamed into place; ``--drop`` then drops them from the store
  (:meth:`axis.log.store.LogStore.drop_archived`). Nothing to archive: exit 0, no file.
- ``axis log verify --archive FILE [--ca CA_PEM] [--crl CRL] [--at WHEN]`` — check a segment offline
  (:func:`axis.log.segment.verify_segment`; the CA defaults to the running axis's). Exit 1 with ``PROOF_INVALID``
  or ``STH_INVALID``.

Exit status: 0 success, 1 refused or failed (the reason, when there is one, is printed), 2 usage error.
``--json`` prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from axis.cli._common import (
    DEFAULT_CONNECTIONS_PATH,
    EXIT_REFUSED,
    connection_tls,
    console,
    err_console,
    fail,
    print_json,
    read_connections,
    safe,
    usage_error,
)
from axis.client import tls_verify
from axis.core.reasons import Reason, Refusal

DEFAULT_CONNECTIONS = Path(DEFAULT_CONNECTIONS_PATH)
TIMEOUT = 60.0

evidence_app = typer.Typer(help="The evidence of a document's life: export its bundle, verify one offline.",
                           no_args_is_help=True)
log_app = typer.Typer(help="The axis's transparency log.", no_args_is_help=True)

CONNECTIONS_OPTION = typer.Option(None, "--connections", metavar="FILE",
                                  help="connections.json of the running axis (default ./axis-work/connections.json)")


# ---- shared -----------------------------------------------------------------------------------------------------


def _error(message: str, as_json: bool, **extra: Any) -> NoReturn:
    """An operation that failed without a reason code (the axis cannot be reached, nothing found): exit 1."""
    if as_json:
        print_json({"ok": False, "reason": None, "detail": message, **extra})
    else:
        err_console.print(f"[bold red]error:[/] {safe(message, lines=True)}")
    raise typer.Exit(EXIT_REFUSED)


def _client(url: str, ca: str | None, cert: tuple[str, str] | None = None) -> httpx.Client:
    verify: ssl.SSLContext | bool = True
    if url.startswith("https://") and (ca or cert):
        verify = tls_verify(ca, *(cert or (None, None)))  # axis.core.tlsconfig's client settings
    return httpx.Client(base_url=url.rstrip("/"), timeout=TIMEOUT, verify=verify, trust_env=False)


def _problem(r: httpx.Response) -> tuple[Reason | None, str]:
    """The reason and detail of an RFC 9457 answer (or the body's start)."""
    try:
        body = r.json()
    except ValueError:
        return None, r.text[:300]
    if not isinstance(body, dict):
        return None, r.text[:300]
    reason = body.get("reason")
    known = Reason(reason) if isinstance(reason, str) and reason in Reason.__members__ else None
    return known, str(body.get("detail") or body.get("title") or "")


def _answer_error(r: httpx.Response, what: str, as_json: bool) -> NoReturn:
    reason, detail = _problem(r)
    if reason is not None:
        fail(Refusal(reason, f"{what}: {detail}"), as_json=as_json, extra={"status": r.status_code})
    _error(f"{what} answered {r.status_code}: {detail}", as_json, status=r.status_code)


def _retry_after(r: httpx.Response) -> float:
    try:
        return max(0.2, float(r.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _when(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "?"
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} UTC"


def _describe(ev: dict[str, Any]) -> str:
    kind = ev.get("type")
    if kind == "submitted":
        return "accepted at the sender's endpoint server" + (f" {ev['server']}" if ev.get("server") else "")
    if kind == "routed":
        return "accepted by the router"
    if kind == "stored":
        return f"stored in the inbox of {ev.get('agency')}"
    if kind == "status":
        return f"status {ev.get('code')} from {ev.get('agency')}"
    if kind == "acked":
        return f"taken by {ev.get('agency')}"
    if kind == "refused":
        return f"refused: {ev.get('reason')}" + (f" (server {ev['server']})" if ev.get("server") else "")
    if kind == "admin":
        return f"administrator {ev.get('admin') or ''}: {ev.get('action') or ''}"
    return ""


def _timeline(events: list[dict[str, Any]]) -> None:
    """One line per event; the document's digest once (every line's when its leaves name several)."""
    digests = {str(ev.get("sha256")) for ev in events if ev.get("sha256")}
    if len(digests) == 1:
        console.print(f"  [dim]sha256 {safe(next(iter(digests)))}[/]", soft_wrap=True)
    width = max((len(str(ev.get("leaf_index"))) for ev in events), default=1) + 1
    for ev in events:
        digest = str(ev.get("sha256") or "")
        console.print(
            f"  {safe(_when(ev.get('at')))}  [dim]{safe('#' + str(ev.get('leaf_index'))):<{width}}[/]  "
            f"[bold]{safe(ev.get('type')):<9}[/] {safe(_describe(ev))}"
            + (f"  [dim]sha256 {safe(digest[:16])}…[/]" if digest and len(digests) > 1 else ""),
            soft_wrap=True,  # one event per line, whatever the terminal's width
        )


# ---- axis trace -------------------------------------------------------------------------------------------------


def _trace(admin: str, token: str | None, ca: str | None, document_id: str, sender: str | None,
           as_json: bool) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with _client(admin, ca) as c:
            if sender is None:
                r = c.get("/admin/documents", params={"document_id": document_id, "limit": 1000}, headers=headers)
                if r.status_code != 200:
                    _answer_error(r, "the admin app", as_json)
                senders = sorted({str(i.get("sender")) for i in r.json().get("items", [])})
                if not senders:
                    _error(f"the log holds nothing of document {document_id!r}", as_json)
                if len(senders) > 1:
                    usage_error(f"document {document_id!r} was sent by several agencies: {', '.join(senders)} — "
                                "choose one with --sender")
                sender = senders[0]
            r = c.get(f"/admin/documents/{quote(sender, safe='')}/{quote(document_id, safe='')}/trace",
                      headers=headers)
    except httpx.HTTPError as exc:
        _error(f"cannot reach the admin app at {admin}: {type(exc).__name__}: {exc}", as_json)
    if r.status_code == 404:
        _error(f"the log holds nothing of document {document_id!r} from {sender!r}", as_json)
    if r.status_code != 200:
        _answer_error(r, "the admin app", as_json)
    trace: dict[str, Any] = r.json()
    return trace


def register(app: typer.Typer) -> None:
    """Add ``axis trace``, ``axis evidence …`` and ``axis log …`` to the root app."""

    @app.command("trace")
    def trace(
        document_id: str = typer.Argument(..., metavar="DOCUMENT_ID", help="The document's DocumentId."),
        sender: str | None = typer.Option(None, "--sender", metavar="CODE", help="The sending agency's code."),
        as_json: bool = typer.Option(False, "--json", help="Print the trace as one JSON object."),
        connections: Path | None = CONNECTIONS_OPTION,
        admin: str | None = typer.Option(None, "--admin", envvar="AXIS_ADMIN_URL",
                                         help="admin app URL (default: from connections.json)"),
        token: str | None = typer.Option(None, "--token", envvar="AXIS_ADMIN_TOKEN", help="admin token"),
    ) -> None:
        """A document's life, from the evidence log: every event in log order."""
        ca = connection_tls(admin, connections=connections)["ca"] if admin else None
        if admin is None:
            raw, _ = read_connections(connections)
            section = raw.get("admin")
            if not isinstance(section, dict):
                usage_error("connections.json has no admin section")
            admin, token, ca = section.get("url"), token or section.get("token"), raw.get("ca")
            if not admin:
                usage_error("connections.json has no admin.url")
        t = _trace(admin, token, ca, document_id, sender, as_json)
        events = t.get("events") or []
        if as_json:
            print_json({"ok": True, **t})
            return
        console.print(f"[bold]{safe(t.get('document_id'))}[/] from [bold]{safe(t.get('sender'))}[/] — "
                      f"{len(events)} event{'s' if len(events) != 1 else ''} in the evidence log", soft_wrap=True)
        _timeline(events)

    app.add_typer(evidence_app, name="evidence")
    app.add_typer(log_app, name="log")


# ---- axis evidence ----------------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        usage_error(f"{what} {path} cannot be read: {exc.strerror or exc}")


def _parse_at(text: str | None) -> dt.datetime | None:
    if text is None or text == "now":
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        usage_error(f"--at must be an ISO 8601 date or datetime (or 'now'), not {text!r}")
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _report(report: Any, as_json: bool, extra: dict[str, Any]) -> None:
    """Print a BundleReport; exit 1 when it is a refusal."""
    if not report.ok:
        fail(Refusal(report.reason, report.detail), as_json=as_json,
             extra={**extra, **{k: v for k, v in report.as_dict().items() if k not in ("ok", "reason", "detail")}})
    if as_json:
        print_json({**report.as_dict(), **extra})
        return
    console.print(f"[bold green]ok[/] {safe(report.document_id)} from {safe(report.sender)}: {safe(report.detail)}",
                  soft_wrap=True)
    _timeline(report.leaves)


@evidence_app.command("verify")
def evidence_verify(
    file: Path = typer.Argument(..., metavar="FILE.zip", help="An evidence bundle (axis evidence export)."),
    ca: Path = typer.Option(..., "--ca", metavar="CA_PEM", help="The axis CA certificate you trust."),
    crl: Path | None = typer.Option(None, "--crl", metavar="CRL", help="A CRL to use instead of the bundle's."),
    at: str | None = typer.Option(None, "--at", metavar="WHEN",
                                  help="When the log's certificate must be valid (ISO 8601; default now)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"ok", "reason", "detail", ...} as JSON.'),
) -> None:
    """Verify an evidence bundle offline: envelope signature, every proof, the tree head's signature and chain."""
    from axis.core.evidence_bundle import verify_bundle

    data = _read(file, "bundle")
    ca_pem = _read(ca, "CA certificate")
    crl_pem = _read(crl, "CRL") if crl is not None else None
    report = verify_bundle(data, ca_pem, at=_parse_at(at), crl_pem=crl_pem)
    _report(report, as_json, {"file": str(file)})


@evidence_app.command("export")
def evidence_export(
    document_id: str = typer.Argument(..., metavar="DOCUMENT_ID", help="The document's DocumentId."),
    sender: str = typer.Option(..., "--sender", metavar="CODE",
                               help="The sending agency (its endpoint and token come from connections.json)."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE.zip", help="Where to write the bundle."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    connections: Path | None = CONNECTIONS_OPTION,
    wait: float = typer.Option(30.0, "--wait", metavar="SECONDS",
                               help="How long to wait for a tree head that covers the document's latest events."),
) -> None:
    """Export a document's evidence bundle (envelope, leaves with proofs, tree head, certificates, CRL)."""
    from axis.core.evidence_bundle import verify_bundle

    raw, where = read_connections(connections)
    agency = next((a for a in raw.get("agencies") or [] if isinstance(a, dict) and a.get("code") == sender), None)
    if agency is None or not agency.get("endpoint") or not agency.get("token"):
        usage_error(f"agency {sender} (with an endpoint and a token) is not in {where}")
    endpoint, ca = str(agency["endpoint"]), raw.get("ca")
    cert = (str(agency["tls_cert"]), str(agency["tls_key"])) if agency.get("tls_cert") and agency.get("tls_key") \
        else None
    deadline = time.monotonic() + wait
    try:
        with _client(endpoint, ca, cert) as c:
            while True:
                r = c.get("/v1/evidence", params={"document_id": document_id},
                          headers={"Authorization": f"Bearer {agency['token']}"})
                # 503: no signed tree head covers the document's events yet (one is signed every few seconds)
                if r.status_code != 503 or time.monotonic() >= deadline:
                    break
                time.sleep(min(_retry_after(r), max(0.0, deadline - time.monotonic()), 5.0))
    except httpx.HTTPError as exc:
        _error(f"cannot reach {sender}'s endpoint server at {endpoint}: {type(exc).__name__}: {exc}", as_json)
    if r.status_code != 200:
        _answer_error(r, f"{sender}'s endpoint server", as_json)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(r.content)
    except OSError as exc:
        usage_error(f"cannot write {output}: {exc.strerror or exc}")
    extra: dict[str, Any] = {"file": str(output), "bytes": len(r.content)}
    if not as_json:
        console.print(f"wrote {safe(output)} ({len(r.content):,} bytes)")
    if ca and Path(ca).is_file():  # check what arrived, as anyone receiving the file will
        crl = raw.get("crl")
        report = verify_bundle(r.content, Path(ca).read_bytes(),
                               crl_pem=Path(crl).read_bytes() if crl and Path(crl).is_file() else None)
        _report(report, as_json, extra)
    elif as_json:
        print_json({"ok": True, "reason": None, "detail": "written (not verified: no CA in connections.json)",
                    **extra})


# ---- axis log ---------------------------------------------------------------------------------------------------


def _classify(problems: list[str]) -> Reason:
    """STH_INVALID when every problem is a tree head's signature or certificate, else PROOF_INVALID."""
    def sth_only(p: str) -> bool:
        return p.startswith("tree head ") and "root" not in p and "leaves" not in p

    return Reason.STH_INVALID if all(sth_only(p) for p in problems) else Reason.PROOF_INVALID


async def _verify_log(url: str, ca_pem: bytes, crl_pem: bytes | None) -> tuple[list[str], int, Any, int]:
    from axis.log.store import LogStore

    store = await LogStore.open(url)
    try:
        problems = await store.verify([ca_pem], crl_pem)
        return problems, await store.size(), await store.latest_sth(), await store.archived_upto()
    finally:
        await store.close()


def _sqlite_file(url: str) -> Path | None:
    for prefix in ("sqlite+aiosqlite:///", "sqlite+pysqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :])
    return None if "://" in url else Path(url)


def _log_config(connections: Path | None, config: Path | None, as_json: bool) -> tuple[str, bytes, bytes | None]:
    """The running axis's log store URL, CA certificate and CRL (when there is one), from its configuration:
    ``--config``, else config.yaml beside connections.json. Usage errors exit 2; a missing SQLite log exits 1."""
    from axis.config import ConfigError, load_config

    if config is None:
        _, where = read_connections(connections)
        config = where.parent / "config.yaml"
    try:
        cfg = load_config(config)
    except (ConfigError, OSError) as exc:
        usage_error(f"the configuration {config} cannot be read: {exc}")
    url = cfg.evidence.url
    if cfg.pki.ca is None:
        usage_error(f"{config} names no CA (pki.ca)")
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.is_file():
        _error(f"the evidence log {sqlite_file} does not exist", as_json)
    ca_pem = _read(Path(cfg.pki.ca), "CA certificate")
    crl_pem = _read(Path(cfg.pki.crl), "CRL") if cfg.pki.crl is not None and Path(cfg.pki.crl).is_file() else None
    return url, ca_pem, crl_pem


class _Progress:
    """A progress bar on stderr for the leaves written and checked (only on a terminal: never in --json's way)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=err_console, transient=True,
                            disable=not err_console.is_terminal)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        task = self.tasks.get(phase)
        if task is None:
            task = self.tasks[phase] = self.bar.add_task(f"{phase} leaves", total=total)
        self.bar.update(task, completed=done, total=total)


def _segment_line(report: Any) -> str:
    sth = report.sth
    return (f"leaves {report.start:,}..{report.end - 1:,} ({report.leaves:,}, at {_when(report.min_at)} to "
            f"{_when(report.max_at)}), root {report.root_hash[:16]}…, in the tree head of {sth.tree_size:,} leaves "
            f"signed {_when(sth.timestamp)}")


def _verify_archive(file: Path, ca: Path | None, crl: Path | None, at: str | None, as_json: bool,
                    connections: Path | None, config: Path | None) -> None:
    """``axis log verify --archive FILE``: a sealed segment, offline (axis.log.segment.verify_segment)."""
    from axis.log.segment import verify_segment

    if not file.is_file():
        usage_error(f"segment {file} cannot be read: no such file")
    when = _parse_at(at)
    if ca is not None:
        ca_pem = _read(ca, "CA certificate")
    elif connections is None and config is None and not DEFAULT_CONNECTIONS.is_file():
        usage_error("--ca CA_PEM is needed (no ./axis-work/connections.json to take the axis CA from)")
    else:
        _, ca_pem, _ = _log_config(connections, config, as_json)
    crl_pem = _read(crl, "CRL") if crl is not None else None
    with _Progress() as progress:
        report = verify_segment(file, ca_pem, crl_pem=crl_pem, at=when, progress=progress)
    extra = {"file": str(file), "bytes": file.stat().st_size}
    if not report.ok:
        assert report.reason is not None
        fail(Refusal(report.reason, report.detail), as_json=as_json,
             extra={**extra, **{k: v for k, v in report.as_dict().items() if k not in ("ok", "reason", "detail")}})
    if as_json:
        print_json({**report.as_dict(), **extra})
    else:
        console.print(f"[bold green]ok[/] the segment {safe(file)} is intact: {safe(_segment_line(report))}",
                      soft_wrap=True)


@log_app.command("verify")
def log_verify(
    as_json: bool = typer.Option(False, "--json", help='Print {"ok", "reason", "detail", "problems", ...}.'),
    connections: Path | None = CONNECTIONS_OPTION,
    config: Path | None = typer.Option(None, "--config", metavar="FILE",
                                       help="The axis configuration (default: config.yaml beside connections.json)."),
    archive: Path | None = typer.Option(None, "--archive", metavar="FILE",
                                        help="Check this sealed segment (axis log archive) offline instead."),
    ca: Path | None = typer.Option(None, "--ca", metavar="CA_PEM",
                                   help="With --archive: the axis CA certificate you trust (default: the axis's)."),
    crl: Path | None = typer.Option(None, "--crl", metavar="CRL",
                                    help="With --archive: a CRL to use instead of the segment's."),
    at: str | None = typer.Option(None, "--at", metavar="WHEN",
                                  help="With --archive: when the log certificate must be valid (ISO 8601; default "
                                       "now; an old segment: e.g. its tree head's time)."),
) -> None:
    """Check the stored log (every leaf and subtree hash recomputed, every tree head's root and signature), or
    with --archive a sealed segment offline (its leaves make its root, a consistency proof leads that root to a
    signed tree head, whose signature and chain verify)."""
    if archive is not None:
        _verify_archive(archive, ca, crl, at, as_json, connections, config)
        return
    if ca is not None or crl is not None or at is not None:
        usage_error("--ca, --crl and --at go with --archive (the stored log is checked against the axis's CA)")
    url, ca_pem, crl_pem = _log_config(connections, config, as_json)
    try:
        problems, size, sth, archived = asyncio.run(_verify_log(url, ca_pem, crl_pem))
    except Exception as exc:  # the store cannot be opened or read
        _error(f"cannot read the evidence log {url}: {type(exc).__name__}: {exc}", as_json)
    extra = {"tree_size": size, "archived_upto": archived, "sth": sth.to_json() if sth is not None else None}
    if problems:
        if as_json:
            print_json({"ok": False, "reason": _classify(problems).value, "detail": problems[0],
                        "problems": problems, **extra})
        else:
            err_console.print(f"[bold red]refused[/] {_classify(problems).value}: the log does not verify "
                              f"({len(problems)} problem{'s' if len(problems) != 1 else ''})")
            for p in problems:
                err_console.print(f"  - {safe(p)}")
        raise typer.Exit(EXIT_REFUSED)
    detail = (f"{size:,} leaves; the latest tree head covers {sth.tree_size:,}" if sth is not None
              else f"{size:,} leaves; no tree head signed yet")
    if archived:
        detail += f" (leaves 0..{archived - 1:,} archived and dropped: checked through the subtree hashes kept)"
    if as_json:
        print_json({"ok": True, "reason": None, "detail": detail, "problems": [], **extra})
    else:
        console.print(f"[bold green]ok[/] the evidence log is intact: {detail}", soft_wrap=True)


def _parse_before(text: str) -> int:
    """``--before``: an ISO 8601 date or datetime (UTC unless it says otherwise), or 'now'; ms since the epoch."""
    if text == "now":
        return int(time.time() * 1000)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        usage_error(f"--before must be an ISO 8601 date or datetime (or 'now'), not {text!r}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return max(0, int(t.timestamp() * 1000))


async def _archive(url: str, before: int, output: Path, ca_pem: bytes, crl_pem: bytes | None, drop: bool,
                   progress: _Progress) -> tuple[Any, int | None, int]:
    from axis.log.segment import archive
    from axis.log.store import LogStore

    store = await LogStore.open(url)
    try:
        report = await archive(store, before, output, ca_pem=ca_pem, crl_pem=crl_pem, progress=progress)
        dropped = await store.drop_archived(report.end) if drop and report is not None and report.end else None
        return report, dropped, await store.archived_upto()
    finally:
        await store.close()


@log_app.command("archive")
def log_archive(
    before: str = typer.Option(..., "--before", metavar="DATE",
                               help="Archive the leaves older than this (ISO 8601 date or datetime, UTC by default)."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE", help="The segment file to write (a ZIP)."),
    drop: bool = typer.Option(False, "--drop", help="Then drop the archived leaves from the store (the subtree "
                                                    "hashes proofs need are kept)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    connections: Path | None = CONNECTIONS_OPTION,
    config: Path | None = typer.Option(None, "--config", metavar="FILE",
                                       help="The axis configuration (default: config.yaml beside connections.json)."),
) -> None:
    """Write the log's oldest leaves to a sealed segment: the longest prefix of the log (from the archived
    boundary) whose leaves are all before DATE and that a signed tree head covers, with that tree head, a
    consistency proof to it and the log certificate — checkable offline with `axis log verify --archive FILE`."""
    before_ms = _parse_before(before)
    if output.exists():
        usage_error(f"{output} exists (a segment is never overwritten)")
    url, ca_pem, crl_pem = _log_config(connections, config, as_json)
    try:
        with _Progress() as progress:
            report, dropped, archived = asyncio.run(_archive(url, before_ms, output, ca_pem, crl_pem, drop, progress))
    except Refusal as exc:
        fail(exc, as_json=as_json, extra={"file": None})
    except FileExistsError as exc:
        usage_error(str(exc))
    except Exception as exc:  # the store cannot be opened or read, the file cannot be written
        _error(f"cannot archive the evidence log {url}: {type(exc).__name__}: {exc}", as_json)
    if report is None:
        detail = (f"nothing to archive: no leaf from {archived:,} on is both before {_when(before_ms)} and covered "
                  "by a signed tree head")
        if as_json:
            print_json({"ok": True, "reason": None, "detail": detail, "file": None, "leaves": 0,
                        "archived_upto": archived})
        else:
            console.print(safe(detail))
        return
    size = output.stat().st_size
    extra = {"file": str(output), "bytes": size, "bytes_per_leaf": round(size / report.leaves, 1),
             "dropped": dropped, "archived_upto": archived}
    if as_json:
        print_json({**report.as_dict(), "detail": f"wrote {output}: {report.detail}", **extra})
        return
    console.print(f"[bold green]ok[/] wrote {safe(output)} ({size:,} bytes, {size / report.leaves:.1f} per leaf): "
                  f"{safe(_segment_line(report))}", soft_wrap=True)
    if dropped is not None:
        console.print(f"dropped {dropped:,} archived leaves from the store (it holds the leaves from {archived:,} on)",
                      soft_wrap=True)
