"""axis backup / axis restore without a running axis: what a backup holds, consistent snapshots of SQLite
databases being written, and the refusals (wrong passphrase, altered, truncated, swapped, non-empty target)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from axis.cli import app
from axis.config import generate_workdir, load_config
from axis.core.backup_crypto import BackupCryptoError, OpeningReader, SealingWriter
from axis.ops.backup import BackupError, read_passphrase, restore_backup, take_backup

G01, G03 = "000.00.00.G01", "000.00.00.G03"
PASS = "correct horse battery staple"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path, conn = generate_workdir(tmp_path / "w", [(G01, "A", "d1"), (G03, "B", "sh")],
                                  [("d1", "dedicated"), ("sh", "shared")], tls=False)
    from axis.config import connections_for, write_connections

    write_connections(path.parent, connections_for(load_config(path), conn))
    db = sqlite3.connect(path.parent / "inbox-sh.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(1000)])
    db.commit()
    db.close()
    (path.parent / "logs").mkdir()
    (path.parent / "logs" / "router.log").write_text("not backed up")
    return path.parent


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    p = tmp_path / "pass.txt"
    p.write_text(PASS + "\n")
    return p


def test_round_trip(work: Path, tmp_path: Path, passfile: Path) -> None:
    out = tmp_path / "axis.backup"
    code, stdout, _ = run("backup", "--work-dir", str(work), "-o", str(out), "--passphrase-file", str(passfile),
                          "--json")
    assert code == 0, stdout
    assert orjson.loads(stdout)["ok"] is True and out.stat().st_mode & 0o777 == 0o600
    raw = out.read_bytes()
    assert b"BEGIN" not in raw and b"row 1" not in raw and b"config" not in raw  # nothing in clear
    target = tmp_path / "restored"
    code, stdout, _ = run("restore", str(out), "--work-dir", str(target), "--passphrase-file", str(passfile))
    assert code == 0, stdout
    assert "restored into" in stdout
    for rel in ("config.yaml", "pki/ca.cert.pem", "pki/ca.key.pem", f"pki/agencies/{G01}/key.pem"):
        assert (target / rel).read_bytes() == (work / rel).read_bytes(), rel
    assert not (target / "logs").exists()
    db = sqlite3.connect(target / "inbox-sh.db")
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1000
    db.close()
    conn = orjson.loads((target / "connections.json").read_bytes())  # paths now point into the restored dir
    assert conn["ca"] == str(target / "pki/ca.cert.pem") and str(work) not in (target / "connections.json").read_text()
    config = load_config(target / "config.yaml")
    assert config.pki.ca == target / "pki/ca.cert.pem" and config.agency(G01).key.is_file()  # type: ignore[union-attr]


def test_snapshot_while_written(work: Path, tmp_path: Path) -> None:
    """A backup of a database being written is one of its committed states, never a torn one."""
    stop = threading.Event()
    done: list[int] = []

    def writer() -> None:
        db = sqlite3.connect(work / "inbox-sh.db", timeout=30)
        n = 0
        while not stop.is_set():
            with db:  # one transaction: a pair of rows that must appear together
                db.execute("INSERT INTO t (v) VALUES ('a')")
                db.execute("INSERT INTO t (v) VALUES ('b')")
            n += 1
        done.append(n)
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    try:
        manifest = take_backup(work, tmp_path / "live.backup", PASS)
    finally:
        stop.set()
        thread.join()
    assert done[0] > 0
    restore_backup(tmp_path / "live.backup", tmp_path / "r", PASS)
    db = sqlite3.connect(tmp_path / "r" / "inbox-sh.db")
    a, b = (db.execute("SELECT count(*) FROM t WHERE v = ?", (v,)).fetchone()[0] for v in ("a", "b"))
    assert a == b and db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert manifest["summary"]["inbox_rows"] == 0  # no axis_received table in this toy inbox


def test_refusals(work: Path, tmp_path: Path, passfile: Path) -> None:
    out = tmp_path / "axis.backup"
    take_backup(work, out, PASS)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    code, stdout, _ = run("restore", str(out), "--work-dir", str(tmp_path / "r1"), "--passphrase-file", str(wrong),
                          "--json")
    assert code == 1 and orjson.loads(stdout)["reason"] == "UNAUTHORIZED" and "wrong passphrase" in stdout
    assert not (tmp_path / "r1").exists()
    data = bytearray(out.read_bytes())
    for what, bad in (("flipped", data[:5000] + bytes([data[5000] ^ 1]) + data[5001:]),
                      ("truncated", data[:-100]), ("cut at a chunk", data[:len(data) // 2]),
                      ("appended", data + b"more")):
        path = tmp_path / f"{what}.backup"
        path.write_bytes(bytes(bad))
        code, stdout, _ = run("restore", str(path), "--work-dir", str(tmp_path / what), "--passphrase-file",
                              str(passfile), "--json")
        assert code == 1, what
        assert orjson.loads(stdout)["reason"] == "SIGNATURE_INVALID", what
        assert not (tmp_path / what).exists(), what
    assert not list(tmp_path.glob(".restoring-*"))  # the temporary directory is gone
    # usage errors: exit 2
    assert run("backup", "--work-dir", str(work), "-o", str(out), "--passphrase-file", str(passfile))[0] == 2
    assert run("backup", "--work-dir", str(tmp_path / "none"), "-o", str(tmp_path / "x"),
               "--passphrase-file", str(passfile))[0] == 2
    assert run("backup", "--work-dir", str(work), "-o", str(tmp_path / "y"), env={"AXIS_BACKUP_PASSPHRASE": ""}
               )[0] == 2
    assert run("restore", str(out), "--work-dir", str(work), "--passphrase-file", str(passfile))[0] == 2  # not empty
    code, stdout, _ = run("restore", str(out), "--work-dir", str(tmp_path / "env"), env={
        "AXIS_BACKUP_PASSPHRASE": PASS})
    assert code == 0, stdout


def test_chunks_cannot_be_swapped_or_dropped() -> None:
    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b: bytes) -> int:
            self.data += b
            return len(b)

    import io
    import struct

    sink = Sink()
    w = SealingWriter(sink, PASS, chunk=64, n=2)
    w.write(bytes(range(200)))
    w.close()
    assert OpeningReader(io.BytesIO(bytes(sink.data)), PASS).read() == bytes(range(200))
    blob = bytes(sink.data)
    (hlen,) = struct.unpack(">I", blob[8:12])
    body, chunks = blob[:12 + hlen], []
    rest = blob[12 + hlen:]
    while rest:
        (n,) = struct.unpack(">I", rest[:4])
        chunks.append(rest[:4 + n])
        rest = rest[4 + n:]
    assert len(chunks) == 4
    for bad in (chunks[1] + chunks[0] + chunks[2] + chunks[3], chunks[0] + chunks[2] + chunks[3],
                chunks[0] + chunks[1] + chunks[2], chunks[0] + chunks[0] + chunks[1] + chunks[2] + chunks[3]):
        with pytest.raises(BackupCryptoError) as exc:
            OpeningReader(io.BytesIO(body + bad), PASS).read()
        assert not exc.value.wrong_passphrase
    with pytest.raises(BackupCryptoError) as exc:
        OpeningReader(io.BytesIO(blob), "another passphrase")
    assert exc.value.wrong_passphrase


def test_passphrase_sources(tmp_path: Path) -> None:
    f = tmp_path / "p"
    f.write_text("from the file\nignored\n")
    assert read_passphrase(f, env={"AXIS_BACKUP_PASSPHRASE": "from the env"}) == "from the file"
    assert read_passphrase(None, env={"AXIS_BACKUP_PASSPHRASE": "from the env"}) == "from the env"
    for bad in ((None, {}), (tmp_path / "missing", {}), (None, {"AXIS_BACKUP_PASSPHRASE": "short"})):
        with pytest.raises(BackupError) as exc:
            read_passphrase(*bad)  # type: ignore[arg-type]
        assert exc.value.kind == "usage"


def test_an_unknown_member_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    out = tmp_path / "evil.backup"
    with out.open("wb") as raw:
        sealed = SealingWriter(raw, PASS)
        with tarfile.open(fileobj=sealed, mode="w|") as tar:  # type: ignore[call-overload]
            info = tarfile.TarInfo("work/../../escape")
            payload: Any = b"x"
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        sealed.close()
    with pytest.raises(BackupError, match="unexpected member"):
        restore_backup(out, tmp_path / "r", PASS)
    assert not (tmp_path / "escape").exists()


def test_a_configuration_that_needs_files_elsewhere_is_refused(work: Path, tmp_path: Path) -> None:
    import yaml

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ca.pem").write_bytes((work / "pki/ca.cert.pem").read_bytes())
    raw = yaml.safe_load((work / "config.yaml").read_text())
    raw["pki"]["ca"] = str(elsewhere / "ca.pem")
    (work / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(BackupError) as exc:
        take_backup(work, tmp_path / "b", PASS)
    assert exc.value.kind == "usage" and str(elsewhere / "ca.pem") in exc.value.detail
    assert not (tmp_path / "b").exists()
