"""`axis envelope new | validate | inspect` end to end through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from axis.cli import app
from axis.core import envelope as env

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["envelope", *args])


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_new_validate_inspect(tmp_path: Path) -> None:
    att = tmp_path / "công văn.txt"
    att.write_bytes("nội dung".encode())
    out = tmp_path / "doc.edxml"
    r = run(
        "new",
        "--from",
        "000.00.00.G22",
        "--to",
        "000.00.00.H41",
        "--to",
        "H55.242",
        "--subject",
        "V/v kết nối",
        "--attach",
        str(att),
        "--number",
        "12",
        "--notation",
        "VP",
        "--date",
        "2024/03/04",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    msg = env.parse(out.read_bytes())
    assert msg.document_id == "000.00.00.G22,2024/03/04,12/VP"
    assert [a.data for a in msg.attachments] == ["nội dung".encode()]

    r = run("validate", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert _lines(r.output) == [{"file": str(out), "ok": True, "reason": None, "detail": "", "kind": "edoc"}]

    r = run("inspect", str(out), "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["kind"] == "edoc" and s["sender"]["organ_id"] == "000.00.00.G22"
    assert [x["organ_id"] for x in s["recipients"]] == ["000.00.00.H41", "H55.242"]
    assert s["subject"] == "V/v kết nối" and s["document_id"] == msg.document_id
    assert s["attachments"][0]["name"] == "công văn.txt" and s["attachments"][0]["size"] == len("nội dung".encode())
    assert s["signature"]["present"] is False and s["schema"]["ok"] is True

    r = run("inspect", str(out))
    assert r.exit_code == 0 and "V/v kết nối" in r.output


def test_new_to_stdout_is_only_xml() -> None:
    r = runner.invoke(app, ["envelope", "new", "--from", "000.00.00.G22", "--to", "000.00.00.H41", "--subject", "x"])
    assert r.exit_code == 0
    assert r.stdout.startswith("<?xml") and r.stdout.rstrip().endswith("</edXML>")
    assert env.parse(r.stdout.encode()).subject == "x"


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "g22", "--to", "000.00.00.H41", "--subject", "x"],
        ["--from", "000.00.00.G22", "--to", "000..H41", "--subject", "x"],
        ["--from", "000.00.00.G22", "--to", "000.00.00.H41", "--subject", "x", "--type", "revocation"],
        ["--from", "000.00.00.G22", "--to", "000.00.00.H41", "--subject", "x", "--type", "bogus"],
        ["--from", "000.00.00.G22", "--to", "000.00.00.H41", "--subject", "x", "--attach", "/nonexistent/f"],
        ["--from", "000.00.00.G22", "--to", "000.00.00.H41", "--subject", "x", "--date", "2024-01-01"],
        ["--from", "000.00.00.G22", "--subject", "x"],
    ],
)
def test_new_usage_errors(args: list[str]) -> None:
    assert run("new", *args).exit_code == 2


def test_new_revocation(tmp_path: Path) -> None:
    out = tmp_path / "rev.edxml"
    r = run(
        "new",
        "--from",
        "000.00.00.G22",
        "--to",
        "000.00.00.H41",
        "--subject",
        "Thu hồi",
        "--type",
        "revocation",
        "--related",
        "000.00.00.G22,2024/01/01,1/VP",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert env.message_kind(env.parse(out.read_bytes())) == "revocation"
    assert _lines(run("validate", str(out), "--json").output)[0]["kind"] == "revocation"


def test_validate_samples_directory(samples_dir: Path) -> None:
    r = run("validate", str(samples_dir), "--json")
    assert r.exit_code == 1  # edoc.edxml is not well-formed
    results = {Path(x["file"]).name: x for x in _lines(r.output)}
    assert len(results) == 16
    bad = results.pop("edoc.edxml")
    assert bad["ok"] is False and bad["reason"] == "XML_MALFORMED" and bad["detail"].startswith("line 74:")
    assert all(x["ok"] and x["reason"] is None for x in results.values())
    assert results["edoc_update.edxml"]["kind"] == "update"
    assert set(bad) == {"file", "ok", "reason", "detail", "kind"}


def test_validate_human_output_and_refusals(tmp_path: Path) -> None:
    good = tmp_path / "good.edxml"
    good.write_bytes(env.build(env.new_document("000.00.00.G22", ["000.00.00.H41"], "x")))
    forbidden = tmp_path / "xxe.xml"
    forbidden.write_bytes(b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>')
    invalid = tmp_path / "invalid.edxml"
    invalid.write_bytes(good.read_bytes().replace(b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>5<"))
    r = run("validate", str(good), str(forbidden), str(invalid), "--json")
    assert r.exit_code == 1
    reasons = [x["reason"] for x in _lines(r.output)]
    assert reasons == [None, "XML_FORBIDDEN", "SCHEMA_INVALID"]
    r = run("validate", str(tmp_path))
    assert r.exit_code == 1 and "XML_FORBIDDEN" in r.output and "SCHEMA_INVALID" in r.output
    assert run("validate", str(good)).exit_code == 0


def test_validate_usage_errors(tmp_path: Path) -> None:
    assert run("validate", str(tmp_path / "missing.edxml")).exit_code == 2
    assert run("validate", str(tmp_path)).exit_code == 2  # empty directory


def test_inspect_sample_with_broken_certificate(samples_dir: Path) -> None:
    r = run("inspect", str(samples_dir / "edoc_new.edxml"), "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    sig = s["signature"]
    assert sig["present"] and sig["verified"] is False and sig["in_dsig_namespace"] is False
    assert sig["certificate"]["error"].startswith("unreadable certificate")
    r = run("inspect", str(samples_dir / "edoc_new.edxml"))
    assert r.exit_code == 0 and "unreadable certificate" in r.output and "unverified" in r.output


def test_inspect_status_sample(samples_dir: Path) -> None:
    s = json.loads(run("inspect", str(samples_dir / "status_rejection_02.edxml"), "--json").output)
    assert s["kind"] == "status" and s["status_code"] == "02"
    assert s["response_for"]["organ_id"] == "000.00.00.G22"


def test_inspect_refusals(samples_dir: Path, tmp_path: Path) -> None:
    r = run("inspect", str(samples_dir / "edoc.edxml"), "--json")
    assert r.exit_code == 1
    assert json.loads(r.output)["reason"] == "XML_MALFORMED"
    assert run("inspect", str(tmp_path / "nope.edxml")).exit_code == 2


def test_inspect_reads_signer_certificate(tmp_path: Path) -> None:
    import base64
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "Văn phòng"), x509.NameAttribute(NameOID.USER_ID, "000.00.00.G22")]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    sig = (
        f'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><KeyInfo><X509Data><X509Certificate>{b64}'
        "</X509Certificate></X509Data></KeyInfo></Signature>"
    )
    data = env.build(env.new_document("000.00.00.G22", ["000.00.00.H41"], "x"))
    f = tmp_path / "signed.edxml"
    f.write_bytes(data.replace(b"</edXML:edXMLHeader>", sig.encode() + b"</edXML:edXMLHeader>"))
    s = json.loads(run("inspect", str(f), "--json").output)
    assert s["signature"]["in_dsig_namespace"] is True and s["signature"]["verified"] is False
    assert s["signature"]["certificate"]["uid"] == "000.00.00.G22"


def test_help_texts() -> None:
    for cmd in ("new", "validate", "inspect"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and len(r.output) > 200
