"""axis backup / axis restore of a RUNNING axis (`axis up` processes, the real RabbitMQ): a backup taken during
traffic restores to consistent stores with a verifying log; a backup taken at rest restores to an axis that,
started from the restored directory, serves every inbox document, counter and log leaf, its tree heads still
verifying, and goes on working (a new document is delivered and logged, the log extends the old tree head)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from axis.client import Client
from axis.config import generate_workdir, load_config
from axis.core import envelope
from axis.core.evidence import verify_sth
from axis.core.tlsconfig import client_context
from axis.log.store import LogStore
from axis.ops.up import Running, start
from tests.integration.conftest import AGENCIES, G01, G03, G22, H41, H53, SERVERS
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
PASS = "backup passphrase for the test"
CODES = [G22, H53, G01, G03, H41]


def cli(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "axis", *args, "--json"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "AXIS_BACKUP_PASSPHRASE": PASS})
    assert out.returncode == 0, out.stderr + out.stdout
    return dict(orjson.loads(out.stdout))


def connections(work: Path) -> dict[str, Any]:
    return dict(orjson.loads((work / "connections.json").read_bytes()))


def client(conn: dict[str, Any], code: str) -> Client:
    return Client.from_connections(conn, code, timeout=30)


def send(conn: dict[str, Any], sender: str, recipients: list[str], subject: str) -> str:
    with client(conn, sender) as c:
        return str(c.submit(envelope.build(envelope.new_document(sender, recipients, subject)))["document_id"])


def inboxes(conn: dict[str, Any]) -> dict[str, list[tuple[str, str, bool]]]:
    out = {}
    for code in CODES:
        with client(conn, code) as c:
            out[code] = sorted((i["id"], i["document_id"], i["acked"]) for i in c.inbox(limit=1000))
    return out


def admin_stats(conn: dict[str, Any]) -> dict[str, int]:
    r = httpx.get(conn["admin"]["url"] + "/admin/stats", headers={"Authorization": f"Bearer {conn['admin']['token']}"},
                  verify=client_context(conn["ca"]),
                  trust_env=False, timeout=30)
    r.raise_for_status()
    s = r.json()
    return {k: s[k] for k in ("sent", "received", "refused")}


def log_state(work: Path) -> tuple[int, Any, list[str]]:
    config = load_config(work / "config.yaml")

    async def go() -> tuple[int, Any, list[str]]:
        store = await LogStore.open(config.evidence.url)
        try:
            assert config.pki.ca is not None
            problems = await store.verify([config.pki.ca.read_bytes()],
                                          config.pki.crl.read_bytes() if config.pki.crl else None)
            return await store.size(), await store.latest_sth(), problems
        finally:
            await store.close()

    return asyncio.run(go())


def settle(work: Path, conn: dict[str, Any], expected: dict[str, int], timeout: float = 60) -> None:
    """Until every inbox holds its expected count and a signed tree head covers the whole log."""
    deadline = time.monotonic() + timeout
    while True:
        got = {code: len(items) for code, items in inboxes(conn).items()}
        size, sth, _ = log_state(work)
        if got == expected and sth is not None and sth.tree_size == size and size > 0:
            time.sleep(1.0)  # the last status 01s' stored leaves
            size2, sth2, _ = log_state(work)
            if size2 == size and sth2 is not None and sth2.tree_size == size2:
                return
        assert time.monotonic() < deadline, (got, expected, size, sth)
        time.sleep(0.3)


def up(work: Path) -> Running:
    return start(work / "config.yaml", work, connections(work) if (work / "connections.json").exists() else None,
                 routers=1, servers_per_host=3)


def test_backup_of_a_running_axis_restores_and_runs(tmp_path: Path, vhost_url: str) -> None:
    base = free_port_block(len(SERVERS) + 1)
    work = tmp_path / "work"
    path, known = generate_workdir(work, AGENCIES, SERVERS, base_port=base + 1, admin_port=base, amqp_url=vhost_url,
                                   sth_interval_seconds=0.3)
    run = start(path, work, known, routers=1, servers_per_host=3)
    expected = dict.fromkeys(CODES, 0)
    try:
        conn = connections(work)
        for i in range(6):
            send(conn, G22, [H53, G01], f"trước {i}")
            send(conn, H41, [G22], f"báo cáo {i}")
        expected.update({H53: 6, G01: 6, G22: 6})
        settle(work, conn, expected)
        with client(conn, G01) as c:  # some taken, some still waiting
            for item in c.inbox(limit=3):
                c.ack(item["id"])

        # a backup during traffic
        stop = threading.Event()
        sent_during: list[str] = []

        def traffic() -> None:
            while not stop.is_set():
                sent_during.append(send(conn, G03, [H41], "trong lúc sao lưu"))

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            time.sleep(0.5)
            during = cli("backup", "--work-dir", str(work), "-o", str(tmp_path / "during.backup"))
        finally:
            stop.set()
            thread.join()
        assert sent_during and during["ok"]
        expected[H41] = len(sent_during)
        settle(work, conn, expected)

        # at rest: what the restored axis must show
        before_inboxes = inboxes(conn)
        before_stats = admin_stats(conn)
        before_size, before_sth, problems = log_state(work)
        assert problems == [] and before_stats["sent"] == 12 + len(sent_during)
        rest = cli("backup", "--work-dir", str(work), "-o", str(tmp_path / "rest.backup"))
        assert rest["summary"]["log_leaves"] == before_size and rest["summary"]["sth_tree_size"] == before_size
    finally:
        run.stop()

    # the backup taken during traffic: every store consistent, the log verifying
    mid = tmp_path / "mid"
    restored = cli("restore", str(tmp_path / "during.backup"), "--work-dir", str(mid))
    size, sth, problems = log_state(mid)
    assert problems == [] and sth is not None and size == restored["summary"]["log_leaves"] >= 12 * 4

    # the backup at rest, started from the restored directory
    again = tmp_path / "again"
    cli("restore", str(tmp_path / "rest.backup"), "--work-dir", str(again))
    assert not list(again.rglob("*.partial"))
    run = up(again)
    try:
        conn = connections(again)
        assert conn["ca"].startswith(str(again))
        assert inboxes(conn) == before_inboxes  # every document, ids and acks kept
        assert admin_stats(conn) == before_stats  # every counter
        size, sth, problems = log_state(again)
        assert problems == [] and size == before_size  # every leaf, every tree head verifying
        config = load_config(again / "config.yaml")
        assert config.pki.ca is not None and sth is not None
        verify_sth(sth, [config.pki.ca.read_bytes()])
        assert sth.root_hash == before_sth.root_hash
        # and it goes on: a new document is delivered and logged on top of the restored log
        doc = send(conn, G22, [H53], "sau khi khôi phục")
        expected_after = {code: len(items) for code, items in before_inboxes.items()}
        expected_after[H53] += 1
        settle(again, conn, expected_after)
        with client(conn, H53) as c:
            assert doc in [i["document_id"] for i in c.inbox(limit=1000)]
        size2, sth2, problems2 = log_state(again)
        assert problems2 == [] and size2 > before_size and sth2 is not None and sth2.tree_size == size2
        assert admin_stats(conn)["sent"] == before_stats["sent"] + 1
    finally:
        run.stop()
