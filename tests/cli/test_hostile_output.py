"""Finding 6 (markup injection): untrusted text — a document's fields, a server's answer, a file name, a
certificate subject — reaches the terminal inert in every human-readable output of the CLI.

Rich markup in such text (``[/]`` used to crash `axis inbox` with a MarkupError; ``[link=…]`` printed a terminal
hyperlink) is printed verbatim, and terminal control characters (ESC, BEL, CR, the C1 CSI/OSC U+009B/U+009D that
XML 1.0 can carry) are shown as visible escapes, never written raw. The commands run as real processes with a
forced colour terminal (so Rich WOULD emit OSC-8 hyperlinks for injected ``[link]`` markup); Rich's own colour
codes (SGR ``ESC[…m``) are the only escape sequences allowed in the output.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from axis.client import Client
from axis.config import generate_workdir
from axis.core import envelope as env
from axis.core import signing
from tests.stats.stats_live import serve
from tests.support.testing import free_port_block

G22, H53, G01 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01"

LINK = "[link=https://evil.example/x]click[/link]"
MARKUP = f"[/] {LINK} [bold red]alarm[/] :warning:"
# what an XML 1.0 document can carry besides markup: CR and C1 controls (CSI U+009B; OSC U+009D … ST U+009C)
XML_HOSTILE = f"{MARKUP} a\rb \x9b2J \x9d8;;https://evil.example/c1\x9cc1\x9d8;;\x9c"
# what a file name, a certificate, a YAML directory or an HTTP answer can carry too: ESC and BEL
RAW_HOSTILE = f"{MARKUP} \x1b]8;;https://evil.example/osc\x07osc\x1b]8;;\x07 \x1b[2J\x1b[1A"
# a file name cannot hold "/": an unclosed [link] (styles the rest of the line) and an OSC-8 hyperlink
NAME_HOSTILE = "[link=https:evil.example]click \x1b]8;;https:evil.example\x07osc\x1b]8;;\x07 \x9b2J [bold]x"

SGR = re.compile(r"\x1b\[[0-9;]*m")  # Rich's own colours (the terminal is forced)
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # anything else that a terminal acts upon


def axis(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a real process on a forced colour terminal (Rich emits styles and OSC-8 links)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS")}
    environ.update(FORCE_COLOR="1", TTY_COMPATIBLE="1", TERM="xterm-256color", COLORTERM="truecolor",
                   COLUMNS="400", LINES="100", PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "axis", *args], capture_output=True, text=True, encoding="utf-8",
                          timeout=timeout, env=environ, cwd=Path(__file__).resolve().parents[2])


def assert_inert(out: str, *verbatim: str) -> str:
    """No traceback, no hyperlink, no control character but Rich's colours; ``verbatim`` texts shown as such."""
    assert "Traceback" not in out and "MarkupError" not in out, out
    assert "\x1b]8;" not in out and "\x9d" not in out, f"a hyperlink escape sequence reached the terminal: {out!r}"
    shown = SGR.sub("", out)
    bad = CONTROLS.search(shown)
    assert bad is None, f"raw control character {bad.group()!r} in {shown!r}"
    for text in verbatim:
        assert text in shown, f"{text!r} not shown verbatim in {shown!r}"
    return shown


def check(proc: subprocess.CompletedProcess[str], *verbatim: str, code: int = 0) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    return assert_inert(out, *verbatim)


# -- axis envelope inspect / validate / verify -------------------------------------------------------------------


def _hostile_cert(cn: str, uid: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.USER_ID, uid)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


CERT_CN = "\x1b]8;;https://evil.example\x07cn\x1b]8;;\x07[/]\x9b2J"  # CN: at most 64 characters
CERT_UID = LINK


@pytest.fixture
def hostile_document(tmp_path: Path) -> Path:
    """A signed document whose every shown field is hostile, under a hostile file name."""
    msg = env.new_document(
        env.Organization(G22, organ_name=XML_HOSTILE),
        [env.Organization(H53, organ_name=XML_HOSTILE), G01],
        XML_HOSTILE,
        number="12",
        notation="VP[/]\x9b2J",
        doc_type="update",
        related_document_id=f"{G22},2024/01/02,1/{LINK}",
        attachments=[env.Attachment("cid:1", XML_HOSTILE + ".pdf", b"%PDF-1", content_type="application/pdf",
                                    description=XML_HOSTILE)],
    )
    key, cert = _hostile_cert(CERT_CN, CERT_UID)
    path = tmp_path / (NAME_HOSTILE + ".edxml")
    path.write_bytes(signing.sign(env.build(msg), key, cert))
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_inspect_hostile_document(hostile_document: Path) -> None:
    shown = check(axis("envelope", "inspect", str(hostile_document)),
                  "[/]", LINK, "[bold red]alarm[/]", ":warning:", "a\\rb", "\\x9b2J", "\\x9d8;;https://evil.example/c1",
                  "VP[/]\\x9b2J", f"acts on {G22},2024/01/02,1/{LINK}", "[link=https:evil.example]click",
                  "\\x1b]8;;https:evil.example\\x07osc", "cn\\x1b]8", "UID=" + LINK)
    assert shown.count(LINK) >= 5  # sender, recipient, subject, attachment, related id, signer UID


def test_inspect_hostile_status(tmp_path: Path) -> None:
    rf = env.ResponseFor(organ_id=G22, document_id=f"{G22},2024/01/02,7/{LINK}", code="7/[/]",
                         promulgation_date="2024/01/02")
    status = env.new_status(env.Organization(H53, organ_name=XML_HOSTILE), rf, "03", description=XML_HOSTILE,
                            timestamp="2024/01/02 [/]")
    path = tmp_path / "status.edxml"
    path.write_bytes(env.build(status))
    check(axis("envelope", "inspect", str(path)), "[/]", LINK, "a\\rb", "\\x9b2J", f"{G22},2024/01/02,7/{LINK}")


def test_validate_and_verify_hostile_file_names(tmp_path: Path, hostile_document: Path) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / (NAME_HOSTILE + ".xml")).write_bytes(b"<edXML>[/] " + LINK.encode() + b"\x1b")
    (bad / (NAME_HOSTILE + "-2.edxml")).write_bytes(hostile_document.read_bytes())
    expect = ("[link=https:evil.example]click", "\\x1b]8;;https:evil.example\\x07osc", "\\x9b2J")
    check(axis("envelope", "validate", str(bad)), *expect, code=1)
    check(axis("envelope", "verify", str(bad), "--ca", str(tmp_path / "ca.pem")), *expect, code=1)
    check(axis("envelope", "inspect", str(bad / (NAME_HOSTILE + ".xml"))), code=1)  # refused: file name shown


# -- axis inbox / axis send: a real axis (`axis up` machinery) and a hostile server ------------------------------


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_send_and_inbox_with_a_real_endpoint(tmp_path: Path, vhost_url: str) -> None:
    from axis.ops.up import start

    agencies = [(G22, "Văn phòng Chính phủ", "d1"), (H53, "UBND tỉnh Tây Ninh", "sh"), (G01, "Bộ Công an", "sh")]
    base = free_port_block(3)
    work = tmp_path / "work"
    path, known = generate_workdir(work, agencies, [("d1", "dedicated"), ("sh", "shared")], base_port=base + 1,
                                   admin_port=base, amqp_url=vhost_url)
    run = start(path, work, known, routers=1)
    try:
        by = {a["code"]: a for a in json.loads(run.connections_path.read_text())["agencies"]}
        doc = tmp_path / "doc.edxml"
        doc.write_bytes(env.build(env.new_document(env.Organization(G22, organ_name=XML_HOSTILE), [H53],
                                                   XML_HOSTILE, number="9", notation=f"VP[/]{LINK}\x9b2J")))
        conns = str(run.connections_path)  # HTTPS: the axis CA comes from connections.json
        check(axis("send", str(doc), "--endpoint", by[G22]["endpoint"], "--token", by[G22]["token"],
                   "--connections", conns), f"VP[/]{LINK}\\x9b2J", "accepted")
        with Client.from_connections(run.connections_path, H53) as c:
            deadline = time.monotonic() + 30
            while not (items := c.inbox()) and time.monotonic() < deadline:
                time.sleep(0.2)
        assert [i["subject"] for i in items] == [XML_HOSTILE]  # the endpoint keeps the subject as it came
        check(axis("inbox", "--endpoint", by[H53]["endpoint"], "--token", by[H53]["token"], "--connections", conns),
              "[/]", LINK, "[bold red]alarm[/]", ":warning:", "a\\rb", "\\x9b2J", "\\x9d8;;https://evil.example/c1",
              f"VP[/]{LINK}\\x9b2J", "inbox (1)")
    finally:
        run.stop()


@dataclass
class Hostile:
    """A hostile endpoint server / admin app: its answers carry markup and raw escape sequences."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def answer(request: Request) -> JSONResponse:
            return JSONResponse(self.body, status_code=self.status)

        return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


@pytest.fixture
def hostile() -> Iterator[tuple[Hostile, str]]:
    h = Hostile()
    with serve(h.app()) as url:
        yield h, url


def test_inbox_send_and_errors_from_a_hostile_server(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    h, url = hostile
    item = {"id": RAW_HOSTILE, "received_at": RAW_HOSTILE, "from": RAW_HOSTILE, "kind": RAW_HOSTILE,
            "document_id": RAW_HOSTILE, "subject": RAW_HOSTILE, "acked": False}
    expect = ("[/]", LINK, "[bold red]alarm[/]", ":warning:", "\\x1b]8;;https://evil.example/osc\\x07osc", "\\x1b[2J")
    h.body = {"items": [item]}
    check(axis("inbox", "--endpoint", url, "--token", "t"), *expect)

    doc = tmp_path / "doc.edxml"
    doc.write_bytes(env.build(env.new_document(G22, [H53], "x")))
    h.status, h.body = 202, {"document_id": RAW_HOSTILE, "recipients": [RAW_HOSTILE], "id": RAW_HOSTILE}
    check(axis("send", str(doc), "--endpoint", url, "--token", "t"), *expect)

    for status, reason, code in ((422, "SCHEMA_INVALID", 1), (500, None, 2), (400, RAW_HOSTILE, 2)):
        h.status, h.body = status, {"reason": reason, "detail": RAW_HOSTILE}
        check(axis("inbox", "--endpoint", url, "--token", "t"), *expect, code=code)
        check(axis("send", str(doc), "--endpoint", url, "--token", "t"), *expect, code=code)


# -- axis stats: a real admin app over a real store, hostile names; a hostile admin app -------------------------


@dataclass(frozen=True)
class _Agency:
    code: str
    name: str
    server: str


@dataclass(frozen=True)
class _Server:
    id: str
    kind: str


@dataclass(frozen=True)
class _Directory:
    agencies: dict[str, _Agency]
    servers: dict[str, _Server]


def test_stats_table_with_hostile_names(tmp_path: Path) -> None:
    from axis.admin.app import AdminSettings, create_app
    from axis.stats.store import Accepted, Delivered, Refused, StatsStore

    url = f"sqlite:///{tmp_path / 'stats.sqlite3'}"
    at = dt.datetime(2019, 3, 12, 8, tzinfo=dt.UTC)

    async def fill() -> None:
        store = await StatsStore.open(url)
        try:
            await store.record(
                accepted=[Accepted(f"{G22}|D1|0", G22, "dedicated", "D1", 0, 100, ((H53, "shared"),), 3.0, at)],
                delivered=[Delivered(f"{G22}|D1|0", G22, "dedicated", H53, "shared", "D1", at)],
                refused=[Refused("m1", G22, RAW_HOSTILE, 50, at)],
            )
        finally:
            await store.close()

    asyncio.run(fill())
    server = "srv" + RAW_HOSTILE
    directory = _Directory(
        agencies={G22: _Agency(G22, RAW_HOSTILE, server), H53: _Agency(H53, "UBND [/]", server)},
        servers={server: _Server(server, "dedicated")},
    )
    expect = ("[/]", LINK, "[bold red]alarm[/]", ":warning:", "\\x1b]8;;https://evil.example/osc\\x07osc")
    with serve(create_app(AdminSettings(stats_url=url, token="tok", directory=directory))) as admin:
        for by in ("agency", "server"):
            check(axis("stats", "--admin", admin, "--token", "tok", "--by", by), *expect)


def test_stats_answers_of_a_hostile_admin_app(hostile: tuple[Hostile, str]) -> None:
    h, url = hostile
    expect = ("[/]", LINK, "\\x1b]8;;https://evil.example/osc\\x07osc")
    h.status, h.body = 500, {"detail": RAW_HOSTILE}
    check(axis("stats", "--admin", url, "--token", "t"), *expect, code=1)
    h.status = 200
    h.body = {
        "agencies": RAW_HOSTILE, "dedicated": 1, "shared": 0, "sent": 2, "received": RAW_HOSTILE, "refused": 1,
        "filters": {"from": RAW_HOSTILE, "agency": RAW_HOSTILE}, "pending": RAW_HOSTILE,
        "breakdown": [{"key": RAW_HOSTILE, "name": RAW_HOSTILE, "kind": RAW_HOSTILE, "server": RAW_HOSTILE,
                       "sent": RAW_HOSTILE, "received": 1, "refused": 0}],
        "routes": {"dedicated->dedicated": RAW_HOSTILE}, "by_reason": {RAW_HOSTILE: RAW_HOSTILE},
    }
    check(axis("stats", "--admin", url, "--token", "t"), *expect)


# -- the simulator's report (axis simulate / axis demo) ---------------------------------------------------------


def test_sim_report_renders_untrusted_text_inert() -> None:
    from axis.sim.report import Report, Reporter

    r = Report(scenario=RAW_HOSTILE, seed=1, refused_sync={RAW_HOSTILE: 1}, refused_async={XML_HOSTILE: 2},
               unexpected=[f"good document {XML_HOSTILE} refused: HTTP 500 {RAW_HOSTILE}"],
               moves=[{"agency": RAW_HOSTILE, "to": RAW_HOSTILE, "result": f"refused: {RAW_HOSTILE}"}],
               dashboard=RAW_HOSTILE)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, color_system="truecolor", width=400)
    r.render(console)
    assert_inert(buf.getvalue(), "[/]", LINK, "[bold red]alarm[/]", "\\x1b]8;;https://evil.example/osc", "\\x9b2J")
    buf = io.StringIO()  # Reporter.log takes markup (its callers' own); control characters never pass
    rep = Reporter(console=Console(file=buf, force_terminal=True, color_system="truecolor", width=400))
    rep.log(f"[yellow]migration[/] {RAW_HOSTILE.replace('[', '')}")
    assert_inert(buf.getvalue(), "\\x1b]8;;https://evil.example/osc")
