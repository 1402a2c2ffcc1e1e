from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import XMLVerifier
from typer.testing import CliRunner

from axis.cli import app
from axis.core import pki
from axis.core.dsig import DSIG, ECDSA_SHA256, EXC_C14N, PROFILE_TRANSFORMS, RSA_SHA256, SHA256, e, exc_c14n, q
from axis.core.reasons import Reason, Refusal
from axis.core.signing import sign
from tests.support.testing import TestPKI, make_edxml, make_pki

A, B = "000.00.00.G22", "000.00.00.H41"


@pytest.fixture(scope="module", params=["rsa", "ec"])
def kit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [A, B], algorithm=request.param)


def test_signature_shape(kit: TestPKI) -> None:
    unsigned = make_edxml(A, [B], size=3000)
    signed = sign(unsigned, kit.key(A), kit.cert(A), [kit.ca_cert])
    root = etree.fromstring(signed)
    sigs = list(root.iter("{*}Signature"))
    assert len(sigs) == 1 and sigs[0].tag == q("Signature")
    header = root.find(f"{e('edXMLEnvelope')}/{e('edXMLHeader')}")
    assert header is not None and header[-1] is sigs[0]
    ns = {"ds": DSIG}
    assert sigs[0].xpath("ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm", namespaces=ns) == [EXC_C14N]
    method = RSA_SHA256 if kit.algorithm == "rsa" else ECDSA_SHA256
    assert sigs[0].xpath("ds:SignedInfo/ds:SignatureMethod/@Algorithm", namespaces=ns) == [method]
    assert sigs[0].xpath("ds:SignedInfo/ds:Reference/@URI", namespaces=ns) == [""]
    transforms = sigs[0].xpath("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform/@Algorithm", namespaces=ns)
    assert tuple(transforms) == PROFILE_TRANSFORMS
    assert sigs[0].xpath("ds:SignedInfo/ds:Reference/ds:DigestMethod/@Algorithm", namespaces=ns) == [SHA256]
    certs = sigs[0].xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()", namespaces=ns)
    assert [base64.b64decode(c) for c in certs] == [
        kit.cert(A).public_bytes(serialization.Encoding.DER), kit.ca_cert.public_bytes(serialization.Encoding.DER)
    ]
    if kit.algorithm == "ec":  # XML-DSig ECDSA values are r||s, 32 bytes each for P-256
        value = sigs[0].xpath("ds:SignatureValue/text()", namespaces=ns)[0]
        assert len(base64.b64decode(value)) == 64
    # Everything but the Signature is canonically what was given.
    header.remove(sigs[0])
    assert exc_c14n(root) == exc_c14n(etree.fromstring(unsigned))


def test_signxml_accepts_our_signatures(kit: TestPKI) -> None:
    signed = kit.envelope(A, [B], size=5000)
    result = XMLVerifier().verify(signed, x509_cert=kit.cert(A))
    assert etree.QName(result.signed_xml).localname == "edXML"


def test_already_signed_is_refused_unless_replace(kit: TestPKI) -> None:
    signed = kit.envelope(A, [B], size=2000)
    with pytest.raises(Refusal) as exc:
        kit.sign(signed, A)
    assert exc.value.reason is Reason.SIGNATURE_PROFILE
    resigned = sign(signed, kit.key(B), kit.cert(B), replace=True)
    root = etree.fromstring(resigned)
    assert len(list(root.iter(q("Signature")))) == 1
    with pytest.raises(Refusal) as exc:
        kit.verifier().verify(resigned)
    assert exc.value.reason is Reason.SIGNER_MISMATCH  # B signed A's document: signature fine, signer wrong
    assert kit.verifier().verify(sign(signed, kit.key(A), kit.cert(A), replace=True)).signer == A


def test_bad_inputs(kit: TestPKI) -> None:
    with pytest.raises(ValueError):
        sign(make_edxml(A, [B]), kit.key(A), kit.cert(B))
    with pytest.raises(Refusal) as exc:
        kit.sign(b"<a><b></a>", A)
    assert exc.value.reason is Reason.XML_MALFORMED
    with pytest.raises(Refusal) as exc:
        kit.sign(b"<notedxml/>", A)
    assert exc.value.reason is Reason.SCHEMA_INVALID
    with pytest.raises(Refusal) as exc:
        kit.sign(b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', A)
    assert exc.value.reason is Reason.XML_FORBIDDEN


def test_cli_sign(kit: TestPKI, tmp_path: Path) -> None:
    src = tmp_path / "u.edxml"
    src.write_bytes(make_edxml(A, [B], size=2000))
    out = tmp_path / "s.edxml"
    runner = CliRunner()
    args = ["envelope", "sign", str(src), "--key", str(kit.key_path(A)), "--cert", str(kit.cert_path(A))]
    result = runner.invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert kit.verifier().verify(out.read_bytes()).signer == A
    to_stdout = runner.invoke(app, args)
    assert to_stdout.exit_code == 0 and kit.verifier().verify(to_stdout.stdout_bytes).signer == A
    again = runner.invoke(app, ["envelope", "sign", str(out), "--key", str(kit.key_path(A)),
                                "--cert", str(kit.cert_path(A))])
    assert again.exit_code == 1 and "SIGNATURE_PROFILE" in again.output
    missing = runner.invoke(app, ["envelope", "sign", str(tmp_path / "nope"), "--key", str(kit.key_path(A)),
                                  "--cert", str(kit.cert_path(A))])
    assert missing.exit_code == 2
    assert pki.cert_uid(pki.load_certs(kit.cert_path(A).read_bytes())[0]) == A
