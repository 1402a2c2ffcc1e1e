"""`axis log archive` and `axis log verify --archive` through the Typer app, against a real work directory
(generate_workdir: CA, log certificate, config.yaml, connections.json) and a real evidence log — SQLite, and
PostgreSQL for the whole archive / verify / drop cycle — with tree heads signed by the log key."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from axis.cli import app
from axis.config import Config, generate_workdir, load_config, write_connections
from axis.core import pki as pkimod
from axis.core.evidence import Event, sign_sth
from axis.log.store import LogStore

runner = CliRunner()
AGENCIES = [("000.00.00.G22", "Văn phòng Chính phủ", "sh"), ("000.00.00.H41", "Bộ Tài chính", "sh")]
SERVERS = [("sh", "shared")]
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
HOUR = 3_600_000
TABLES = ("axis_log_leaves", "axis_log_nodes", "axis_log_sth", "axis_log_certs", "axis_log_meta")


def run_async(coro: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def event(i: int) -> Event:
    return Event("routed", T0 + i * HOUR, "000.00.00.G22", f"000.00.00.G22,2023/11/14,{i}/VPCP", 1, "ab" * 32)


@dataclass
class Work:
    dir: Path
    config: Config

    @property
    def conn(self) -> str:
        return str(self.dir / "connections.json")

    @property
    def ca(self) -> str:
        return str(self.config.pki.ca)

    def log(self, count: int, sign: bool = True) -> None:
        """Append events up to ``count`` leaves in all; then sign a tree head of the whole log."""
        async def go() -> None:
            ev = self.config.evidence
            assert ev.key is not None and ev.cert is not None
            store = await LogStore.open(ev.url)
            try:
                await store.append([event(i) for i in range(await store.size(), count)])
                if sign:
                    size = await store.size()
                    await store.save_sth(sign_sth(size, T0 + 100 * HOUR + size, await store.root(size),
                                                  pkimod.load_key(ev.key.read_bytes()), ev.cert.read_bytes()))
            finally:
                await store.close()

        run_async(go())


async def _drop_tables(url: str) -> None:
    store = await LogStore.open(url)
    try:
        for table in TABLES:
            await store._backend.write(lambda db, t=table: db.rows(f"DROP TABLE IF EXISTS {t}"))  # type: ignore[misc]
    finally:
        await store.close()


def make_work(root: Path, evidence_url: str | None = None) -> Work:
    path, connections = generate_workdir(root, AGENCIES, SERVERS, base_port=28951, evidence_url=evidence_url)
    write_connections(root, connections)
    return Work(root, load_config(path))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def work(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Work]:
    if request.param == "sqlite":
        yield make_work(tmp_path / "work")
        return
    url: str = request.getfixturevalue("pg_url")
    run_async(_drop_tables(url))
    yield make_work(tmp_path / "work", url)
    run_async(_drop_tables(url))


@pytest.fixture
def sqlite_work(tmp_path: Path) -> Work:
    return make_work(tmp_path / "work")


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def cli_json(*args: str, code: int = 0) -> dict[str, Any]:
    r = cli(*args, "--json")
    assert r.exit_code == code, r.output
    out: dict[str, Any] = json.loads(r.stdout)
    return out


# ---- the cycle: archive, verify offline, drop, archive the next segment ---------------------------------------------


def test_archive_verify_drop_and_the_next_segment(work: Work, tmp_path: Path) -> None:
    work.log(30)
    work.log(40, sign=False)  # 30..39: older than the date, but no tree head covers them yet
    one = tmp_path / "one.zip"
    out = cli_json("log", "archive", "--before", iso(T0 + 35 * HOUR), "-o", str(one), "--connections", work.conn)
    assert (out["ok"], out["reason"], out["start"], out["end"], out["leaves"]) == (True, None, 0, 30, 30)
    assert out["file"] == str(one) and out["bytes"] == one.stat().st_size and out["dropped"] is None
    assert out["bytes_per_leaf"] == round(one.stat().st_size / 30, 1) and out["sth"]["tree_size"] == 30
    assert (out["min_at"], out["max_at"], out["before"]) == (T0, T0 + 29 * HOUR, T0 + 35 * HOUR)
    assert out["archived_upto"] == 0

    v = cli_json("log", "verify", "--archive", str(one), "--ca", work.ca)
    assert (v["ok"], v["start"], v["end"], v["tree_size"], v["file"]) == (True, 0, 30, 30, str(one))
    r = cli("log", "verify", "--archive", str(one), "--connections", work.conn)  # the CA from the axis's config
    assert r.exit_code == 0 and "intact" in r.stdout and "leaves 0..29" in r.stdout, r.output

    # --drop: the same segment again, then the store forgets its leaves
    two = tmp_path / "two.zip"
    out = cli_json("log", "archive", "--before", iso(T0 + 35 * HOUR), "-o", str(two), "--drop",
                   "--config", str(work.dir / "config.yaml"))
    assert (out["start"], out["end"], out["dropped"], out["archived_upto"]) == (0, 30, 30, 30)
    assert two.read_bytes() == one.read_bytes()  # sealed by the same tree head: the same bytes
    v = cli_json("log", "verify", "--connections", work.conn)
    assert v["ok"] and v["archived_upto"] == 30 and v["tree_size"] == 40 and "archived" in v["detail"]

    # the log grows, a tree head covers it: the next segment starts where the last ended
    work.log(50)
    three = tmp_path / "three.zip"
    out = cli_json("log", "archive", "--before", iso(T0 + 45 * HOUR), "-o", str(three), "--drop",
                   "--connections", work.conn)
    assert (out["start"], out["end"], out["dropped"], out["archived_upto"], out["tree_size"]) == (30, 45, 15, 45, 50)
    assert cli_json("log", "verify", "--archive", str(three), "--ca", work.ca)["ok"]
    assert cli_json("log", "verify", "--connections", work.conn)["ok"]

    # nothing older left: exit 0, no file
    none = tmp_path / "none.zip"
    out = cli_json("log", "archive", "--before", iso(T0 + 45 * HOUR), "-o", str(none), "--connections", work.conn)
    assert out["ok"] and out["file"] is None and out["leaves"] == 0 and not none.exists()
    r = cli("log", "archive", "--before", iso(T0 + 45 * HOUR), "-o", str(none), "--connections", work.conn)
    assert r.exit_code == 0 and "nothing to archive" in r.stdout and not none.exists()


def test_archive_human_output(sqlite_work: Work, tmp_path: Path) -> None:
    sqlite_work.log(12)
    r = cli("log", "archive", "--before", "2999-01-01", "-o", str(tmp_path / "s.zip"), "--drop",
            "--connections", sqlite_work.conn)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ok wrote ") and "per leaf" in r.stdout and "leaves 0..11" in r.stdout
    assert "dropped 12 archived leaves" in r.stdout
    r = cli("log", "verify", "--connections", sqlite_work.conn)
    assert r.exit_code == 0 and "leaves 0..11 archived" in r.stdout, r.output


# ---- tampered segments --------------------------------------------------------------------------------------------


def _rezip(data: bytes, name: str, body: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, body if info.filename == name else src.read(info))
    return out.getvalue()


def _member(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(name)


def _refused(path: Path, ca: str, reason: str) -> dict[str, Any]:
    out = cli_json("log", "verify", "--archive", str(path), "--ca", ca, code=1)
    assert out["ok"] is False and out["reason"] == reason, out
    human = cli("log", "verify", "--archive", str(path), "--ca", ca)
    assert human.exit_code == 1 and reason in human.output
    return out


def test_tampered_segments_are_refused(sqlite_work: Work, tmp_path: Path) -> None:
    sqlite_work.log(20)
    good_path = tmp_path / "good.zip"
    cli_json("log", "archive", "--before", iso(T0 + 15 * HOUR), "-o", str(good_path), "--connections",
             sqlite_work.conn)
    good = good_path.read_bytes()
    lines = _member(good, "leaves.jsonl").splitlines(keepends=True)
    sth = json.loads(_member(good, "sth.json"))
    sig = bytearray(base64.b64decode(sth["signature"]))
    sig[12] ^= 1
    cases = {
        "one byte of a leaf": (_rezip(good, "leaves.jsonl", b"".join(
            [*lines[:4], lines[4].replace(b"/VPCP", b"/VPCQ"), *lines[5:]])), "PROOF_INVALID"),
        "a removed leaf": (_rezip(good, "leaves.jsonl", b"".join([*lines[:7], *lines[8:]])), "PROOF_INVALID"),
        "a wrong tree head signature": (_rezip(good, "sth.json", json.dumps(
            {**sth, "signature": base64.b64encode(bytes(sig)).decode()}).encode()), "STH_INVALID"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / f"{name}.zip"
        path.write_bytes(data)
        out = _refused(path, sqlite_work.ca, reason)
        assert out["file"] == str(path), name
    # the untampered one still verifies; another CA, or a time the log certificate is not valid, does not
    assert cli_json("log", "verify", "--archive", str(good_path), "--ca", sqlite_work.ca)["ok"]
    other = make_work(tmp_path / "other")
    _refused(good_path, other.ca, "STH_INVALID")
    out = cli_json("log", "verify", "--archive", str(good_path), "--ca", sqlite_work.ca, "--at", "2999-01-01",
                   code=1)
    assert out["reason"] == "STH_INVALID"


# ---- usage --------------------------------------------------------------------------------------------------------


def test_usage(sqlite_work: Work, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_work.log(5)
    seg = tmp_path / "s.zip"
    assert cli("log", "archive", "--before", "last tuesday", "-o", str(seg), "--connections",
               sqlite_work.conn).exit_code == 2
    assert cli("log", "archive", "-o", str(seg), "--connections", sqlite_work.conn).exit_code == 2  # no --before
    assert cli("log", "archive", "--before", "now", "-o", str(seg), "--connections",
               str(tmp_path / "missing.json")).exit_code == 2
    seg.write_bytes(b"something")
    r = cli("log", "archive", "--before", "now", "-o", str(seg), "--connections", sqlite_work.conn)
    assert r.exit_code == 2 and "exists" in r.output and seg.read_bytes() == b"something"
    assert cli("log", "verify", "--archive", str(tmp_path / "none.zip"), "--ca", sqlite_work.ca).exit_code == 2
    assert cli("log", "verify", "--archive", str(seg), "--ca", sqlite_work.ca, "--at", "soon").exit_code == 2
    assert cli("log", "verify", "--ca", sqlite_work.ca, "--connections", sqlite_work.conn).exit_code == 2
    monkeypatch.chdir(tmp_path)  # no ./axis-work/connections.json: --ca is needed
    r = cli("log", "verify", "--archive", str(seg))
    assert r.exit_code == 2 and "--ca" in r.output
    out = cli_json("log", "verify", "--archive", str(seg), "--ca", sqlite_work.ca, code=1)
    assert out["reason"] == "PROOF_INVALID"  # not a segment at all
    for args in (["log", "archive"], ["log", "verify"]):
        r = cli(*args, "--help")
        assert r.exit_code == 0 and "Usage" in r.output, args


def test_archive_refuses_a_damaged_log(sqlite_work: Work, tmp_path: Path) -> None:
    import sqlite3

    sqlite_work.log(10)
    db = str(sqlite_work.config.evidence.url).removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        (leaf,) = conn.execute("SELECT leaf FROM axis_log_leaves WHERE idx = 3").fetchone()
        conn.execute("UPDATE axis_log_leaves SET leaf = ? WHERE idx = 3", (bytes(leaf).replace(b"routed", b"rooted"),))
    seg = tmp_path / "s.zip"
    out = cli_json("log", "archive", "--before", "now", "-o", str(seg), "--drop", "--connections", sqlite_work.conn,
                   code=1)
    assert out["reason"] == "PROOF_INVALID" and not seg.exists()
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.partial"))
    with sqlite3.connect(db) as conn:  # nothing dropped
        assert conn.execute("SELECT count(*) FROM axis_log_leaves").fetchone() == (10,)
