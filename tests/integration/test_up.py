"""`axis up` machinery end to end: child processes (routers, the log writer, endpoint host, admin),
connections.json, the Python client and the `axis send` / `axis inbox` commands over real HTTP and the real
RabbitMQ."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from axis.broker import users as brokerauth
from axis.broker.users import host_user
from axis.client import AxisError, Client
from axis.config import generate_workdir
from axis.config.workdir import check_records_dir
from axis.core import envelope
from axis.core.tlsconfig import client_context
from axis.ops.up import start
from tests.integration.conftest import AGENCIES, G01, G22, H53, SERVERS
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def test_up_send_inbox(tmp_path: Path, vhost_url: str, rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    base = free_port_block(len(SERVERS) + 1)
    work = tmp_path / "work"
    path, known = generate_workdir(work, AGENCIES, SERVERS, base_port=base + 1, admin_port=base, amqp_url=vhost_url)
    run = start(path, work, known, routers=2, servers_per_host=2)
    try:
        assert run.connections_path == work / "connections.json"
        conn = json.loads(run.connections_path.read_text())
        names = sorted(n for n, _ in run.procs)
        assert names == ["admin", "host-1", "host-2", "log-writer", "router-1", "router-2"]  # one log writer
        assert run.ready("log-writer")  # start() returned once it consumed axis.evidence
        # the directory as it starts is version 1, so that the first change on the running axis is version 2
        # (a journal first written by that change would list it as version 1, unseen by software synced at 1)
        journal = json.loads((work / "directory-journal.json").read_text())
        assert journal["version"] == 1 and len(journal["agencies"]) == len(AGENCIES)
        by = {a["code"]: a for a in conn["agencies"]}
        assert by[G01]["kind"] == "shared" and by[G22]["kind"] == "dedicated" and by[G22]["token"]
        # HTTPS everywhere (contract section 6): every URL, the CA to trust, each agency's TLS client certificate
        assert conn["admin"]["url"].startswith("https://") and all(a["endpoint"].startswith("https://")
                                                                   for a in conn["agencies"])
        assert Path(conn["ca"]).is_file() and all(Path(a["tls_cert"]).is_file() for a in conn["agencies"])
        ca = conn["ca"]
        admin = httpx.get(conn["admin"]["url"] + "/healthz", verify=client_context(ca), trust_env=False, timeout=10)
        assert admin.status_code == 200 and admin.headers["strict-transport-security"] == "max-age=31536000"

        doc = tmp_path / "doc.edxml"
        doc.write_bytes(envelope.build(envelope.new_document(G22, [H53, G01], "Qua axis up")))
        cli = [sys.executable, "-m", "axis"]
        out = subprocess.run([*cli, "send", str(doc), "--endpoint", by[G22]["endpoint"], "--token", by[G22]["token"],
                              "--ca", ca, "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        sub = json.loads(out.stdout)
        assert sub["ok"] and sub["recipients"] == [H53, G01]

        with Client(by[G01]["endpoint"], by[G01]["token"], ca=ca) as c:
            deadline = time.monotonic() + 30
            while not (items := c.inbox()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert [i["document_id"] for i in items] == [sub["document_id"]]
        out = subprocess.run([*cli, "inbox", "--endpoint", by[H53]["endpoint"], "--token", by[H53]["token"],
                              "--connections", str(run.connections_path), "--json"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and len(json.loads(out.stdout)["items"]) == 1

        out = subprocess.run([*cli, "inbox", "--endpoint", by[H53]["endpoint"], "--token", "nope", "--ca", ca,
                              "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and json.loads(out.stdout)["reason"] == "UNAUTHORIZED"
        with Client(by[H53]["endpoint"], by[G01]["token"], ca=ca) as c, pytest.raises(AxisError) as e:
            c.inbox()
        assert (e.value.status, e.value.reason) == (401, "UNAUTHORIZED")

        # least privilege: `axis up` provisioned one broker user per component (passwords in a 0600 file), and
        # every child connects as its own user — the host process of sh and d2 as its host user (endpoints.link),
        # the host of d1 alone as d1's user
        users_file = work / "broker-users.json"
        assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
        vhost = vhost_url.rsplit("/", 1)[1]
        assert sorted(sorted(ids) for ids in run.hosts.values()) == [["d1"], ["d2", "sh"]]
        expected = {f"{vhost}.axis-router", f"{vhost}.axis-evidence", f"{vhost}.axis-server-d1",
                    f"{vhost}.{host_user(['sh', 'd2'])}"}
        assert expected <= set(brokerauth.load_passwords(users_file))
        base, auth, _ = rabbit_mgmt
        deadline = time.monotonic() + 30
        while True:
            conns = httpx.get(f"{base}/api/vhosts/{vhost}/connections", auth=auth, timeout=10).json()
            users = sorted(c["user"] for c in conns)
            if expected <= set(users) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # (the admin app connects as axis-admin for the dead letters: its own user too)
        assert expected <= set(users) <= expected | {f"{vhost}.axis-admin"}, users
        assert users.count(f"{vhost}.axis-router") == 2, users
        # the door's full check, recorded for the other host process (endpoints.checked): in shared memory
        assert list(check_records_dir(work).glob("*/*/*"))
    finally:
        run.stop()
    assert all(p.poll() is not None for _, p in run.procs)
    assert not check_records_dir(work).exists()  # nothing left behind in /dev/shm
