"""axis.core.evidence_bundle: the offline evidence bundle — a good one verifies with nothing but the CA; one byte
changed anywhere that matters is refused with the reason of what it broke."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import pytest

from axis.core import pki as pkimod
from axis.core.evidence_bundle import (
    M_CA,
    M_CRL,
    M_ENVELOPE,
    M_LEAVES,
    M_LOG_CERT,
    M_MANIFEST,
    M_MIMETYPE,
    M_STH,
    MIMETYPE,
    build_bundle,
    select_leaves,
    verify_bundle,
)
from axis.core.reasons import Reason
from tests.support.evidence import (
    HOUR_MS,
    MemoryLog,
    document_events,
    edit_json,
    flip_attachment_byte,
    flip_b64_byte,
    flip_hex,
    members,
    noise,
    rezip,
)
from tests.support.testing import TestPKI, make_edxml, make_pki

G22, H41 = "000.00.00.G22", "000.00.00.H41"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [G22, H41], algorithm="ec")


@pytest.fixture(scope="module")
def log(pki: TestPKI) -> MemoryLog:
    issued = pkimod.issue_log_certificate(pki.dir)
    return MemoryLog(pkimod.load_key(issued.key_path.read_bytes()), issued.cert_path.read_bytes())


def now_ms() -> int:
    return int(time.time() * 1000)


class Doc:
    def __init__(self, log: MemoryLog, pki: TestPKI, envelope: bytes, at: int) -> None:
        log.append(noise(3, at - 10))
        self.indices = log.append(document_events(envelope, at, H41))
        log.append(noise(2, at + 100))
        self.sth = log.sth(now_ms())
        self.envelope = envelope
        self.ca = pki.ca_pem.read_bytes()
        self.crl = pki.crl_pem.read_bytes()
        self.bundle = log.bundle(envelope, self.indices, self.sth, self.ca, self.crl)


@pytest.fixture(scope="module")
def doc(log: MemoryLog, pki: TestPKI) -> Doc:
    return Doc(log, pki, pki.envelope(G22, [H41]), now_ms() - 60_000)


def refused(data: bytes, ca: bytes, reason: Reason) -> str:
    report = verify_bundle(data, ca)
    assert not report.ok and report.reason == reason, report
    return report.detail


def test_a_good_bundle_verifies(doc: Doc) -> None:
    report = verify_bundle(doc.bundle, doc.ca)
    assert report.ok and report.reason is None, report
    assert report.sender == G22 and report.document_id.startswith(G22)  # type: ignore[union-attr]
    assert report.sha256 == hashlib.sha256(doc.envelope).hexdigest()
    assert report.tree_size == doc.sth.tree_size
    assert [e["type"] for e in report.leaves] == ["submitted", "routed", "stored", "status", "acked"]
    assert [e["leaf_index"] for e in report.leaves] == doc.indices
    assert report.as_dict()["ok"] is True and json.dumps(report.as_dict())


def test_layout(doc: Doc) -> None:
    with zipfile.ZipFile(io.BytesIO(doc.bundle)) as zf:
        infos = zf.infolist()
        assert infos[0].filename == M_MIMETYPE and infos[0].compress_type == zipfile.ZIP_STORED
        assert zf.read(M_MIMETYPE) == MIMETYPE.encode()
        assert {i.filename for i in infos} == {M_MIMETYPE, M_ENVELOPE, M_LEAVES, M_STH, M_LOG_CERT, M_CA, M_CRL,
                                               M_MANIFEST}
    m = members(doc.bundle)
    assert m[M_ENVELOPE] == doc.envelope  # the exact signed bytes
    assert m[M_LOG_CERT].decode() == doc.sth.certificate
    assert json.loads(m[M_STH]) == doc.sth.to_json()
    leaves = json.loads(m[M_LEAVES])
    assert [item["leaf_index"] for item in leaves] == doc.indices
    assert set(leaves[0]) == {"leaf_index", "leaf", "proof"}
    assert leaves[0]["proof"]["leaf"] == leaves[0]["leaf"] and leaves[0]["proof"]["tree_size"] == doc.sth.tree_size
    manifest = json.loads(m[M_MANIFEST])
    assert manifest["files"] == {n: hashlib.sha256(b).hexdigest() for n, b in m.items() if n != M_MANIFEST}


def test_building_is_deterministic(log: MemoryLog, doc: Doc) -> None:
    assert log.bundle(doc.envelope, doc.indices, doc.sth, doc.ca, doc.crl) == doc.bundle


def test_one_byte_of_the_envelope(doc: Doc) -> None:
    tampered = flip_attachment_byte(doc.envelope)
    refused(rezip(doc.bundle, {M_ENVELOPE: tampered}), doc.ca, Reason.SIGNATURE_INVALID)


def test_one_byte_of_a_leaf(doc: Doc) -> None:
    def flip(leaves: list[dict[str, object]]) -> list[dict[str, object]]:
        leaf = base64.b64decode(str(leaves[2]["leaf"])).replace(H41.encode(), b"000.00.00.H42")
        leaves[2]["leaf"] = base64.b64encode(leaf).decode()
        leaves[2]["proof"]["leaf"] = leaves[2]["leaf"]  # type: ignore[index]
        return leaves

    assert "audit path" in refused(edit_json(doc.bundle, M_LEAVES, flip), doc.ca, Reason.PROOF_INVALID)

    def raw_flip(leaves: list[dict[str, object]]) -> list[dict[str, object]]:  # not even canonical JSON then
        leaves[0]["leaf"] = leaves[0]["proof"]["leaf"] = flip_b64_byte(str(leaves[0]["leaf"]), 5)  # type: ignore
        return leaves

    refused(edit_json(doc.bundle, M_LEAVES, raw_flip), doc.ca, Reason.PROOF_INVALID)

    def only_item(leaves: list[dict[str, object]]) -> list[dict[str, object]]:  # the proof is for the old leaf
        leaf = base64.b64decode(str(leaves[1]["leaf"])).replace(b'"at":', b'"at":1')
        leaves[1]["leaf"] = base64.b64encode(leaf).decode()
        return leaves

    refused(edit_json(doc.bundle, M_LEAVES, only_item), doc.ca, Reason.PROOF_INVALID)


def test_one_byte_of_a_path_hash(doc: Doc) -> None:
    def flip(leaves: list[dict[str, object]]) -> list[dict[str, object]]:
        path = leaves[1]["proof"]["audit_path"]  # type: ignore[index]
        path[-1] = flip_hex(path[-1], 7)
        return leaves

    assert "audit path" in refused(edit_json(doc.bundle, M_LEAVES, flip), doc.ca, Reason.PROOF_INVALID)


def test_one_byte_of_the_sth_signature(doc: Doc) -> None:
    def flip(sth: dict[str, object]) -> dict[str, object]:
        sth["signature"] = flip_b64_byte(str(sth["signature"]), 12)
        return sth

    assert "signature" in refused(edit_json(doc.bundle, M_STH, flip), doc.ca, Reason.STH_INVALID)


def test_a_tree_head_of_another_size_or_root(doc: Doc) -> None:
    def bigger(sth: dict[str, object]) -> dict[str, object]:
        sth["tree_size"] = int(sth["tree_size"]) + 1  # type: ignore[call-overload]
        return sth

    refused(edit_json(doc.bundle, M_STH, bigger), doc.ca, Reason.STH_INVALID)  # the signature no longer covers it


def test_a_foreign_ca(doc: Doc, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", [G22], algorithm="ec")
    assert "log certificate" in refused(doc.bundle, other.ca_pem.read_bytes(), Reason.STH_INVALID)


def test_a_bundle_made_by_a_foreign_log(pki: TestPKI, tmp_path: Path) -> None:
    """Everything signed by another CA's log and agency: the real CA refuses the tree head first."""
    other = make_pki(tmp_path / "other", [G22, H41], algorithm="ec")
    issued = pkimod.issue_log_certificate(other.dir)
    olog = MemoryLog(pkimod.load_key(issued.key_path.read_bytes()), issued.cert_path.read_bytes())
    d = Doc(olog, other, other.envelope(G22, [H41]), now_ms() - 60_000)
    assert verify_bundle(d.bundle, other.ca_pem.read_bytes()).ok
    refused(d.bundle, pki.ca_pem.read_bytes(), Reason.STH_INVALID)


def test_the_log_certificate_member_must_be_the_sth_certificate(doc: Doc, pki: TestPKI) -> None:
    refused(rezip(doc.bundle, {M_LOG_CERT: pki.ca_pem.read_bytes()}), doc.ca, Reason.STH_INVALID)


def test_an_agency_certificate_that_expired_since(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid when the axis accepted the document (the submitted leaf's time), expired now: still evidence."""
    now = dt.datetime.now(dt.UTC)
    with monkeypatch.context() as m:  # a CA and a log certificate made 60 days ago
        m.setattr(pkimod, "_now", lambda: now - dt.timedelta(days=60))
        old = make_pki(tmp_path / "old", [H41], algorithm="ec")
        issued = pkimod.issue_log_certificate(old.dir)
    olog = MemoryLog(pkimod.load_key(issued.key_path.read_bytes()), issued.cert_path.read_bytes())
    start = now - dt.timedelta(days=40)
    key, cert = old.make_cert(G22, not_before=start, days=30)
    envelope = pkimod_sign(make_edxml(G22, [H41], number=7), key, cert)
    d = Doc(olog, old, envelope, int((start + dt.timedelta(days=1)).timestamp() * 1000))
    assert verify_bundle(d.bundle, d.ca).ok
    # a document submitted after the certificate expired is not
    late = Doc(olog, old, pkimod_sign(make_edxml(G22, [H41], number=8), key, cert), now_ms() - HOUR_MS)
    refused(late.bundle, late.ca, Reason.CERT_EXPIRED)
    # nor one submitted before it was valid
    early = Doc(olog, old, pkimod_sign(make_edxml(G22, [H41], number=9), key, cert),
                int((start - dt.timedelta(days=1)).timestamp() * 1000))
    refused(early.bundle, early.ca, Reason.CERT_EXPIRED)


def test_revocation_counts_from_its_date(log: MemoryLog, pki: TestPKI, tmp_path: Path) -> None:
    key, cert = pki.make_cert(G22)
    signed_before = Doc(log, pki, pkimod_sign(make_edxml(G22, [H41], number=9), key, cert), now_ms() - 60_000)
    pki.revoke_cert(cert)
    crl = pki.crl_pem.read_bytes()
    before = log.bundle(signed_before.envelope, signed_before.indices, signed_before.sth, signed_before.ca, crl)
    assert verify_bundle(before, signed_before.ca).ok  # revoked after the axis accepted it
    after = Doc(log, pki, pkimod_sign(make_edxml(G22, [H41], number=10), key, cert), now_ms() + 60_000)
    assert after.crl == crl
    assert "revoked" in refused(after.bundle, after.ca, Reason.CERT_REVOKED)
    # without the CRL in the bundle, a fresher one from the caller
    no_crl = rezip(after.bundle, {M_CRL: None})
    assert verify_bundle(no_crl, after.ca).ok
    assert verify_bundle(no_crl, after.ca, crl_pem=crl).reason == Reason.CERT_REVOKED


def test_leaves_of_other_bytes(log: MemoryLog, pki: TestPKI) -> None:
    """The same DocumentId submitted twice with other bytes: the other submission's leaf does not belong here."""
    first = pki.envelope(G22, [H41], number=11)
    second = pki.envelope(G22, [H41], number=11, seed=1)
    assert first != second
    log.append(noise(1, now_ms()))
    a = log.append(document_events(first, now_ms() - 5000, H41)[:2])
    b = log.append(document_events(second, now_ms() - 4000, H41)[:1])
    sth = log.sth(now_ms())
    ca = pki.ca_pem.read_bytes()
    with pytest.raises(ValueError, match="other bytes"):
        log.bundle(first, a + b, sth, ca, None)
    chosen = select_leaves(first, [(i, log.leaves[i]) for i in a + b])
    assert [i for i, _ in chosen] == a
    good = log.bundle(first, a, sth, ca, None)
    assert verify_bundle(good, ca).ok
    # an attacker adds the other leaf (with its valid proof): refused
    other = {"leaf_index": b[0], "leaf": base64.b64encode(log.leaves[b[0]]).decode(),
             "proof": log.proof(b[0], sth.tree_size)}
    assert "other bytes" in refused(edit_json(good, M_LEAVES, lambda leaves: [*leaves, other]), ca,
                                    Reason.PROOF_INVALID)
    # or swaps the envelope for the other (validly signed) one
    refused(rezip(good, {M_ENVELOPE: second}), ca, Reason.PROOF_INVALID)


def test_leaves_of_another_document(log: MemoryLog, pki: TestPKI, doc: Doc) -> None:
    other = Doc(log, pki, pki.envelope(G22, [H41], number=12), now_ms() - 1000)
    # another document's (valid) envelope in this document's bundle
    refused(rezip(doc.bundle, {M_ENVELOPE: other.envelope}), doc.ca, Reason.PROOF_INVALID)
    # leaves of two documents, each with a valid proof
    mixed = log.bundle(doc.envelope, doc.indices, other.sth, doc.ca, doc.crl)
    extra = json.loads(members(other.bundle)[M_LEAVES])
    refused(edit_json(mixed, M_LEAVES, lambda leaves: sorted([*leaves, extra[0]], key=lambda x: x["leaf_index"])),
            doc.ca, Reason.PROOF_INVALID)


def test_not_a_bundle(doc: Doc) -> None:
    refused(b"not a zip", doc.ca, Reason.PROOF_INVALID)
    refused(rezip(doc.bundle, {"META-INF/extra.txt": b"x"}), doc.ca, Reason.PROOF_INVALID)
    refused(rezip(doc.bundle, {M_LEAVES: None}), doc.ca, Reason.PROOF_INVALID)
    refused(rezip(doc.bundle, {M_MIMETYPE: b"application/zip"}), doc.ca, Reason.PROOF_INVALID)
    refused(rezip(doc.bundle, {M_LEAVES: b"[]"}), doc.ca, Reason.PROOF_INVALID)
    refused(rezip(doc.bundle, {M_STH: b"{}"}), doc.ca, Reason.STH_INVALID)
    # mimetype not first
    m = members(doc.bundle)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in reversed(list(m)):
            zf.writestr(name, m[name])
    refused(out.getvalue(), doc.ca, Reason.PROOF_INVALID)


def test_the_manifest_catches_damage_elsewhere(doc: Doc) -> None:
    # ca.pem is informative (the verifier trusts its own CA): only the manifest notices it changed
    damaged = rezip(doc.bundle, {M_CA: b"-----BEGIN CERTIFICATE-----\nxx\n"}, fix_manifest=False)
    assert "manifest" in refused(damaged, doc.ca, Reason.PROOF_INVALID)
    refused(rezip(doc.bundle, {M_MANIFEST: b"{}"}), doc.ca, Reason.PROOF_INVALID)


def test_build_refuses_a_proof_that_does_not_lead_to_the_sth(log: MemoryLog, doc: Doc) -> None:
    leaves = [(i, log.leaves[i], log.proof(i, doc.sth.tree_size)) for i in doc.indices]
    bad = dict(leaves[0][2])
    bad["audit_path"] = [flip_hex(bad["audit_path"][0]), *bad["audit_path"][1:]]
    with pytest.raises(ValueError, match="audit path"):
        build_bundle(doc.envelope, [(leaves[0][0], leaves[0][1], bad), *leaves[1:]], doc.sth, doc.ca, None)
    with pytest.raises(ValueError):
        build_bundle(doc.envelope, [], doc.sth, doc.ca, None)


def pkimod_sign(data: bytes, key: pkimod.PrivateKey, cert: object) -> bytes:
    from axis.core.signing import sign

    return sign(data, key, cert)  # type: ignore[arg-type]


def test_the_tree_head_certificate_is_checked_at_the_given_time(doc: Doc) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4000)
    report = verify_bundle(doc.bundle, doc.ca, at=later)
    assert report.reason == Reason.STH_INVALID and "expired" in report.detail
    assert verify_bundle(doc.bundle, doc.ca, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).ok
