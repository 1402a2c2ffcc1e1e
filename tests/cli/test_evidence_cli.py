"""`axis trace`, `axis evidence verify` and `axis log verify` through the Typer app, against a real work directory
(generate_workdir: CA, agency and log certificates, config.yaml), a real evidence log filled by LogStore.append with
tree heads signed by the log key, and the real admin app served on 127.0.0.1 (found through connections.json)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from axis.admin.app import AdminSettings, create_app
from axis.cli import app
from axis.config import Config, generate_workdir, load_config, write_connections
from axis.core import pki as pkimod
from axis.core.envelope import parse
from axis.core.evidence import Event, inclusion_json, sign_sth
from axis.core.evidence_bundle import M_ENVELOPE, M_LEAVES, M_STH, build_bundle, select_leaves
from axis.core.signing import sign
from axis.log.store import LogStore
from tests.stats.stats_live import serve
from tests.support.evidence import (
    document_events,
    edit_json,
    flip_attachment_byte,
    flip_b64_byte,
    flip_hex,
    noise,
    rezip,
)
from tests.support.testing import make_edxml, make_pki

runner = CliRunner()
G22, H41, H42 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H42"
AGENCIES = [(G22, "Văn phòng Chính phủ", "d1"), (H41, "Bộ Tài chính", "sh"), (H42, "Bộ Tư pháp", "sh")]
SERVERS = [("d1", "dedicated"), ("sh", "shared")]
HOSTILE = f"{G22},2019/03/14,\x1b[31mred\x1b]8;;http://evil\x07[bold]x[/]"


def run_async(coro: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Work:
    dir: Path
    config: Config
    connections: dict[str, Any]
    envelopes: dict[str, bytes]  # DocumentId → signed bytes

    @property
    def conn_path(self) -> Path:
        return self.dir / "connections.json"

    @property
    def ca(self) -> Path:
        assert self.config.pki.ca is not None
        return self.config.pki.ca

    @property
    def db(self) -> Path:
        return Path(self.config.evidence.url.removeprefix("sqlite:///"))

    def signed(self, sender: str, to: list[str], number: int) -> bytes:
        a = next(a for a in self.connections["agencies"] if a["code"] == sender)
        key = pkimod.load_key(Path(a["key"]).read_bytes())
        cert = pkimod.load_certs(Path(a["cert"]).read_bytes())[0]
        data = sign(make_edxml(sender, to, number=number, size=3000), key, cert)
        self.envelopes[parse(data).document_id] = data  # type: ignore[union-attr]
        return data

    async def _sign_sth(self, store: LogStore) -> None:
        ev = self.config.evidence
        assert ev.key is not None and ev.cert is not None
        size = await store.size()
        await store.save_sth(sign_sth(size, int(time.time() * 1000), await store.root(size),
                                      pkimod.load_key(ev.key.read_bytes()), ev.cert.read_bytes()))

    def fill(self, events: list[Event]) -> None:
        async def go() -> None:
            store = await LogStore.open(self.config.evidence.url)
            try:
                await store.append(events)
                await self._sign_sth(store)
            finally:
                await store.close()

        run_async(go())

    def bundle(self, document_id: str, sender: str) -> bytes:
        envelope = self.envelopes[document_id]

        async def go() -> bytes:
            store = await LogStore.open(self.config.evidence.url)
            try:
                sth = await store.latest_sth()
                assert sth is not None
                chosen = select_leaves(envelope, await store.leaves_of(sender, document_id))
                leaves = [(i, leaf, inclusion_json(i, sth.tree_size, leaf, await store.inclusion(i, sth.tree_size)))
                          for i, leaf in chosen]
            finally:
                await store.close()
            assert self.config.pki.crl is not None
            return build_bundle(envelope, leaves, sth, self.ca.read_bytes(), self.config.pki.crl.read_bytes())

        return run_async(go())  # type: ignore[no-any-return]


def make_work(root: Path) -> Work:
    path, connections = generate_workdir(root, AGENCIES, SERVERS, base_port=28701)
    w = Work(root, load_config(path), connections, {})
    now = int(time.time() * 1000) - 60_000
    doc1 = w.signed(G22, [H41, H42], 1)
    doc2 = w.signed(H41, [G22], 2)
    w.fill([*noise(3, now), *document_events(doc1, now, H41), *document_events(doc2, now + 10, G22),
            Event("stored", now + 50, G22, parse(doc1).document_id, 1, hashlib.sha256(doc1).hexdigest(),  # type: ignore[union-attr]
                  agency=H42),
            Event("submitted", now + 60, G22, HOSTILE, 1, "")])
    write_connections(root, connections)
    return w


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Work]:
    """A work dir whose connections.json names the real admin app, served on 127.0.0.1."""
    w = make_work(tmp_path_factory.mktemp("evidence-cli") / "work")
    settings = AdminSettings.from_config(w.config, amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost",
                                         log_check_seconds=0.5)
    with serve(create_app(settings)) as admin:
        w.connections["admin"]["url"] = admin
        write_connections(w.dir, w.connections)
        yield w


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def doc_id(w: Work, sender: str) -> str:
    return next(d for d in w.envelopes if d.startswith(sender))


# ---- axis trace -------------------------------------------------------------------------------------------------


def test_trace_json(served: Work) -> None:
    doc = doc_id(served, G22)
    r = cli("trace", doc, "--connections", str(served.conn_path), "--json")
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)
    assert t["ok"] is True and (t["document_id"], t["sender"]) == (doc, G22)
    assert [e["type"] for e in t["events"]] == ["submitted", "routed", "stored", "status", "acked", "stored"]
    assert [e["leaf_index"] for e in t["events"]] == sorted(e["leaf_index"] for e in t["events"])
    assert t["events"][0]["sha256"] == hashlib.sha256(served.envelopes[doc]).hexdigest()
    # --sender gives the same
    r2 = cli("trace", doc, "--sender", G22, "--connections", str(served.conn_path), "--json")
    assert r2.exit_code == 0 and json.loads(r2.stdout) == t


def test_trace_human(served: Work) -> None:
    doc = doc_id(served, H41)
    r = cli("trace", doc, "--connections", str(served.conn_path))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert doc in lines[0] and H41 in lines[0] and "5 events" in lines[0]
    assert lines[1].split() == ["sha256", hashlib.sha256(served.envelopes[doc]).hexdigest()]  # once: one digest
    assert "submitted" in lines[2] and "accepted at the sender's endpoint server srv-a" in lines[2]
    assert f"stored in the inbox of {G22}" in r.stdout and f"status 01 from {G22}" in r.stdout
    assert " UTC" in lines[2] and len(lines) == 7


def test_trace_prints_untrusted_text_inertly(served: Work) -> None:
    r = cli("trace", HOSTILE, "--sender", G22, "--connections", str(served.conn_path))
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "\\x1b[31mred" in r.stdout and "[bold]x[/]" in r.stdout  # shown, not acted upon


def test_trace_not_in_the_log(served: Work) -> None:
    r = cli("trace", "NO-SUCH-DOCUMENT", "--connections", str(served.conn_path), "--json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["ok"] is False
    r = cli("trace", doc_id(served, G22), "--sender", H42, "--connections", str(served.conn_path))
    assert r.exit_code == 1 and "nothing" in r.output


def test_trace_with_two_senders_asks_for_one(served: Work) -> None:
    shared = "SHARED-ID,2019/03/12,1"
    served.fill([Event("submitted", 1, G22, shared, 1, ""), Event("submitted", 2, H41, shared, 1, "")])
    r = cli("trace", shared, "--connections", str(served.conn_path))
    assert r.exit_code == 2 and "--sender" in r.output and G22 in r.output and H41 in r.output
    r = cli("trace", shared, "--sender", H41, "--connections", str(served.conn_path), "--json")
    assert r.exit_code == 0 and [e["sender"] for e in json.loads(r.stdout)["events"]] == [H41]


def test_trace_wrong_token_or_no_axis(served: Work, tmp_path: Path) -> None:
    admin = served.connections["admin"]["url"]
    r = cli("trace", "x", "--admin", admin, "--token", "wrong", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["reason"] == "UNAUTHORIZED"
    r = cli("trace", "x", "--connections", str(tmp_path / "missing.json"))
    assert r.exit_code == 2 and "missing.json" in r.output
    r = cli("trace", "x", "--admin", "http://127.0.0.1:9", "--token", "t", "--json")
    assert r.exit_code == 1 and "cannot reach" in json.loads(r.stdout)["detail"]


def test_help() -> None:
    for args in (["trace"], ["evidence"], ["evidence", "export"], ["evidence", "verify"], ["log"], ["log", "verify"]):
        r = cli(*args, "--help")
        assert r.exit_code == 0 and "Usage" in r.output, args
    assert cli("evidence", "verify").exit_code == 2  # no FILE, no --ca


# ---- axis evidence verify ---------------------------------------------------------------------------------------


def test_evidence_verify(served: Work, tmp_path: Path) -> None:
    doc = doc_id(served, G22)
    bundle = tmp_path / "evidence.zip"
    bundle.write_bytes(served.bundle(doc, G22))
    r = cli("evidence", "verify", str(bundle), "--ca", str(served.ca), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert (report["ok"], report["reason"], report["document_id"], report["sender"]) == (True, None, doc, G22)
    assert report["file"] == str(bundle) and len(report["leaves"]) == 6
    r = cli("evidence", "verify", str(bundle), "--ca", str(served.ca))
    assert r.exit_code == 0 and r.stdout.startswith("ok ") and "submitted" in r.stdout


def _refused(path: Path, ca: Path, reason: str) -> dict[str, Any]:
    r = cli("evidence", "verify", str(path), "--ca", str(ca), "--json")
    assert r.exit_code == 1, r.output
    out: dict[str, Any] = json.loads(r.stdout)
    assert out["ok"] is False and out["reason"] == reason, out
    human = cli("evidence", "verify", str(path), "--ca", str(ca))
    assert human.exit_code == 1 and reason in human.output
    return out


def test_evidence_verify_tampered(served: Work, tmp_path: Path) -> None:
    doc = doc_id(served, H41)
    good = served.bundle(doc, H41)
    cases = {
        "SIGNATURE_INVALID": rezip(good, {M_ENVELOPE: flip_attachment_byte(served.envelopes[doc])}),
        "PROOF_INVALID": edit_json(good, M_LEAVES, lambda leaves: [
            *leaves[:1], {**leaves[1], "proof": {**leaves[1]["proof"], "audit_path": [
                flip_hex(leaves[1]["proof"]["audit_path"][0]), *leaves[1]["proof"]["audit_path"][1:]]}},
            *leaves[2:]]),
        "STH_INVALID": edit_json(good, M_STH, lambda sth: {**sth, "signature": flip_b64_byte(sth["signature"], 9)}),
    }
    for reason, data in cases.items():
        path = tmp_path / f"{reason}.zip"
        path.write_bytes(data)
        _refused(path, served.ca, reason)
    # a CA that is not the axis's
    other = make_pki(tmp_path / "other", [G22], algorithm="ec")
    path = tmp_path / "good.zip"
    path.write_bytes(good)
    _refused(path, other.ca_pem, "STH_INVALID")


def test_evidence_verify_usage(served: Work, tmp_path: Path) -> None:
    r = cli("evidence", "verify", str(tmp_path / "none.zip"), "--ca", str(served.ca))
    assert r.exit_code == 2
    path = tmp_path / "b.zip"
    path.write_bytes(served.bundle(doc_id(served, G22), G22))
    assert cli("evidence", "verify", str(path), "--ca", str(served.ca), "--at", "yesterday").exit_code == 2
    r = cli("evidence", "verify", str(path), "--ca", str(served.ca), "--at", "2999-01-01", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["reason"] == "STH_INVALID"  # the log certificate expired


# ---- axis evidence export (errors that need no endpoint; the export itself: test_evidence_export.py) -------------


def test_export_usage(served: Work, tmp_path: Path) -> None:
    r = cli("evidence", "export", "X", "--sender", "000.00.00.Z99", "-o", str(tmp_path / "x.zip"),
            "--connections", str(served.conn_path))
    assert r.exit_code == 2 and "000.00.00.Z99" in r.output
    r = cli("evidence", "export", "X", "--sender", G22, "-o", str(tmp_path / "x.zip"),
            "--connections", str(tmp_path / "missing.json"))
    assert r.exit_code == 2
    # the agency's endpoint server is not running
    r = cli("evidence", "export", "X", "--sender", G22, "-o", str(tmp_path / "x.zip"),
            "--connections", str(served.conn_path), "--json")
    assert r.exit_code == 1 and "cannot reach" in json.loads(r.stdout)["detail"]
    assert not (tmp_path / "x.zip").exists()


# ---- axis log verify --------------------------------------------------------------------------------------------


@pytest.fixture
def work(tmp_path: Path) -> Work:
    return make_work(tmp_path / "work")


def test_log_verify_ok(work: Work) -> None:
    r = cli("log", "verify", "--connections", str(work.conn_path), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["problems"] == [] and out["tree_size"] == 15
    assert out["sth"]["tree_size"] == 15
    r = cli("log", "verify", "--config", str(work.dir / "config.yaml"))
    assert r.exit_code == 0 and "intact" in r.stdout and "15 leaves" in r.stdout


def test_log_verify_a_rewritten_leaf(work: Work) -> None:
    with sqlite3.connect(work.db) as db:
        (leaf,) = db.execute("SELECT leaf FROM axis_log_leaves WHERE idx = 4").fetchone()
        db.execute("UPDATE axis_log_leaves SET leaf = ? WHERE idx = 4", (bytes(leaf).replace(b"routed", b"rooted"),))
    r = cli("log", "verify", "--connections", str(work.conn_path), "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert out["reason"] == "PROOF_INVALID" and any("leaf 4" in p for p in out["problems"])
    r = cli("log", "verify", "--connections", str(work.conn_path))
    assert r.exit_code == 1 and "PROOF_INVALID" in r.output and "leaf 4" in r.output


def test_log_verify_a_forged_tree_head_signature(work: Work) -> None:
    with sqlite3.connect(work.db) as db:
        (sig,) = db.execute("SELECT signature FROM axis_log_sth").fetchone()
        forged = base64.b64decode(flip_b64_byte(base64.b64encode(bytes(sig)).decode(), 10))
        db.execute("UPDATE axis_log_sth SET signature = ?", (forged,))
    r = cli("log", "verify", "--connections", str(work.conn_path), "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert out["reason"] == "STH_INVALID" and "signature" in out["detail"]


def test_log_verify_no_log(tmp_path: Path) -> None:
    _, connections = generate_workdir(tmp_path / "w", AGENCIES, SERVERS, base_port=28801)
    write_connections(tmp_path / "w", connections)
    r = cli("log", "verify", "--connections", str(tmp_path / "w" / "connections.json"), "--json")
    assert r.exit_code == 1 and "does not exist" in json.loads(r.stdout)["detail"]
    r = cli("log", "verify", "--connections", str(tmp_path / "none.json"))
    assert r.exit_code == 2
