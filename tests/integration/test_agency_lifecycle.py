"""The agency lifecycle on a RUNNING axis (axis.ops.agencies through the admin app and `axis agency`): a whole axis
in real processes (axis.ops.up.start) on its own RabbitMQ vhost. Nothing is restarted:

- add: G09 on a new dedicated server and G10 on the shared one; documents reach them and leave them;
- rotate-cert (with the CLI): documents signed with the new key AND with the previous one are both delivered;
- retire: a retired agency's document is refused FORBIDDEN at its server's door, a document to it is refused
  UNKNOWN_RECIPIENT (the sender's status 02 names it) while the other recipient gets it; its inbox stays readable
  and ackable;
- rename: a document addressed to the former code reaches the renamed agency, which still lists what it received
  before; then it is retired with its certificate revoked (on the CRL, no longer watched for expiry);
- every action is an `admin` leaf of the evidence log naming the administrator; the certificate gauges follow."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from axis.cli import app as cli
from axis.config import generate_workdir, load_config
from axis.core import envelope, pki
from axis.core.signing import sign
from axis.core.tlsconfig import client_context
from tests.integration.conftest import G01, G03, G22
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
XML = {"content-type": "application/xml"}
G09, G10, G10_NEW = "000.00.00.G09", "000.00.00.G10", "G10.2"
WHO = {"X-Axis-Admin": "test-admin"}


class Agency:
    def __init__(self, code: str, endpoint: str, token: str) -> None:
        self.code, self.endpoint = code, endpoint
        self.headers = {"Authorization": f"Bearer {token}"}


async def submit(http: httpx.AsyncClient, a: Agency, data: bytes) -> str:
    for _ in range(50):  # 503 (broker busy) may be retried
        r = await http.post(f"{a.endpoint}/v1/documents", content=data, headers={**XML, **a.headers})
        if r.status_code != 503:
            assert r.status_code == 202, r.text
            return str(r.json()["id"])
        await asyncio.sleep(0.2)
    raise AssertionError("the endpoint stayed unavailable")


async def wait_inbox(http: httpx.AsyncClient, a: Agency, document_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        r = await http.get(f"{a.endpoint}/v1/inbox", params={"limit": 1000}, headers=a.headers)
        assert r.status_code == 200, r.text
        found = [i for i in r.json()["items"] if i["document_id"] == document_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"{document_id} never reached {a.code}"
        await asyncio.sleep(0.2)


async def wait_refusal(http: httpx.AsyncClient, a: Agency, submission_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        r = await http.get(f"{a.endpoint}/v1/documents/{submission_id}/status", headers=a.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items = body["items"] if isinstance(body, dict) else body
        refused = [s for s in items if s.get("code") == "02"]
        if refused:
            return refused[0]
        assert time.monotonic() < deadline, f"no refusal for {submission_id}: {items}"
        await asyncio.sleep(0.2)


def signed(data: bytes, key: Path, cert: Path) -> bytes:
    return sign(data, pki.load_key(key.read_bytes()), pki.load_certs(cert.read_bytes())[0])


def doc(sender: str, to: list[str], subject: str) -> tuple[bytes, str]:
    d = envelope.new_document(sender, to, subject)
    return envelope.build(d), d.document_id


async def scenario(wd: Path, conn: dict[str, Any]) -> dict[str, Any]:
    admin, bearer = conn["admin"]["url"], {"Authorization": f"Bearer {conn['admin']['token']}", **WHO}
    ag = {a["code"]: Agency(a["code"], a["endpoint"], a["token"]) for a in conn["agencies"]}
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=180, verify=client_context(conn["ca"])) as http:
        # -- refusals first: nothing changes
        r = await http.post(f"{admin}/admin/agencies", json={"code": G22, "server": "sh"}, headers=bearer)
        assert r.status_code == 409 and r.json()["reason"] == "FORBIDDEN", r.text
        r = await http.post(f"{admin}/admin/agencies", json={"code": "bad", "server": "sh"}, headers=bearer)
        assert r.status_code == 422 and r.json()["reason"] == "SCHEMA_INVALID", r.text
        r = await http.post(f"{admin}/admin/agencies/000.00.00.G99/retire", headers=bearer)
        assert r.status_code == 404 and r.json()["reason"] == "UNKNOWN_RECIPIENT", r.text
        r = await http.post(f"{admin}/admin/agencies", json={"code": G09, "server": "sh"})
        assert r.status_code == 401
        with socket.socket() as taken:  # the new server cannot start: nothing was added
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            r = await http.post(f"{admin}/admin/agencies", headers=bearer,
                                json={"code": "000.00.00.G11", "server": "d-bad", "port": taken.getsockname()[1]})
        assert r.status_code == 500 and "not added" in r.json()["detail"], r.text
        out["failed_add_config"] = load_config(wd / "config.yaml")

        r = await http.get(f"{ag[G22].endpoint}/v1/directory", headers=ag[G22].headers)
        assert r.status_code == 200, r.text
        synced = r.json()["version"]  # agency software's last sync

        # -- add: G09 on a new dedicated server, G10 on the shared one
        r = await http.post(f"{admin}/admin/agencies", headers=bearer,
                            json={"code": G09, "name": "Bộ Tài chính", "server": "d-g09"})
        assert r.status_code == 201, r.text
        added = r.json()
        assert added["new_server"] and added["kind"] == "dedicated" and added["evidence"] == "recorded"
        ag[G09] = Agency(G09, added["endpoint"], added["token"])
        r = await http.post(f"{admin}/admin/agencies", headers=bearer, json={"code": G10, "server": "sh"})
        assert r.status_code == 201, r.text
        ag[G10] = Agency(G10, r.json()["endpoint"], r.json()["token"])
        out["added"] = added
        data, to_g09 = doc(G22, [G09, G10], "welcome")
        await submit(http, ag[G22], data)  # unsigned: G22's server signs
        await wait_inbox(http, ag[G09], to_g09)
        await wait_inbox(http, ag[G10], to_g09)
        data, from_g09 = doc(G09, [G01], "hello from a new agency")
        await submit(http, ag[G09], data)  # signed by its new server with its new key
        await wait_inbox(http, ag[G01], from_g09)

        # -- rotate-cert, with the CLI
        pki_dir = wd / "pki"
        old_cert = (pki_dir / "agencies" / G22 / "cert.pem").read_bytes()
        result = await asyncio.to_thread(CliRunner().invoke, cli, [  # as an operator elsewhere: URL, token, CA
            "agency", "rotate-cert", G22, "--days", "90", "--json", "--admin", admin, "--token",
            conn["admin"]["token"], "--ca", conn["ca"], "--connections", str(wd / "none.json")])
        assert result.exit_code == 0, result.output
        rotated = orjson.loads(result.stdout)
        out["rotated"] = rotated
        previous = rotated["previous"]
        assert rotated["ok"] and previous["serial"] != rotated["certificate"]["serial"]
        assert Path(previous["cert"]).read_bytes() == old_cert
        data, new_key_doc = doc(G22, [G01], "signed with the new key")
        await submit(http, ag[G22], signed(data, pki_dir / "agencies" / G22 / "key.pem",
                                           pki_dir / "agencies" / G22 / "cert.pem"))
        old_key = pki_dir / "agencies" / G22 / "previous" / f"{previous['serial']}.key.pem"
        data, old_key_doc = doc(G22, [G01], "signed with the previous key")
        await submit(http, ag[G22], signed(data, old_key, Path(previous["cert"])))
        await wait_inbox(http, ag[G01], new_key_doc)
        await wait_inbox(http, ag[G01], old_key_doc)
        data, server_signed = doc(G22, [G01], "unsigned: the server signs with the new key")
        await submit(http, ag[G22], data)
        await wait_inbox(http, ag[G01], server_signed)
        r = await http.get(f"{ag[G01].endpoint}/v1/inbox", params={"limit": 1000}, headers=ag[G01].headers)
        row = next(i for i in r.json()["items"] if i["document_id"] == server_signed)
        r = await http.get(f"{ag[G01].endpoint}/v1/documents/{row['id']}", headers=ag[G01].headers)
        assert _signer_serial(r.content) == rotated["certificate"]["serial"]

        # -- retire G03: its inbox keeps what it had
        data, before = doc(G22, [G03], "before the retirement")
        await submit(http, ag[G22], data)
        kept = await wait_inbox(http, ag[G03], before)
        r = await http.post(f"{admin}/admin/agencies/{G03}/retire", headers=bearer)
        assert r.status_code == 200, r.text
        out["retired"] = r.json()
        r = await http.post(f"{admin}/admin/agencies/{G03}/retire", headers=bearer)
        assert r.status_code == 409 and r.json()["reason"] == "FORBIDDEN", r.text
        data, _ = doc(G03, [G22], "from a retired agency")  # refused at its server's door
        r = await http.post(f"{ag[G03].endpoint}/v1/documents", content=data, headers={**XML, **ag[G03].headers})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", r.text
        out["from_retired"] = r.json()
        data, to_both = doc(G22, [G03, G01], "to a retired agency and another")
        sid = await submit(http, ag[G22], data)
        await wait_inbox(http, ag[G01], to_both)
        out["to_retired"] = await wait_refusal(http, ag[G22], sid)
        r = await http.get(f"{ag[G03].endpoint}/v1/inbox", headers=ag[G03].headers)
        assert r.status_code == 200 and before in [i["document_id"] for i in r.json()["items"]]
        assert to_both not in [i["document_id"] for i in r.json()["items"]]
        r = await http.post(f"{ag[G03].endpoint}/v1/documents/{kept['id']}/ack", headers=ag[G03].headers)
        assert r.status_code in (200, 204), r.text

        # -- rename G10: the former code still reaches it
        r = await http.post(f"{admin}/admin/agencies/{G10}/rename", headers=bearer, json={"code": G10_NEW})
        assert r.status_code == 200, r.text
        out["renamed"] = r.json()
        data, to_former = doc(G22, [G10], "to the former code")
        await submit(http, ag[G22], data)
        await wait_inbox(http, ag[G10], to_former)  # same token, now G10.2's
        await wait_inbox(http, ag[G10], to_g09)  # what it received under its former code is still there

        # -- retire with --revoke: its certificate is on the CRL, no longer watched for expiry
        r = await http.post(f"{admin}/admin/agencies/{G10_NEW}/retire", json={"revoke": True}, headers=bearer)
        assert r.status_code == 200, r.text
        out["revoked"] = r.json()
        r = await http.get(f"{admin}/admin/certificates", params={"limit": 1000}, headers=bearer)
        out["watched"] = {(i["kind"], i["agency"]) for i in r.json()["items"]}

        # -- agency software syncing the directory sees every change
        r = await http.get(f"{ag[G22].endpoint}/v1/directory", params={"since": synced}, headers=ag[G22].headers)
        assert r.status_code == 200, r.text
        out["directory"] = r.json()

        # -- the evidence log and the gauges
        deadline = time.monotonic() + 60
        while True:
            r = await http.get(f"{admin}/admin/documents", params={"type": "admin"}, headers=bearer)
            assert r.status_code == 200, r.text
            out["admin_leaves"] = r.json()["items"]
            if len(out["admin_leaves"]) >= 6:
                break
            assert time.monotonic() < deadline, out["admin_leaves"]
            await asyncio.sleep(0.5)
        out["metrics"] = (await http.get(f"{admin}/metrics", headers=bearer)).text
        out["agencies"] = (await http.get(f"{admin}/admin/agencies", headers=bearer)).json()
    return out


def _signer_serial(data: bytes) -> str:
    """The serial (hex) of the certificate a signed document carries."""
    import base64
    import re

    from cryptography import x509

    b64 = re.search(rb"<(?:\w+:)?X509Certificate>([^<]+)<", data)
    assert b64 is not None
    return format(x509.load_der_x509_certificate(base64.b64decode(b"".join(b64.group(1).split()))).serial_number, "x")


def test_agency_lifecycle_on_a_running_axis(tmp_path: Path, vhost_url: str) -> None:
    from axis.ops.up import start

    wd = tmp_path / "w"
    path, conn = generate_workdir(wd, [(G22, "VPCP", "d1"), (G01, "BCA", "sh"), (G03, "BGDĐT", "sh")],
                                  [("d1", "dedicated"), ("sh", "shared")], base_port=free_port_block(4),
                                  amqp_url=vhost_url)
    run = start(path, wd, conn, timeout=120)
    try:
        out = asyncio.run(scenario(wd, conn))
        assert run.failed() == []
        supervisor_log = (wd / "logs" / "supervisor.log").read_text()
    finally:
        run.stop()
    assert out["added"]["token"] not in supervisor_log  # the new token is never logged
    refused = out["from_retired"]  # its server's answer (the router refuses it too: tests/router)
    assert refused["reason"] == "FORBIDDEN" and f"{G03} is retired" in refused["detail"]
    refused = out["to_retired"]  # the sender is told who did not get its document, and why
    assert refused["reason"] == "UNKNOWN_RECIPIENT" and f"retired (no longer a recipient): {G03}" in \
        refused["description"]
    leaves = out["admin_leaves"]
    actions = [(x["action"], x["agency"], x["sender"]) for x in leaves]
    assert actions == [("agency-add", G09, G09), ("agency-add", G10, G10), ("agency-rotate-cert", G22, G22),
                       ("agency-retire", G03, G03), ("agency-rename", G10_NEW, G10),
                       ("agency-retire", G10_NEW, G10_NEW)]
    assert {x["admin"] for x in leaves} == {"test-admin", leaves[2]["admin"]} and leaves[2]["admin"]
    assert leaves[2]["sha256"] == out["rotated"]["certificate"]["sha256"] and leaves[3]["sha256"] == ""
    assert f'axis_certificate_days_left{{agency="{G09}",component="",kind="agency"}}' in out["metrics"]
    assert f'axis_certificate_days_left{{agency="{G03}",component="",kind="agency"}}' not in out["metrics"]  # retired
    failed = out["failed_add_config"]
    assert failed.agency("000.00.00.G11") is None and "d-bad" not in [sv.id for sv in failed.servers]
    crl = pki.load_crl((wd / "pki" / "crl.pem").read_bytes())
    for unused in (wd / "pki" / "agencies" / "000.00.00.G11" / "cert.pem",
                   wd / "pki" / "tls" / "clients" / "000.00.00.G11" / "cert.pem"):  # issued, then revoked
        serial = pki.load_certs(unused.read_bytes())[0].serial_number
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    sync = out["directory"]
    listed = {a["code"]: (a["active"], a["aliases"]) for a in sync["agencies"]}
    assert listed == {G09: (True, []), G03: (False, []), G10_NEW: (False, [G10])} and sync["deleted"] == [G10]
    revoked = int(out["revoked"]["revoked_serial"], 16)
    assert crl.get_revoked_certificate_by_serial_number(revoked) is not None
    assert ("agency", G10_NEW) not in out["watched"] and ("agency", G22) in out["watched"]
    rows = {a["code"]: a for a in out["agencies"]}
    assert rows[G09]["server"] == "d-g09" and G10_NEW in rows and G10 not in rows
    assert rows[G03]["active"] is False and rows[G22]["active"] is True and rows[G10_NEW]["aliases"] == [G10]
    final = load_config(path)
    assert final.agency(G03).active is False and final.agency(G10_NEW).aliases == (G10,)  # type: ignore[union-attr]
    written = orjson.loads((wd / "connections.json").read_bytes())
    tokens = {a["code"]: a["token"] for a in written["agencies"]}
    assert tokens[G09] == out["added"]["token"] and tokens[G10_NEW]  # the renamed agency kept its token
