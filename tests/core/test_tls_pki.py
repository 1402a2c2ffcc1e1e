"""Transport certificates from the axis CA (contract section 6): the TLS server certificate, agency TLS client
certificates, their revocation, the TLS settings of axis.core.tlsconfig over a real loopback handshake, and the
rule that a TLS certificate never signs a document."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from axis.cli import app
from axis.core import pki, tlsconfig
from axis.core.reasons import Reason, Refusal
from axis.core.signing import sign
from tests.support.testing import TestPKI, make_edxml, make_pki

G22, G01 = "000.00.00.G22", "000.00.00.G01"


@pytest.fixture(scope="module")
def tpki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [G22, G01], algorithm="ec")


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_server_certificate(tpki: TestPKI) -> None:
    issued = pki.issue_server_certificate(tpki.dir, ["axis.example.gov.vn", "10.0.0.7", "127.0.0.1", "0.0.0.0"])
    assert issued.key_path == tpki.dir / "tls/server/key.pem" and stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
    cert = pki.load_certs(issued.cert_path.read_bytes())[0]
    cert.verify_directly_issued_by(tpki.ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "axis.example.gov.vn"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("10.0.0.7")]
    assert _eku(cert) == [x509.ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert pki.cert_uid(cert) is None  # no agency holds it
    entry = json.loads((tpki.dir / pki.INDEX).read_text())["certs"][-1]
    assert entry["code"] == pki.SERVER_CODE and entry["serial"] == format(cert.serial_number, "x")


def test_client_certificates(tpki: TestPKI) -> None:
    issued = pki.issue_client_certificates(tpki.dir, [(G22, "Văn phòng Chính phủ"), (G01, None)])
    assert [i.cert_path for i in issued] == [pki.client_dir(tpki.dir, c) / "cert.pem" for c in (G22, G01)]
    cert = pki.load_certs(issued[0].cert_path.read_bytes())[0]
    cert.verify_directly_issued_by(tpki.ca_cert)
    assert pki.cert_uid(cert) == G22 and _eku(cert) == [x509.ExtendedKeyUsageOID.CLIENT_AUTH]
    ident = pki.ClientCertificate.from_der(cert.public_bytes(pki.serialization.Encoding.DER))
    assert ident == pki.ClientCertificate(G22, cert.serial_number, True)
    signing = tpki.cert(G22).public_bytes(pki.serialization.Encoding.DER)
    assert pki.ClientCertificate.from_der(signing).client_auth is False  # a signing certificate is not a TLS one
    index = json.loads((tpki.dir / pki.INDEX).read_text())["certs"]
    assert {"code": G22, "usage": pki.TLS_CLIENT_USAGE}.items() <= index[-2].items()
    with pytest.raises(pki.PkiError):
        pki.issue_client_certificates(tpki.dir, [("not a code", None)])


def test_revoke_a_client_certificate(tmp_path: Path) -> None:
    t = make_pki(tmp_path, [G22], algorithm="ec")
    issued = pki.issue_client_certificates(t.dir, [(G22, None)])[0]
    assert pki.revoked_serials(t.ca_pem.read_bytes(), t.crl_pem.read_bytes()) == frozenset()
    assert pki.revoke_client_certificate(t.dir, G22) == issued.serial
    assert pki.revoked_serials(t.ca_pem.read_bytes(), t.crl_pem.read_bytes()) == {issued.serial}
    # the agency's signing certificate is untouched
    assert t.cert(G22).serial_number not in pki.revoked_serials(t.ca_pem.read_bytes(), t.crl_pem.read_bytes())
    with pytest.raises(Refusal) as e:
        pki.revoke_client_certificate(t.dir, G01)
    assert e.value.reason is Reason.CERT_UNTRUSTED
    other = make_pki(tmp_path / "other", [G22], algorithm="ec")
    with pytest.raises(ValueError, match="not signed by the axis CA"):
        pki.revoked_serials(t.ca_pem.read_bytes(), other.crl_pem.read_bytes())


def test_a_tls_certificate_never_signs_a_document(tpki: TestPKI) -> None:
    """A TLS client certificate names its agency (UID) and has digitalSignature, like a signing certificate: the
    verifier still refuses it (CERT_USAGE) — a stolen transport key cannot sign official documents."""
    key = pki.new_key("ec")
    cert = pki.issue_client_cert(tpki.ca.key, tpki.ca_cert, G22, key.public_key())
    signed = sign(make_edxml(G22, [G01]), key, cert)
    with pytest.raises(Refusal) as e:
        tpki.verifier().verify(signed)
    assert e.value.reason is Reason.CERT_USAGE and "TLS" in e.value.detail
    tpki.verifier().verify(tpki.envelope(G22, [G01]))  # the agency's own signing certificate still signs


def test_cli_issue_server_and_client(tmp_path: Path) -> None:
    runner = CliRunner()
    d = tmp_path / "ca"
    assert runner.invoke(app, ["pki", "init", "--dir", str(d), "--algorithm", "ec"]).exit_code == 0
    r = runner.invoke(app, ["pki", "issue-server", "--dir", str(d), "--host", "axis.local", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["names"] == ["127.0.0.1", "localhost", "axis.local"] and Path(out["cert"]).is_file()
    r = runner.invoke(app, ["pki", "issue-client", G22, "--dir", str(d), "--json"])
    assert r.exit_code == 0, r.output
    serial = json.loads(r.stdout)["serial"]
    r = runner.invoke(app, ["pki", "revoke", G22, "--dir", str(d), "--tls-client", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["serial"] == serial
    assert runner.invoke(app, ["pki", "issue-server", "--dir", str(tmp_path / "none")]).exit_code == 2
    assert runner.invoke(app, ["pki", "issue-client", "bad code", "--dir", str(d)]).exit_code == 2
    assert runner.invoke(app, ["pki", "revoke", G01, "--dir", str(d), "--tls-client"]).exit_code == 1


# ---- axis.core.tlsconfig over a loopback handshake ----------------------------------------------------------------


async def _exchange(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, host: str = "127.0.0.1"
                    ) -> tuple[str, bytes | None]:
    """One handshake and one line; returns (the negotiated version, the client certificate the server saw)."""
    seen: list[bytes | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(tlsconfig.peer_certificate(writer.get_extra_info("ssl_object")))
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname=host)
        writer.write(b"hello\n")
        assert await reader.readline() == b"hello\n"
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        return version, seen[0]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def tls_files(tpki: TestPKI) -> tuple[TestPKI, pki.Issued, pki.Issued]:
    server = pki.issue_server_certificate(tpki.dir)
    client = pki.issue_client_certificates(tpki.dir, [(G22, None)])[0]
    return tpki, server, client


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_contexts(tls_files: tuple[TestPKI, pki.Issued, pki.Issued]) -> None:
    t, server, _ = tls_files
    srv = tlsconfig.server_context(server.cert_path, server.key_path)
    assert srv.minimum_version is ssl.TLSVersion.TLSv1_2 and srv.verify_mode is ssl.CERT_NONE
    assert all("GCM" in c["name"] or "CHACHA20" in c["name"] for c in srv.get_ciphers())
    version, peer = asyncio.run(_exchange(srv, tlsconfig.client_context(t.ca_pem)))
    assert version == "TLSv1.3" and peer is None
    for name in ("localhost",):  # every SAN verifies
        asyncio.run(_exchange(srv, tlsconfig.client_context(t.ca_pem), host=name))
    with pytest.raises(ssl.SSLCertVerificationError):  # a name the certificate does not carry
        asyncio.run(_exchange(srv, tlsconfig.client_context(t.ca_pem), host="example.org"))
    other = make_pki(t.dir / "other", [G01], algorithm="ec")
    with pytest.raises(ssl.SSLCertVerificationError):  # a client trusting another CA
        asyncio.run(_exchange(srv, tlsconfig.client_context(other.ca_pem)))
    old = tlsconfig.client_context(t.ca_pem)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):  # TLS 1.1 is refused
        asyncio.run(_exchange(srv, old))
    tls12 = tlsconfig.client_context(t.ca_pem)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert asyncio.run(_exchange(srv, tls12))[0] == "TLSv1.2"


def test_mutual_tls_context(tls_files: tuple[TestPKI, pki.Issued, pki.Issued]) -> None:
    t, server, client = tls_files
    srv = tlsconfig.server_context(server.cert_path, server.key_path, client_ca=t.ca_pem, client_auth="required")
    assert srv.verify_mode is ssl.CERT_OPTIONAL  # "required" is decided per request (401 UNAUTHORIZED)
    _, peer = asyncio.run(_exchange(srv, tlsconfig.client_context(t.ca_pem, client.cert_path, client.key_path)))
    assert peer is not None and pki.ClientCertificate.from_der(peer).uid == G22
    assert asyncio.run(_exchange(srv, tlsconfig.client_context(t.ca_pem)))[1] is None  # none presented
    tlsconfig.set_client_auth(srv, "off")
    assert asyncio.run(_exchange(srv, tlsconfig.client_context(t.ca_pem, client.cert_path, client.key_path)))[1] \
        is None  # not asked for
    with pytest.raises(ValueError):
        tlsconfig.set_client_auth(srv, "sometimes")
    with pytest.raises(ValueError, match="needs the CA"):
        tlsconfig.server_context(server.cert_path, server.key_path, client_auth="optional")
