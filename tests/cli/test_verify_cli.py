"""``axis envelope verify`` (axis.cli.verify): one parse per file, lazy imports, --jobs with serial results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from typer.testing import CliRunner

from axis.cli import app
from axis.cli.verify import chunk_size
from tests.support.testing import TestPKI, make_edxml, make_pki

A, B, C = "000.00.00.G22", "000.00.00.H41", "H55.242"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    pki = make_pki(tmp_path_factory.mktemp("pki"), [A, B, C])
    pki.revoke(C)
    return pki


@pytest.fixture(scope="module")
def mixed(kit: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str | None]]]:
    """A directory of good and bad envelopes, and the (file name, reason) each must give, in name order."""
    d = tmp_path_factory.mktemp("mixed")
    good = kit.envelope(A, [B], size=3_000)
    cases: list[tuple[str, bytes, str | None]] = [
        ("tampered", good.replace(b"<Subject>", b"<Subject>x", 1), "SIGNATURE_INVALID"),
        ("unsigned", make_edxml(A, [B], size=2_000), "SIGNATURE_MISSING"),
        ("malformed", b"<edXML><unclosed>", "XML_MALFORMED"),
        ("doctype", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "XML_FORBIDDEN"),
        # both schema-invalid and tampered: the schema is checked first, as before the one-parse change
        ("schema-and-tampered", good.replace(b"<Subject>", b"<Bogus/><Subject>", 1), "SCHEMA_INVALID"),
        ("schema-unsigned", make_edxml(A, [B]).replace(b"<Subject>", b"<Bogus/><Subject>", 1), "SCHEMA_INVALID"),
        ("revoked", kit.envelope(C, [A], size=2_000), "CERT_REVOKED"),
        ("mismatch", kit.sign(make_edxml(B, [A], size=2_000), A), "SIGNER_MISMATCH"),
    ]
    for i in range(12):
        cases.append((f"good-{i:02d}", kit.envelope(A if i % 2 else B, [C], size=2_000 + 100 * i), None))
    expected = []
    for name, data, reason in cases:
        (d / f"{name}.edxml").write_bytes(data)
        expected.append((f"{name}.edxml", reason))
    (d / "notes.txt").write_text("not an envelope: skipped")
    return d, sorted(expected)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axis", "envelope", "verify", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})


def rows(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_reasons_and_order(kit: TestPKI, mixed: tuple[Path, list[tuple[str, str | None]]]) -> None:
    d, expected = mixed
    result = CliRunner().invoke(app, ["envelope", "verify", str(d), "--ca", str(kit.ca_pem), "--crl",
                                      str(kit.crl_pem), "--json"])
    assert result.exit_code == 1, result.output
    got = rows(result.stdout)
    assert [(Path(r["file"]).name, r["reason"]) for r in got] == expected
    assert all(r["ok"] == (r["reason"] is None) for r in got)
    assert {r["signer"] for r in got if r["ok"]} == {A, B}


def test_each_file_is_parsed_once(kit: TestPKI, mixed: tuple[Path, list[tuple[str, str | None]]],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way lxml parses bytes or a file is counted: one parse per envelope (the schemas are compiled first,
    outside the count)."""
    from axis.core import schema

    schema.preload()
    d, expected = mixed
    calls: list[object] = []
    for name in ("fromstring", "XML", "parse", "fromstringlist"):
        real = getattr(etree, name)

        def counting(*a: Any, _real: Any = real, **kw: Any) -> Any:
            calls.append(a[0] if a else kw)
            return _real(*a, **kw)

        monkeypatch.setattr(etree, name, counting)
    result = CliRunner().invoke(app, ["envelope", "verify", str(d), "--ca", str(kit.ca_pem), "--crl",
                                      str(kit.crl_pem), "--json"])
    assert result.exit_code == 1, result.output
    assert len(rows(result.stdout)) == len(expected)
    # the DOCTYPE is refused on its bytes before any parse; every other file is parsed exactly once
    parsed = sorted(calls, key=repr)
    assert parsed == sorted((f.read_bytes() for f in d.glob("*.edxml") if f.name != "doctype.edxml"), key=repr)


@pytest.mark.parametrize("jobs", ["2", "3", "0"])
def test_jobs_gives_the_serial_results(kit: TestPKI, mixed: tuple[Path, list[tuple[str, str | None]]],
                                       jobs: str) -> None:
    """Real processes (python -m axis): the same JSON lines in the same order and the same exit status."""
    d, expected = mixed
    base = [str(d), "--ca", str(kit.ca_pem), "--crl", str(kit.crl_pem), "--json"]
    serial = run(*base)
    parallel = run(*base, "--jobs", jobs)
    assert serial.returncode == parallel.returncode == 1, serial.stderr + parallel.stderr
    assert serial.stdout == parallel.stdout
    assert [(Path(r["file"]).name, r["reason"]) for r in rows(parallel.stdout)] == expected
    # files given one by one (and a directory) keep their command-line order
    one_by_one = [str(d / name) for name, _ in reversed(expected[:5])]
    a = run(*one_by_one, "--ca", str(kit.ca_pem), "--json", "-j", jobs)
    assert [Path(r["file"]).name for r in rows(a.stdout)] == [Path(p).name for p in one_by_one]


def test_jobs_in_process_and_all_good(kit: TestPKI, tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"d{i}.edxml").write_bytes(kit.envelope(A, [B], size=1_500))
    base = ["envelope", "verify", str(tmp_path), "--ca", str(kit.ca_pem), "--json"]
    serial = CliRunner().invoke(app, base)
    parallel = CliRunner().invoke(app, [*base, "--jobs", "2"])
    assert serial.exit_code == parallel.exit_code == 0, parallel.output
    assert serial.stdout == parallel.stdout and len(rows(serial.stdout)) == 5


def test_usage_errors(kit: TestPKI, tmp_path: Path) -> None:
    good = tmp_path / "good.edxml"
    good.write_bytes(kit.envelope(A, [B], size=1_500))
    for args in (["--jobs", "-1"], ["--jobs", "x"], ["--bogus"], []):
        proc = run(str(good), "--ca", str(kit.ca_pem), *args) if args != [] else run(str(good))
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
    missing = run(str(good), str(tmp_path / "missing.edxml"), "--ca", str(kit.ca_pem), "-j", "2")
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr
    bad_ca = run(str(good), "--ca", str(good))
    assert bad_ca.returncode == 2 and "cannot load the trust anchors" in bad_ca.stderr
    assert CliRunner().invoke(app, ["envelope", "verify", str(good), "--ca", str(kit.ca_pem), "-j", "-3"]
                              ).exit_code == 2


def test_help_and_table(kit: TestPKI, mixed: tuple[Path, list[tuple[str, str | None]]]) -> None:
    helped = run("--help")
    assert helped.returncode == 0 and "--jobs" in helped.stdout and "parsed once" in helped.stdout
    d, expected = mixed
    table = run(str(d), "--ca", str(kit.ca_pem), "--crl", str(kit.crl_pem), "-j", "2")
    assert table.returncode == 1 and "SIGNATURE_INVALID" in table.stdout and A in table.stdout
    refused = sum(1 for _, reason in expected if reason)
    assert f"{len(expected) - refused} verified, {refused} refused" in table.stdout


def test_big_directory_table_lists_the_refused_only(kit: TestPKI, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import axis.cli.verify as verify_module

    monkeypatch.setattr(verify_module, "TABLE_ALL_ROWS_UP_TO", 3)
    good = kit.envelope(A, [B], size=1_500)
    for i in range(4):
        (tmp_path / f"ok{i}.edxml").write_bytes(good)
    (tmp_path / "bad.edxml").write_bytes(good.replace(b"<Subject>", b"<Subject>x", 1))
    out = CliRunner().invoke(app, ["envelope", "verify", str(tmp_path), "--ca", str(kit.ca_pem)], env={
        "COLUMNS": "200"})
    assert out.exit_code == 1
    assert "bad.edxml" in out.stdout and "ok0.edxml" not in out.stdout and "4 verified, 1 refused" in out.stdout


def test_the_first_file_does_not_wait_for_the_whole_cli(kit: TestPKI, tmp_path: Path) -> None:
    """`axis envelope verify` imports neither the other command groups nor typer, httpx or rich (one good file), nor
    the envelope model (nothing reads a message)."""
    good = tmp_path / "good.edxml"
    good.write_bytes(kit.envelope(A, [B], size=1_500))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "axis", "envelope", "verify", str(good),
                           "--ca", str(kit.ca_pem), "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert rows(proc.stdout)[0]["signer"] == A
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "axis.core.verify" in imported and "axis.cli.verify" in imported
    for heavy in ("typer", "rich", "httpx", "pydantic", "axis.cli.sim", "axis.cli.agency", "axis.cli.envelope",
                  "axis.cli.trust", "axis.core.envelope"):
        assert heavy not in imported, heavy


def test_chunk_size() -> None:
    assert chunk_size(1, 2) == 1
    assert chunk_size(160, 2) == 10
    assert chunk_size(100_000, 2) == 64


def test_jobs_with_other_threads_running(kit: TestPKI, mixed: tuple[Path, list[tuple[str, str | None]]]) -> None:
    """Embedded in a process with threads of its own, the workers are not forked from it (forkserver/spawn):
    the same results."""
    import threading

    from axis.cli.verify import start_method

    d, expected = mixed
    base = ["envelope", "verify", str(d), "--ca", str(kit.ca_pem), "--crl", str(kit.crl_pem), "--json"]
    serial = CliRunner().invoke(app, base)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert start_method() != "fork"
        parallel = CliRunner().invoke(app, [*base, "--jobs", "2"])
    finally:
        stop.set()
        other.join()
    assert serial.exit_code == parallel.exit_code == 1, parallel.output
    assert serial.stdout == parallel.stdout
    assert [(Path(r["file"]).name, r["reason"]) for r in rows(parallel.stdout)] == expected
