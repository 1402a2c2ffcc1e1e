"""Certificate rotation and revocation without restarts (issue 18 item 4), against a running ``axis up``: a
re-issued TLS server certificate is what new connections to every endpoint and the admin app see, and a revoked
agency is refused at the door — both within seconds, no process restarted (axis.ops.trustwatch: the supervisor
sends SIGHUP when the CRL, the CA or the server certificate changes)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from axis.client import AxisError, Client
from axis.config import generate_workdir
from axis.core import envelope, pki
from axis.core.signing import sign
from axis.ops.up import start
from tests.integration.conftest import AGENCIES, G01, G22, H53, SERVERS
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def served_serial(url: str, ca: Path) -> int:
    """The serial of the certificate a new TLS connection to ``url`` (https://host:port) is shown."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def eventually(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_rotation_and_revocation_without_restart(tmp_path: Path, vhost_url: str) -> None:
    base = free_port_block(len(SERVERS) + 1)
    work = tmp_path / "work"
    path, known = generate_workdir(work, AGENCIES, SERVERS, base_port=base + 1, admin_port=base, amqp_url=vhost_url)
    run = start(path, work, known, routers=1, servers_per_host=2)
    try:
        conn = json.loads(run.connections_path.read_text())  # type: ignore[union-attr]
        ca = Path(conn["ca"])
        by = {a["code"]: a for a in conn["agencies"]}
        urls = [conn["admin"]["url"], by[G22]["endpoint"], by[G01]["endpoint"]]
        before = {u: served_serial(u, ca) for u in urls}
        pids = {n: p.pid for n, p in run.procs}

        renewed = pki.issue_server_certificate(work / "pki")  # `axis pki issue-server`, the files replaced
        assert renewed.serial not in before.values()
        eventually(lambda: all(served_serial(u, ca) == renewed.serial for u in urls))

        doc = envelope.build(envelope.new_document(G22, [H53], "Trước khi thu hồi"))
        key = pki.load_key((work / "pki/agencies" / G22 / "key.pem").read_bytes())
        cert = pki.load_certs((work / "pki/agencies" / G22 / "cert.pem").read_bytes())[0]
        with Client(by[G22]["endpoint"], by[G22]["token"], ca=ca) as client:
            assert client.submit(sign(doc, key, cert))["recipients"] == [H53]
            pki.CertificateAuthority(work / "pki").revoke(G22)  # `axis pki revoke`: a new CRL

            def refused() -> bool:
                again = envelope.build(envelope.new_document(G22, [H53], "Sau khi thu hồi"))
                try:
                    client.submit(sign(again, key, cert))
                except AxisError as exc:
                    assert exc.reason == "CERT_REVOKED", exc
                    return True
                return False

            eventually(refused)
        assert {n: p.pid for n, p in run.procs} == pids and not run.failed()  # nothing was restarted
        assert "trust files changed: reloading" in (work / "logs" / "supervisor.log").read_text()
    finally:
        run.stop()
