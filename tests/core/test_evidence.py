"""axis.core.evidence: canonical leaves and their strict parse, idempotency keys, signed tree heads (signature,
chain, validity, CRL, usage, role), the proof objects and their checks."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from axis.core import merkle
from axis.core import pki as pkimod
from axis.core.evidence import (
    EVENT_TYPES,
    Event,
    SignedTreeHead,
    check_consistency,
    check_inclusion,
    consistency_json,
    event_from_leaf,
    inclusion_json,
    sign_sth,
    sth_message,
    verify_sth,
)
from axis.core.reasons import Reason, Refusal, http_status
from tests.support.testing import TestPKI, make_pki

SENDER, DOC = "000.00.00.G22", "5a1e2b3c-0000-4000-8000-000000000001"
DIGEST = hashlib.sha256(b"signed bytes").hexdigest()


def ev(type_: str = "stored", at: int = 1_700_000_000_000, **kw: object) -> Event:
    base: dict[str, object] = {"sender": SENDER, "document_id": DOC, "doc_type": 1, "sha256": DIGEST}
    base.update(kw)
    return Event(type_, at, **base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), ["000.00.00.G22"], algorithm="ec")


@pytest.fixture(scope="module")
def log_key(pki: TestPKI) -> tuple[pkimod.PrivateKey, bytes]:
    issued = pkimod.issue_log_certificate(pki.dir)
    return pkimod.load_key(issued.key_path.read_bytes()), issued.cert_path.read_bytes()


def ca_pems(pki: TestPKI) -> list[bytes]:
    return [pki.ca_pem.read_bytes()]


# ---- events -----------------------------------------------------------------------------------------------------


def test_reasons_added() -> None:
    assert Reason.PROOF_INVALID.value == "PROOF_INVALID" and Reason.STH_INVALID.value == "STH_INVALID"
    assert http_status(Reason.PROOF_INVALID) == http_status(Reason.STH_INVALID) == 422


def test_leaf_is_canonical_json() -> None:
    e = ev("stored", agency="000.00.00.H01", server="srv-1")
    leaf = e.leaf()
    assert leaf == (
        b'{"agency":"000.00.00.H01","at":1700000000000,"doc_type":1,"document_id":"' + DOC.encode()
        + b'","sender":"000.00.00.G22","server":"srv-1","sha256":"' + DIGEST.encode() + b'","type":"stored","v":1}'
    )
    assert json.loads(leaf) == {**e.as_dict()}
    assert b"null" not in leaf and b" " not in leaf
    assert b"msg-1" not in ev("refused", reason="SIGNATURE_INVALID", ref="msg-1").leaf()
    # UTF-8, not \u escapes; control characters escaped as RFC 8785 does
    u = ev("admin", action="xóa\n", admin="quản trị").leaf()
    assert "xóa".encode() in u and b"\\n" in u and "quản trị".encode() in u


def test_leaf_escapes_as_json_does() -> None:
    """Event.leaf() (orjson) writes exactly what json.dumps(ensure_ascii=False) writes, for every code point."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    e = ev("admin", action=every, admin="\x00\x1f\x7f\"\\/\u2028")
    assert e.leaf() == json.dumps(e.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    small = ev("admin", action="".join(chr(c) for c in range(0x100)) + "\u2028\U0001f600")
    assert event_from_leaf(small.leaf()) == small


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_leaf_round_trip(type_: str) -> None:
    e = ev(type_, agency="000.00.00.H01", code="01", reason="CERT_EXPIRED", server="s", action="a", admin="root")
    assert event_from_leaf(e.leaf()) == e
    bare = ev(type_, sha256="")
    assert event_from_leaf(bare.leaf()) == bare


def test_event_validation() -> None:
    for bad in ({"type_": "deleted"}, {"at": 1.5}, {"at": True}, {"at": -1}, {"at": 2**53}, {"sha256": "ABC"},
                {"sha256": DIGEST.upper()}, {"doc_type": "1"}, {"agency": 5}, {"sender": "\ud800"}):
        kwargs = dict(bad)
        type_ = str(kwargs.pop("type_", "stored"))
        with pytest.raises(ValueError):
            ev(type_, **kwargs)  # type: ignore[arg-type]


def test_keys_ignore_time_and_tell_events_apart() -> None:
    pairs = [
        (ev("routed", at=1), ev("routed", at=2, server="other")),
        (ev("submitted", at=1), ev("submitted", at=9)),
        (ev("stored", at=1, agency="H01"), ev("stored", at=5, agency="H01")),
        (ev("acked", at=1, agency="H01"), ev("acked", at=5, agency="H01")),
        (ev("status", at=1, agency="H01", code="03"), ev("status", at=7, agency="H01", code="03")),
        (ev("refused", at=1, ref="m1", reason="X"), ev("refused", at=2, ref="m1", reason="X")),
        (ev("refused", at=1, reason="X"), ev("refused", at=2, reason="X")),
        (ev("admin", at=1, ref="act-1", action="delete"), ev("admin", at=2, ref="act-1", action="delete")),
    ]
    for a, b in pairs:
        assert a.key() == b.key(), a
    assert ev("routed").key() == f"routed|{SENDER}|{DOC}|1"
    assert ev("stored", agency="H01").key() == f"stored|{SENDER}|{DOC}|1|H01"
    assert ev("status", agency="H01", code="03").key() == f"status|{SENDER}|{DOC}|1|H01|03"
    assert ev("submitted").key() == f"submitted|{SENDER}|{DOC}|1|{DIGEST}"
    distinct = [
        ev("routed"), ev("routed", doc_type=2), ev("routed", document_id="other"), ev("routed", sender="G23"),
        ev("submitted"), ev("submitted", sha256=""), ev("stored", agency="H01"), ev("stored", agency="H02"),
        ev("acked", agency="H01"), ev("status", agency="H01", code="03"), ev("status", agency="H01", code="04"),
        ev("refused", ref="m1"), ev("refused", ref="m2"), ev("refused", reason="A"), ev("refused", reason="B"),
        ev("admin", ref="a1"), ev("admin", at=1, action="x"), ev("admin", at=2, action="x"),
        # the separator inside a value cannot make two events collide
        ev("stored", document_id="a|b", agency="c"), ev("stored", document_id="a", agency="b|c"),
        ev("refused", ref="bytes"), ev("refused", reason=""),
    ]
    keys = [e.key() for e in distinct]
    assert len(set(keys)) == len(keys), keys


@pytest.mark.parametrize("leaf", [
    b"", b"[]", b"null", b"{}", b"\xff", b'{"v":1}',
    b'{"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":2}',
    b'{"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":true}',
    b'{"at":1.0,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":1}',
    b'{"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":1,"x":1}',
    b'{"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":1,"agency":null}',
    b'{"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"moved","v":1}',
    b'{"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","type":"routed","v":1}',
    b'{"v":1,"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed"}',  # not sorted
    b'{"at":1, "doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":1}',  # whitespace
    b'{"at":1,"doc_type":1,"document_id":"\\u0064","sender":"s","sha256":"","type":"routed","v":1}',  # escape
    b'{"at":NaN,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":1}',
    b'{"at":1,"doc_type":1,"document_id":"\\ud800","sender":"s","sha256":"","type":"routed","v":1}',
    b"[" * 100_000,
    b'{"a":"' + b"x" * 20_000 + b'"}',
])
def test_event_from_leaf_is_strict(leaf: bytes) -> None:
    with pytest.raises(Refusal) as exc:
        event_from_leaf(leaf)
    assert exc.value.reason is Reason.PROOF_INVALID
    ok = b'{"at":1,"doc_type":1,"document_id":"d","sender":"s","sha256":"","type":"routed","v":1}'
    assert event_from_leaf(ok).type == "routed"


# ---- signed tree heads ------------------------------------------------------------------------------------------


def test_log_certificate(pki: TestPKI, log_key: tuple[pkimod.PrivateKey, bytes]) -> None:
    cert = pkimod.load_certs(log_key[1])[0]
    assert cert.subject.rfc4514_string() == "O=axis,CN=axis transparency log"
    assert pkimod.cert_uid(cert) is None
    assert (pki.dir / "log" / "key.pem").stat().st_mode & 0o777 == 0o600
    index = json.loads((pki.dir / "index.json").read_text())["certs"]
    assert any(c["code"] == "log" and c["serial"] == format(cert.serial_number, "x") for c in index)


def test_sth_message() -> None:
    assert sth_message(5, 17, "ab" * 32) == b"axis-sth-v1:5:17:" + b"ab" * 32


@pytest.mark.parametrize("algorithm", ["ec", "rsa"])
def test_sign_and_verify_sth(pki: TestPKI, algorithm: pkimod.Algorithm) -> None:
    key = pkimod.new_key(algorithm)
    cert = pkimod.issue_log_cert(pki.ca.key, pki.ca.cert, key.public_key())
    root = hashlib.sha256(b"root").digest()
    sth = sign_sth(10, 1_700_000_000_123, root, key, cert)
    assert sth.root == root and sth.root_hash == root.hex()
    verify_sth(sth, ca_pems(pki), pki.crl_pem.read_bytes())
    again = SignedTreeHead.from_json(json.dumps(sth.to_json()))
    assert again == sth == SignedTreeHead.from_json(sth.to_json())
    assert set(sth.to_json()) == {"tree_size", "timestamp", "root_hash", "signature", "certificate"}
    signature = base64.b64decode(sth.signature)
    if algorithm == "ec":
        assert signature[0] == 0x30  # DER
    public = cert.public_key()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, sth.message(), padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, sth.message(), ec.ECDSA(hashes.SHA256()))


def _refused(sth: SignedTreeHead, pki: TestPKI, crl: bytes | None = None, at: dt.datetime | None = None,
             pems: list[bytes] | None = None) -> str:
    with pytest.raises(Refusal) as exc:
        verify_sth(sth, pems if pems is not None else ca_pems(pki), crl, at)
    assert exc.value.reason is Reason.STH_INVALID
    return exc.value.detail


def test_verify_sth_refusals(pki: TestPKI, log_key: tuple[pkimod.PrivateKey, bytes], tmp_path: Path) -> None:
    key, cert_pem = log_key
    root = hashlib.sha256(b"r").digest()
    good = sign_sth(3, 1000, root, key, cert_pem)
    verify_sth(good, ca_pems(pki))
    # tampered fields: the signature no longer matches
    for field, value in (("tree_size", 4), ("timestamp", 1001), ("root_hash", "00" * 32)):
        bad = SignedTreeHead(**{**good.to_json(), field: value})
        assert "signature" in _refused(bad, pki)
    sig = bytearray(base64.b64decode(good.signature))
    sig[-1] ^= 1
    _refused(SignedTreeHead(**{**good.to_json(), "signature": base64.b64encode(bytes(sig)).decode()}), pki)
    _refused(SignedTreeHead(**{**good.to_json(), "signature": "not base64!"}), pki)
    _refused(SignedTreeHead(**{**good.to_json(), "certificate": "-----BEGIN CERTIFICATE-----\nxx\n"}), pki)
    # another CA
    other = make_pki(tmp_path / "other", [], algorithm="ec")
    assert "chain" in _refused(good, pki, pems=[other.ca_pem.read_bytes()])
    # not valid at the time asked
    assert "expired" in _refused(good, pki, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=400))
    assert "before" in _refused(good, pki, at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    # an agency's certificate (same CA, digitalSignature) cannot sign tree heads
    agency = sign_sth(3, 1000, root, pki.key("000.00.00.G22"), pki.cert("000.00.00.G22"))
    assert "log's certificate" in _refused(agency, pki)
    # no digitalSignature usage
    k2 = pkimod.new_key("ec")
    no_usage = pkimod.issue_log_cert(pki.ca.key, pki.ca.cert, k2.public_key(), digital_signature=False)
    assert "digitalSignature" in _refused(sign_sth(3, 1000, root, k2, no_usage), pki)
    # revoked: on a CRL signed by the CA
    k3 = pkimod.new_key("ec")
    revoked = pkimod.issue_log_cert(pki.ca.key, pki.ca.cert, k3.public_key())
    crl = pkimod.make_crl(pki.ca.key, pki.ca.cert, [(revoked.serial_number, dt.datetime.now(dt.UTC))])
    crl_pem = crl.public_bytes(serialization.Encoding.PEM)
    sth3 = sign_sth(3, 1000, root, k3, revoked)
    verify_sth(sth3, ca_pems(pki))
    assert "revoked" in _refused(sth3, pki, crl=crl_pem)
    verify_sth(good, ca_pems(pki), crl_pem)
    # a CRL from another CA is refused, not ignored
    other_crl = pkimod.make_crl(other.ca.key, other.ca.cert, [])
    _refused(good, pki, crl=other_crl.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("certificate"),
    lambda d: d.update(extra=1),
    lambda d: d.update(tree_size=-1),
    lambda d: d.update(tree_size=1.0),
    lambda d: d.update(timestamp=True),
    lambda d: d.update(root_hash="AB" * 32),
    lambda d: d.update(root_hash="ab" * 31),
    lambda d: d.update(signature="a b"),
    lambda d: d.update(signature=""),
    lambda d: d.update(certificate=5),
])
def test_sth_from_json_is_strict(mutate: object) -> None:
    d = {"tree_size": 1, "timestamp": 2, "root_hash": "ab" * 32, "signature": "AAAA",
         "certificate": "-----BEGIN CERTIFICATE-----\n"}
    SignedTreeHead.from_json(d)
    mutate(d)  # type: ignore[operator]
    with pytest.raises(Refusal) as exc:
        SignedTreeHead.from_json(d)
    assert exc.value.reason is Reason.STH_INVALID
    with pytest.raises(Refusal):
        SignedTreeHead.from_json(b"[1]")
    with pytest.raises(Refusal):
        SignedTreeHead.from_json("{")


# ---- proofs -----------------------------------------------------------------------------------------------------


def test_proofs_against_sths(log_key: tuple[pkimod.PrivateKey, bytes]) -> None:
    key, cert = log_key
    events = [ev("stored", at=i, agency=f"H{i:02d}") for i in range(13)]
    leaves = [e.leaf() for e in events]
    src = merkle.ListSource([merkle.leaf_hash(x) for x in leaves])
    sth7 = sign_sth(7, 1, merkle.tree_root(src, 7), key, cert)
    sth13 = sign_sth(13, 2, merkle.tree_root(src, 13), key, cert)
    for i in range(7):
        proof = inclusion_json(i, 7, leaves[i], merkle.inclusion_path(src, i, 7))
        assert set(proof) == {"leaf_index", "tree_size", "leaf", "audit_path"}
        assert base64.b64decode(proof["leaf"]) == leaves[i]
        check_inclusion(leaves[i], json.loads(json.dumps(proof)), sth7)
        with pytest.raises(Refusal) as exc:
            check_inclusion(leaves[i], proof, sth13)  # another tree size
        assert exc.value.reason is Reason.PROOF_INVALID
        with pytest.raises(Refusal):
            check_inclusion(leaves[i + 1], proof, sth7)  # another leaf
        with pytest.raises(Refusal):
            check_inclusion(leaves[i], {**proof, "leaf_index": (i + 1) % 7}, sth7)
        if proof["audit_path"]:
            bad = [("0" if h[0] != "0" else "1") + h[1:] for h in proof["audit_path"]]
            with pytest.raises(Refusal):
                check_inclusion(leaves[i], {**proof, "audit_path": bad}, sth7)
    proof = inclusion_json(3, 7, leaves[3], merkle.inclusion_path(src, 3, 7))
    for bad_proof in ({**proof, "extra": 1}, {**proof, "audit_path": "x"}, {**proof, "audit_path": ["zz"]},
                      {**proof, "leaf": "!!"}, {**proof, "leaf_index": True}, {"leaf_index": 3}, [proof]):
        with pytest.raises(Refusal) as exc:
            check_inclusion(leaves[3], bad_proof, sth7)  # type: ignore[arg-type]
        assert exc.value.reason is Reason.PROOF_INVALID

    cons = consistency_json(7, 13, merkle.consistency_path(src, 7, 13))
    assert set(cons) == {"first", "second", "consistency_path"}
    check_consistency(json.loads(json.dumps(cons)), sth7, sth13)
    forged = sign_sth(13, 3, hashlib.sha256(b"forged").digest(), key, cert)
    for args in ((cons, sth7, forged), (cons, sth13, sth7), ({**cons, "consistency_path": []}, sth7, sth13),
                 ({**cons, "first": 6}, sth7, sth13)):
        with pytest.raises(Refusal) as exc:
            check_consistency(*args)
        assert exc.value.reason is Reason.PROOF_INVALID
    check_consistency(consistency_json(13, 13, []), sth13, sth13)
