from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from axis.cli import app
from axis.core import pki
from axis.core.reasons import Reason, Refusal


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> pki.CertificateAuthority:
    return pki.CertificateAuthority.init(tmp_path_factory.mktemp("pki"), algorithm="ec")


def test_ca_certificate_is_a_self_signed_ca(ca: pki.CertificateAuthority) -> None:
    cert = ca.cert
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    cert.verify_directly_issued_by(cert)
    assert stat.S_IMODE((ca.dir / pki.CA_KEY).stat().st_mode) == 0o600
    crl = pki.load_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(cert.public_key())
    assert len(list(crl)) == 0


@pytest.mark.parametrize("algorithm", ["rsa", "ec"])
def test_issue_agency_certificate(ca: pki.CertificateAuthority, algorithm: pki.Algorithm) -> None:
    code = "000.00.00.G22" if algorithm == "rsa" else "H55.242"
    issued = ca.issue(code, name="Văn phòng Chính phủ", days=30, algorithm=algorithm)
    cert = pki.load_certs(issued.cert_path.read_bytes())[0]
    key = pki.load_key(issued.key_path.read_bytes())
    assert pki.cert_uid(cert) == code
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "Văn phòng Chính phủ"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    cert.verify_directly_issued_by(ca.cert)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30)
    if algorithm == "rsa":
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
    index = json.loads((ca.dir / pki.INDEX).read_text())["certs"]
    assert {"code": code, "serial": format(cert.serial_number, "x")}.items() <= index[-1].items()


def test_long_agency_names_fit_the_common_name(ca: pki.CertificateAuthority) -> None:
    """national-2025 has agency names longer than a CN may be (64, in UTF-8 bytes for cryptography): the CN is
    cut at a character boundary, the UID is whole."""
    name = "Phòng Tài nguyên và Môi trường huyện Lâm Hà, tỉnh Lâm Đồng (đơn vị thuộc UBND huyện)"
    assert len(name.encode()) > 64
    issued = ca.issue("000.12.34.H42", name=name, days=30, algorithm="ec")
    cert = pki.load_certs(issued.cert_path.read_bytes())[0]
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert len(cn.encode()) <= 64 and name.startswith(cn[:-1]) and cn.endswith("…")
    assert pki.cert_uid(cert) == "000.12.34.H42"


def test_revoke_reissues_crl(ca: pki.CertificateAuthority) -> None:
    issued = ca.issue("000.00.00.H41", algorithm="ec")
    serial = ca.revoke("000.00.00.H41")
    assert serial == issued.serial
    crl = pki.load_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(ca.cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert crl.next_update_utc is not None and crl.next_update_utc > dt.datetime.now(dt.UTC)
    # Re-issuing gives a fresh, unrevoked certificate; the old serial stays revoked.
    fresh = ca.issue("000.00.00.H41", algorithm="ec")
    crl = pki.load_crl(ca.write_crl().public_bytes(pki.serialization.Encoding.PEM))
    assert crl.get_revoked_certificate_by_serial_number(fresh.serial) is None
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_refusals_and_usage_errors(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(Refusal) as exc:
        ca.revoke("000.00.00.H99")
    assert exc.value.reason is Reason.CERT_UNTRUSTED
    with pytest.raises(pki.PkiError):
        ca.issue("not a code")
    with pytest.raises(pki.PkiError):
        pki.CertificateAuthority(tmp_path / "missing")
    with pytest.raises(FileExistsError):
        pki.CertificateAuthority.init(ca.dir)


@pytest.mark.parametrize("code", ["000.00.00.G22", "000.00.13.H53", "28.22.H17", "H55.242", "G01"])
def test_valid_codes(code: str) -> None:
    assert pki.valid_code(code)


@pytest.mark.parametrize("code", ["", "g22", "000..G22", "../etc", "A" * 40, "000.00.00.G22 "])
def test_invalid_codes(code: str) -> None:
    assert not pki.valid_code(code)


def test_cli_pki(tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "pki")
    assert runner.invoke(app, ["pki", "init", "--dir", d]).exit_code == 0
    assert runner.invoke(app, ["pki", "init", "--dir", d]).exit_code == 1
    result = runner.invoke(app, ["pki", "issue", "000.00.00.G22", "--dir", d, "--algorithm", "ec", "--days", "10",
                                 "--name", "VPCP", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert Path(out["key"]).is_file() and Path(out["cert"]).is_file() and out["ok"] is True
    cert = pki.load_certs(Path(out["cert"]).read_bytes())[0]
    assert pki.cert_uid(cert) == "000.00.00.G22"
    assert runner.invoke(app, ["pki", "issue", "bad code", "--dir", d]).exit_code == 2
    assert runner.invoke(app, ["pki", "issue", "G01", "--dir", str(tmp_path / "nope")]).exit_code == 2
    assert runner.invoke(app, ["pki", "issue", "G01", "--dir", d, "--algorithm", "dsa"]).exit_code == 2
    refused = runner.invoke(app, ["pki", "revoke", "000.00.00.H99", "--dir", d, "--json"])
    assert refused.exit_code == 1 and json.loads(refused.stdout)["reason"] == "CERT_UNTRUSTED"
    revoked = runner.invoke(app, ["pki", "revoke", "000.00.00.G22", "--dir", d, "--json"])
    assert revoked.exit_code == 0
    crl = pki.load_crl((tmp_path / "pki" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def test_issue_many_is_one_index_write(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority.init(tmp_path, algorithm="ec")
    codes = [f"000.00.00.H{n:02d}" for n in range(10, 60)]
    issued = ca.issue_many([(c, None) for c in codes], algorithm="ec", days=5)
    assert [i.code for i in issued] == codes
    index = json.loads((tmp_path / pki.INDEX).read_text())["certs"]
    assert [e["code"] for e in index] == codes
    assert len({i.serial for i in issued}) == len(codes)
    assert all(pki.cert_uid(pki.load_certs(i.cert_path.read_bytes())[0]) == i.code for i in issued)
