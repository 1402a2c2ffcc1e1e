"""Directory sync on a running axis (`axis up` processes, the real RabbitMQ): agency software learns a code change
by version through GET /v1/directory?since= (the Python client and `axis directory`), the former code routed to
the agency — without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from axis.cli import app as cli
from axis.client import Client
from axis.config import generate_workdir
from axis.core import envelope
from axis.core.tlsconfig import client_context
from axis.ops.up import start
from tests.integration.conftest import AGENCIES, G01, G03, G22, H41, H53, SERVERS
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
NEW = "G03.2025"


def test_directory_sync_follows_a_code_change(tmp_path: Path, vhost_url: str) -> None:
    base = free_port_block(len(SERVERS) + 1)
    work = tmp_path / "work"
    path, known = generate_workdir(work, AGENCIES, SERVERS, base_port=base + 1, admin_port=base, amqp_url=vhost_url)
    run = start(path, work, known, routers=1, servers_per_host=3)
    try:
        conn = orjson.loads((work / "connections.json").read_bytes())
        with Client.from_connections(conn, H53) as c:
            first = c.directory()
            assert sorted(a["code"] for a in first["agencies"]) == sorted([G22, H53, G01, G03, H41])
            assert first["full"] and c.directory(since=first["version"])["agencies"] == []
        admin = conn["admin"]
        r = httpx.post(f"{admin['url']}/admin/agencies/{G03}/rename", json={"code": NEW},
                       headers={"Authorization": f"Bearer {admin['token']}"}, verify=client_context(conn["ca"]),
                       trust_env=False, timeout=120)
        assert r.status_code == 200, r.text
        with Client.from_connections(conn, H53) as c:  # another server's agency software learns it by version
            later = c.directory(since=first["version"])
        assert later["version"] > first["version"] and later["deleted"] == [G03]
        assert [(a["code"], a["aliases"], a["active"]) for a in later["agencies"]] == [(NEW, [G03], True)]
        # the same through the CLI, from connections.json, as another agency
        (tmp_path / "conn.json").write_bytes(orjson.dumps(conn))
        out = CliRunner().invoke(cli, ["directory", "--connections", str(tmp_path / "conn.json"), "--agency", G22,
                                       "--since", str(first["version"]), "--json"])
        assert out.exit_code == 0, out.stdout + out.stderr
        assert orjson.loads(out.stdout) == later
        # a document addressed to the former code reaches the agency under its new code
        with Client.from_connections(conn, G22) as c:
            doc = c.submit(envelope.build(envelope.new_document(G22, [G03], "to the former code")))["document_id"]
        with Client.from_connections(conn, G03) as c:  # connections.json's entry: the token is unchanged
            deadline = time.monotonic() + 30
            while doc not in [i["document_id"] for i in c.inbox()]:
                assert time.monotonic() < deadline
                time.sleep(0.3)
            assert c.directory(since=later["version"])["agencies"] == []
    finally:
        run.stop()
