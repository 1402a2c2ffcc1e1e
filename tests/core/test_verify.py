from __future__ import annotations

import dataclasses
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree
from signxml import XMLSigner, methods
from typer.testing import CliRunner

from axis.cli import app
from axis.core import pki
from axis.core.dsig import EXC_C14N, e, exc_c14n, q
from axis.core.envelope import DocumentMessage
from axis.core.reasons import Reason, Refusal
from axis.core.signing import sign
from axis.core.verify import Verifier, VerifyPolicy
from tests.support.testing import TestPKI, make_edxml, make_pki

A, B, C = "000.00.00.G22", "000.00.00.H41", "H55.242"


@pytest.fixture(scope="module", params=["rsa", "ec"])
def kit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [A, B, C], algorithm=request.param)


def refused(verifier: Verifier, data: bytes) -> Refusal:
    with pytest.raises(Refusal) as exc:
        verifier.verify(data)
    return exc.value


def test_accepts_and_returns_the_verified_document(kit: TestPKI) -> None:
    data = kit.envelope(A, [B, C], size=10_000)
    verified = kit.verifier().verify(data)
    assert verified.signer == A
    assert verified.certificate == kit.cert(A)
    assert verified.data == data
    # root is the document parsed from exactly these bytes, Signature still in place (restored after digesting).
    assert exc_c14n(verified.root) == exc_c14n(etree.fromstring(data))
    header = verified.root.find(f"{e('edXMLEnvelope')}/{e('edXMLHeader')}")
    assert header is not None and header[-1].tag == q("Signature")
    assert [t.text for t in verified.root.iter(e("OrganId"))][:3] == [A, B, C]
    message = verified.message
    assert isinstance(message, DocumentMessage)
    assert message.sender.organ_id == A and [r.organ_id for r in message.recipients] == [B, C]
    assert verified.message is message  # parsed once
    with pytest.raises(dataclasses.FrozenInstanceError):
        verified.signer = B  # type: ignore[misc]


def test_one_megabyte_envelope(kit: TestPKI) -> None:
    data = kit.envelope(B, [A], size=1_000_000)
    assert len(data) > 1_000_000
    assert kit.verifier().verify(data).signer == B


@pytest.mark.parametrize("placeholder", [True, False])
def test_envelope_signed_by_signxml_verifies(kit: TestPKI, placeholder: bool) -> None:
    """Any correct XML-DSig implementation following the profile produces envelopes the fast path accepts."""
    root = etree.fromstring(make_edxml(A, [B], size=6000))
    header = root.find(f"{e('edXMLEnvelope')}/{e('edXMLHeader')}")
    assert header is not None
    if placeholder:
        etree.SubElement(header, q("Signature"), Id="placeholder")
    method = "rsa-sha256" if kit.algorithm == "rsa" else "ecdsa-sha256"
    signer = XMLSigner(method=methods.enveloped, signature_algorithm=method, digest_algorithm="sha256",
                       c14n_algorithm=EXC_C14N)
    signed = signer.sign(root, key=kit.key(A), cert=[kit.cert(A)])
    if not placeholder:  # signxml appends to the root; move it where the profile wants it, re-sign
        sig = signed.find(q("Signature"))
        assert sig is not None
        signed.remove(sig)
        h = signed.find(f"{e('edXMLEnvelope')}/{e('edXMLHeader')}")
        assert h is not None
        h.append(etree.Element(q("Signature"), Id="placeholder"))
        signed = signer.sign(signed, key=kit.key(A), cert=[kit.cert(A)])
    data = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    assert kit.verifier().verify(data).signer == A


def test_too_large_and_unsigned(kit: TestPKI) -> None:
    data = kit.envelope(A, size=20_000)
    assert refused(kit.verifier(max_bytes=len(data) - 1), data).reason is Reason.TOO_LARGE
    assert kit.verifier(max_bytes=len(data)).verify(data).signer == A
    unsigned = make_edxml(A, [B])
    assert refused(kit.verifier(), unsigned).reason is Reason.SIGNATURE_MISSING
    lenient = kit.verifier(require_signature=False).verify(unsigned)
    assert lenient.signer is None and lenient.certificate is None
    # Not requiring a signature does not mean not checking one that is there.
    tampered = data.replace(b"<Subject>", b"<Subject>x", 1)
    assert refused(kit.verifier(require_signature=False), tampered).reason is Reason.SIGNATURE_INVALID


def test_policy_clock_decides_validity_even_with_a_warm_cache(kit: TestPKI) -> None:
    data = kit.envelope(A)
    now = [dt.datetime.now(dt.UTC)]
    verifier = kit.verifier(clock=lambda: now[0])
    assert verifier.verify(data).signer == A  # warms the certificate cache
    now[0] = kit.cert(A).not_valid_after_utc + dt.timedelta(seconds=1)
    assert refused(verifier, data).reason is Reason.CERT_EXPIRED
    now[0] = kit.cert(A).not_valid_before_utc - dt.timedelta(seconds=1)
    assert refused(verifier, data).reason is Reason.CERT_EXPIRED
    now[0] = dt.datetime.now(dt.UTC)
    assert verifier.verify(data).signer == A


def test_revocation_is_per_policy(kit: TestPKI, tmp_path: Path) -> None:
    key, cert = kit.make_cert(C)
    data = sign(make_edxml(C, [A]), key, cert)
    before = kit.verifier()
    assert before.verify(data).signer == C
    kit.revoke_cert(cert)
    assert refused(kit.verifier(), data).reason is Reason.CERT_REVOKED
    assert before.verify(data).signer == C  # the older policy had the older CRL


def test_algorithm_policy(kit: TestPKI) -> None:
    data = kit.envelope(A)
    strict = kit.verifier(digest_algorithms=frozenset({"http://www.w3.org/2001/04/xmlenc#sha512"}))
    assert refused(strict, data).reason is Reason.WEAK_ALGORITHM
    with pytest.raises(ValueError):
        kit.verifier(digest_algorithms=frozenset({"http://www.w3.org/2000/09/xmldsig#sha1"}))


def test_foreign_crl_is_rejected_at_construction(kit: TestPKI) -> None:
    rogue_key, rogue = pki.make_ca("rogue", algorithm="ec")
    crl = pki.make_crl(rogue_key, rogue, [])
    with pytest.raises(ValueError):
        Verifier(VerifyPolicy(trust_anchors=(kit.ca_cert,), crls=(crl,)))


def test_no_trust_anchor_trusts_nothing(kit: TestPKI) -> None:
    assert refused(Verifier(VerifyPolicy()), kit.envelope(A)).reason is Reason.CERT_UNTRUSTED


def test_intermediate_ca_chain(kit: TestPKI) -> None:
    inter_key = pki.new_key("ec")
    now = dt.datetime.now(dt.UTC)
    inter = (
        pki.x509.CertificateBuilder()
        .subject_name(pki.x509.Name([pki.x509.NameAttribute(pki.NameOID.COMMON_NAME, "axis issuing CA")]))
        .issuer_name(kit.ca_cert.subject)
        .public_key(inter_key.public_key())
        .serial_number(pki.x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(pki.x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(kit.ca.key, pki.hashes.SHA256())
    )
    key, cert = kit.make_cert(A, issuer=(inter_key, inter))
    unsigned = make_edxml(A, [B])
    verifier = Verifier(VerifyPolicy(trust_anchors=(kit.ca_cert,)))
    assert verifier.verify(sign(unsigned, key, cert, [inter])).signer == A
    assert refused(verifier, sign(unsigned, key, cert)).reason is Reason.CERT_UNTRUSTED


def test_one_verifier_serves_many_threads(kit: TestPKI) -> None:
    docs = [(code, kit.envelope(code, size=3000, number=i)) for i, code in enumerate([A, B, C] * 8)]
    bad = [d.replace(b"<Subject>", b"<Subject>!", 1) for _, d in docs[:6]]
    verifier = kit.verifier()

    def check(item: tuple[str, bytes] | bytes) -> str:
        if isinstance(item, bytes):
            try:
                verifier.verify(item)
            except Refusal as refusal:
                return refusal.reason.value
            return "accepted"
        return str(verifier.verify(item[1]).signer)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(check, [*docs, *bad]))
    assert results == [code for code, _ in docs] + ["SIGNATURE_INVALID"] * 6


def test_cli_verify(kit: TestPKI, tmp_path: Path) -> None:
    good = tmp_path / "docs" / "good.edxml"
    good.parent.mkdir()
    good.write_bytes(kit.envelope(A))
    (tmp_path / "docs" / "tampered.edxml").write_bytes(good.read_bytes().replace(b"<Subject>", b"<Subject>x", 1))
    runner = CliRunner()
    base = ["envelope", "verify", "--ca", str(kit.ca_pem), "--crl", str(kit.crl_pem)]
    ok = runner.invoke(app, [*base, str(good), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {"file": str(good), "ok": True, "reason": None, "detail": "", "signer": A}
    both = runner.invoke(app, [*base, str(tmp_path / "docs"), "--json"])
    assert both.exit_code == 1
    lines = [json.loads(line) for line in both.stdout.splitlines()]
    assert [(Path(x["file"]).name, x["reason"]) for x in lines] == [("good.edxml", None),
                                                                      ("tampered.edxml", "SIGNATURE_INVALID")]
    table = runner.invoke(app, [*base, str(good)])
    assert table.exit_code == 0 and A in table.stdout
    assert runner.invoke(app, [*base, str(tmp_path / "missing.edxml")]).exit_code == 2
    bad_ca = runner.invoke(app, ["envelope", "verify", str(good), "--ca", str(good)])
    assert bad_ca.exit_code == 2


@pytest.mark.parametrize(("sig_id", "ok"), [("", False), ("1x", False), ("a b", False), ("Sig-1", True)])
def test_signature_id_must_be_an_xml_name(kit: TestPKI, sig_id: str, ok: bool) -> None:
    """Found by the differential test: an empty Signature/@Id was accepted by the fast path, refused by signxml."""
    from tests.support.verify_reference import ReferenceVerifier

    data = kit.envelope(A, [B], size=2_000)
    marker = b"<ds:Signature "
    assert marker in data
    mutated = data.replace(marker, marker + f'Id="{sig_id}" '.encode(), 1)
    reference = ReferenceVerifier(kit.policy())
    for verifier in (kit.verifier(), reference):
        if ok:
            assert verifier.verify(mutated).signer == A
        else:
            assert refused(verifier, mutated).reason is Reason.SIGNATURE_PROFILE
