"""Test helpers other modules reuse: a throwaway PKI, edXML documents of a chosen size, and the hostile corpus.

Not used by the running system. Everything is generated (keys in a temporary directory), nothing is committed::

    pki = make_pki(tmp_path, ["000.00.00.G22", "000.00.00.H41"], algorithm="ec")
    signed = pki.envelope("000.00.00.G22", ["000.00.00.H41"], size=10_000)
    pki.verifier().verify(signed).signer == "000.00.00.G22"
    for name, data, reason in hostile_corpus(pki): ...
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from axis.core import pki as pkimod
from axis.core.dsig import DSIG, EDXML, e, q
from axis.core.reasons import Reason
from axis.core.signing import PrivateKey, sign
from axis.core.verify import Verifier, VerifyPolicy

NSMAP = {None: EDXML}


def _el(parent: etree._Element, local: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, e(local), attrs)
    if text is not None:
        el.text = text
    return el


def _organ(parent: etree._Element, tag: str, code: str) -> None:
    org = _el(parent, tag)
    _el(org, "OrganId", code)
    _el(org, "OrganizationInCharge", f"Cơ quan {code}")
    _el(org, "OrganName", f"Cơ quan {code}")
    _el(org, "OrganAdd", "Số 1 Hoàng Hoa Thám, Hà Nội")
    _el(org, "Email", "vanthu@example.gov.vn")


def make_edxml(
    sender: str = "000.00.00.G22",
    recipients: Sequence[str] = ("000.00.00.H41",),
    *,
    size: int = 10_000,
    subject: str = "Về việc thử nghiệm trục liên thông",
    number: int = 1,
    seed: int = 0,
) -> bytes:
    """An unsigned edXML document (edoc) of about ``size`` bytes, padded with one base64 attachment."""
    root = etree.Element(e("edXML"), nsmap=NSMAP)
    envelope = _el(root, "edXMLEnvelope")
    header = _el(envelope, "edXMLHeader")
    mh = _el(header, "MessageHeader")
    _organ(mh, "From", sender)
    for r in recipients:
        _organ(mh, "To", r)
    _el(mh, "DocumentId", f"{sender},2019/03/12,{number}/VPCP-TTĐT")
    code = _el(mh, "Code")
    _el(code, "CodeNumber", str(number))
    _el(code, "CodeNotation", "VPCP-TTĐT")
    prom = _el(mh, "PromulgationInfo")
    _el(prom, "Place", "Hà Nội")
    _el(prom, "PromulgationDate", "2019/03/12")
    dtype = _el(mh, "DocumentType")
    _el(dtype, "Type", "1")
    _el(dtype, "TypeName", "Công văn")
    _el(mh, "Subject", subject)
    _el(mh, "Content", "Nội dung văn bản thử nghiệm.")
    signer = _el(mh, "SignerInfo")
    _el(signer, "Competence", "KT. BỘ TRƯỞNG")
    _el(signer, "FullName", "Nguyễn Văn A")
    trace = _el(header, "TraceHeaderList")
    th = _el(trace, "TraceHeader")
    _el(th, "OrganId", sender)
    _el(th, "Timestamp", "2019/03/12 08:00:00")
    biz = _el(trace, "Bussiness")
    _el(biz, "BussinessDocType", "0")
    body = _el(envelope, "edXMLBody")
    manifest = _el(body, "edXMLManifest", version="1.0")
    ref = _el(manifest, "Reference")
    _el(ref, "ContentId", "cid:1")
    _el(ref, "ContentType", "application/pdf")
    _el(ref, "Description", "Văn bản")
    _el(ref, "AttachmentName", "vanban.pdf")
    encoded = _el(root, "AttachmentEncoded")
    att = _el(encoded, "Attachment")
    _el(att, "ContentId", "cid:1")
    _el(att, "AttachmentName", "vanban.pdf")
    _el(att, "Description", "Văn bản")
    _el(att, "ContentType", "application/pdf")
    payload = _el(att, "ContentTransferEncoded", "")
    etree.indent(root, space="  ")
    base = len(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    raw = random.Random(seed).randbytes(max(0, (size - base) * 3 // 4))
    b64 = base64.b64encode(raw).decode()
    payload.text = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass
class TestPKI:
    """A throwaway axis PKI in a directory (the same layout as ``axis pki``)."""

    __test__ = False  # not a pytest class

    dir: Path
    ca: pkimod.CertificateAuthority
    algorithm: pkimod.Algorithm
    codes: list[str]
    _keys: dict[str, PrivateKey] = field(default_factory=dict)
    _certs: dict[str, x509.Certificate] = field(default_factory=dict)
    _revoked: list[tuple[int, dt.datetime]] = field(default_factory=list)

    @property
    def ca_pem(self) -> Path:
        return self.ca.ca_path

    @property
    def crl_pem(self) -> Path:
        return self.ca.crl_path

    @property
    def ca_cert(self) -> x509.Certificate:
        return self.ca.cert

    def key(self, code: str) -> PrivateKey:
        return self._keys[code]

    def cert(self, code: str) -> x509.Certificate:
        return self._certs[code]

    def key_path(self, code: str) -> Path:
        return self.ca.agency_dir(code) / "key.pem"

    def cert_path(self, code: str) -> Path:
        return self.ca.agency_dir(code) / "cert.pem"

    def make_cert(self, code: str, *, algorithm: pkimod.Algorithm | None = None, key: PrivateKey | None = None,
                  issuer: tuple[PrivateKey, x509.Certificate] | None = None, **kwargs: Any
                  ) -> tuple[PrivateKey, x509.Certificate]:
        """An in-memory (key, cert) for ``code``, optionally wrong on purpose (see ``pki.issue_cert`` kwargs)."""
        key = key or pkimod.new_key(algorithm or self.algorithm)
        ca_key, ca_cert = issuer or (self.ca.key, self.ca.cert)
        return key, pkimod.issue_cert(ca_key, ca_cert, code, key.public_key(), **kwargs)

    def revoke_cert(self, cert: x509.Certificate) -> None:
        """Put ``cert`` on the CRL and re-write crl.pem."""
        self._revoked.append((cert.serial_number, dt.datetime.now(dt.UTC)))
        crl = pkimod.make_crl(self.ca.key, self.ca.cert, [*self.ca.revoked(), *self._revoked])
        self.crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    def revoke(self, code: str) -> None:
        self.revoke_cert(self._certs[code])

    def policy(self, **overrides: Any) -> VerifyPolicy:
        return VerifyPolicy.from_files(self.ca_pem, self.crl_pem, **overrides)

    def verifier(self, **overrides: Any) -> Verifier:
        return Verifier(self.policy(**overrides))

    def sign(self, data: bytes, code: str) -> bytes:
        return sign(data, self._keys[code], self._certs[code])

    def envelope(self, sender: str, recipients: Sequence[str] | None = None, *, size: int = 10_000, **kw: Any) -> bytes:
        """A signed edXML document from ``sender``."""
        to = list(recipients) if recipients else [c for c in self.codes if c != sender][:1] or [sender]
        return self.sign(make_edxml(sender, to, size=size, **kw), sender)


def make_pki(tmp_dir: Path | str, agencies: Sequence[str], algorithm: pkimod.Algorithm = "rsa") -> TestPKI:
    """A CA and one certificate per agency code under ``tmp_dir`` (EC is much faster to generate)."""
    d = Path(tmp_dir)
    ca = pkimod.CertificateAuthority.init(d, algorithm=algorithm)
    t = TestPKI(dir=d, ca=ca, algorithm=algorithm, codes=list(agencies))
    for issued in ca.issue_many([(code, f"Agency {code}") for code in agencies], algorithm=algorithm):
        code = issued.code
        t._keys[code] = pkimod.load_key(issued.key_path.read_bytes())
        t._certs[code] = pkimod.load_certs(issued.cert_path.read_bytes())[0]
    return t


# ---- the hostile corpus -----------------------------------------------------------------------------------------


def _tree(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def _out(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _edit(data: bytes, fn: Any) -> bytes:
    root = _tree(data)
    fn(root)
    return _out(root)


def _sig(root: etree._Element) -> etree._Element:
    return next(root.iter(q("Signature")))


def _first(root: etree._Element, local: str, ns: str = EDXML) -> etree._Element:
    return next(root.iter(f"{{{ns}}}{local}"))


def _replace_bytes(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


def hostile_corpus(pki: TestPKI, *, max_bytes: int | None = None) -> list[tuple[str, bytes, Reason]]:
    """(name, bytes, expected reason) for attacks and broken envelopes, each refused for exactly that reason.

    Uses the first two agencies of ``pki`` (A signs, B is another trusted agency). Building it revokes one
    extra certificate on the PKI's CRL, so build verifiers AFTER calling this. With ``max_bytes``, a TOO_LARGE
    item of ``max_bytes + 1`` bytes is included.
    """
    a, b = pki.codes[0], pki.codes[1]
    unsigned = make_edxml(a, [b], size=4000)
    good = pki.sign(unsigned, a)
    items: list[tuple[str, bytes, Reason]] = []

    def add(name: str, data: bytes, reason: Reason) -> None:
        items.append((name, data, reason))

    # XML safety
    add("billion_laughs", b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><edXML>&lol2;</edXML>', Reason.XML_FORBIDDEN)
    add("quadratic_blowup", b'<!DOCTYPE a [<!ENTITY x "' + b"x" * 10000 + b'">]><a>' + b"&x;" * 1000 + b"</a>",
        Reason.XML_FORBIDDEN)
    add("xxe_file", _replace_bytes(good, b"?>", b'?><!DOCTYPE edXML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'),
        Reason.XML_FORBIDDEN)
    add("xxe_url", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><a>&x;</a>',
        Reason.XML_FORBIDDEN)
    add("external_dtd", b'<!DOCTYPE edXML SYSTEM "http://127.0.0.1:9/x.dtd"><edXML/>', Reason.XML_FORBIDDEN)
    add("malformed", good[: len(good) // 2], Reason.XML_MALFORMED)
    add("wrong_encoding", _replace_bytes(good, b"UTF-8", b"UTF-16"), Reason.XML_MALFORMED)
    add("empty", b"", Reason.XML_MALFORMED)
    if max_bytes is not None:
        add("too_large", good + b" " * (max_bytes + 1 - len(good)), Reason.TOO_LARGE)

    # Signature presence and profile
    add("unsigned", unsigned, Reason.SIGNATURE_MISSING)

    def wrong_ns(root: etree._Element) -> None:
        sig = _sig(root)
        for el in sig.iter():
            el.tag = f"{{{EDXML}}}{etree.QName(el).localname}"
    add("signature_in_edxml_namespace", _edit(good, wrong_ns), Reason.SIGNATURE_PROFILE)
    add("pi_outside_root", _replace_bytes(good, b"?>", b'?><?xml-stylesheet href="http://127.0.0.1:9/x"?>'),
        Reason.SIGNATURE_PROFILE)
    add("second_signature", _edit(good, lambda r: _first(r, "edXMLBody").append(copy.deepcopy(_sig(r)))),
        Reason.SIGNATURE_PROFILE)
    add("signature_not_last", _edit(good, lambda r: _first(r, "edXMLHeader").insert(0, _sig(r))),
        Reason.SIGNATURE_PROFILE)
    add("signature_under_root", _edit(good, lambda r: r.append(_sig(r))), Reason.SIGNATURE_PROFILE)
    add("signature_under_message_header", _edit(good, lambda r: _first(r, "MessageHeader").append(_sig(r))),
        Reason.SIGNATURE_PROFILE)

    def wrap_object(root: etree._Element) -> None:
        # XSW: the signed header goes into a ds:Object, a forged one takes its place.
        header = _first(root, "MessageHeader")
        obj = etree.SubElement(_sig(root), q("Object"))
        obj.append(copy.deepcopy(header))
        _first(header, "Subject").text = "forged"
    add("wrapping_signed_content_moved_to_object", _edit(good, wrap_object), Reason.SIGNATURE_PROFILE)

    def stray_signed_info(root: etree._Element) -> None:
        _first(root, "edXMLBody").append(copy.deepcopy(_first(root, "SignedInfo", DSIG)))
    add("wrapping_stray_signed_info", _edit(good, stray_signed_info), Reason.SIGNATURE_PROFILE)

    def duplicate_header(root: etree._Element) -> None:
        header = _first(root, "MessageHeader")
        forged = copy.deepcopy(header)
        _first(forged, "OrganId").text = b
        header.addprevious(forged)
    add("wrapping_signed_content_duplicated", _edit(good, duplicate_header), Reason.SIGNATURE_INVALID)

    def id_reference(root: etree._Element) -> None:
        _first(root, "edXMLEnvelope").set("Id", "env")
        _first(root, "Reference", DSIG).set("URI", "#env")
    add("reference_to_id", _edit(good, id_reference), Reason.SIGNATURE_PROFILE)
    add("two_references", _edit(good, lambda r: _first(r, "SignedInfo", DSIG).append(
        copy.deepcopy(_first(r, "Reference", DSIG)))), Reason.SIGNATURE_PROFILE)

    def extra_transform(root: etree._Element) -> None:
        t = etree.SubElement(_first(root, "Transforms", DSIG), q("Transform"),
                             Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116")
        etree.SubElement(t, q("XPath")).text = "not(ancestor-or-self::*[local-name()='Subject'])"
    add("extra_transform", _edit(good, extra_transform), Reason.SIGNATURE_PROFILE)
    add("missing_transform", _edit(good, lambda r: _first(r, "Transforms", DSIG).remove(
        _first(r, "Transform", DSIG).getnext())), Reason.SIGNATURE_PROFILE)
    add("inclusive_c14n", _edit(good, lambda r: _first(r, "CanonicalizationMethod", DSIG).set(
        "Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")), Reason.SIGNATURE_PROFILE)
    add("text_inside_signature", _edit(good, lambda r: setattr(_first(r, "X509Data", DSIG), "text", "junk")),
        Reason.SIGNATURE_PROFILE)
    add("attribute_on_digest_value", _edit(good, lambda r: _first(r, "DigestValue", DSIG).set("Id", "d")),
        Reason.SIGNATURE_PROFILE)
    add("relative_namespace_uri", _replace_bytes(good, b"<Subject>", b'<Subject xmlns:zz="relative/uri">'),
        Reason.SIGNATURE_PROFILE)
    def stray_bits(root: etree._Element) -> None:
        # Same signature bytes, different text: the unused low bits of the last base64 character are set.
        el = _first(root, "SignatureValue", DSIG)
        text = "".join((el.text or "").split())
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        i = len(text.rstrip("=")) - 1
        el.text = text[:i] + alphabet[alphabet.index(text[i]) ^ 1] + text[i + 1 :]
    add("noncanonical_base64", _edit(good, stray_bits), Reason.SIGNATURE_PROFILE)
    add("no_certificate", _edit(good, lambda r: _first(r, "KeyInfo", DSIG).remove(_first(r, "X509Data", DSIG))),
        Reason.SIGNATURE_PROFILE)
    add("truncated_certificate", _edit(good, lambda r: setattr(_first(r, "X509Certificate", DSIG), "text",
        "MIIC4jCCAcqg")), Reason.SIGNATURE_PROFILE)

    # Algorithms
    add("sha1_digest", _edit(good, lambda r: _first(r, "DigestMethod", DSIG).set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1")), Reason.WEAK_ALGORITHM)
    add("rsa_sha1_signature", _edit(good, lambda r: _first(r, "SignatureMethod", DSIG).set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")), Reason.WEAK_ALGORITHM)
    add("hmac_signature", _edit(good, lambda r: _first(r, "SignatureMethod", DSIG).set(
        "Algorithm", "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256")), Reason.WEAK_ALGORITHM)
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    wk, wc = pki.make_cert(a, key=weak_key)
    add("rsa_1024_key", sign(unsigned, wk, wc), Reason.WEAK_ALGORITHM)

    # Tampering
    add("tampered_header", _replace_bytes(good, "Về việc".encode(), b"Ve viec"), Reason.SIGNATURE_INVALID)
    add("tampered_recipient", _edit(good, lambda r: setattr(_first(_first(r, "To"), "OrganId"), "text", a)),
        Reason.SIGNATURE_INVALID)
    add("tampered_body", _edit(good, lambda r: setattr(_first(r, "Description"), "text", "khác")),
        Reason.SIGNATURE_INVALID)

    def flip_attachment(root: etree._Element) -> None:
        el = _first(root, "ContentTransferEncoded")
        text = el.text or ""
        i = len(text) // 2
        el.text = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
    add("tampered_attachment", _edit(good, flip_attachment), Reason.SIGNATURE_INVALID)
    add("tampered_signature_value", _edit(good, lambda r: setattr(_first(r, "SignatureValue", DSIG), "text",
        base64.b64encode(b"\x01" * len(base64.b64decode(_first(r, "SignatureValue", DSIG).text or ""))).decode())),
        Reason.SIGNATURE_INVALID)
    b_der = base64.b64encode(pki.cert(b).public_bytes(serialization.Encoding.DER)).decode()
    add("swapped_certificate", _edit(good, lambda r: setattr(_first(r, "X509Certificate", DSIG), "text", b_der)),
        Reason.SIGNATURE_INVALID)

    # Certificates
    rogue_key, rogue_ca = pkimod.make_ca("rogue CA", algorithm="ec")
    rk, rc = pki.make_cert(a, issuer=(rogue_key, rogue_ca))
    add("untrusted_ca", sign(unsigned, rk, rc), Reason.CERT_UNTRUSTED)
    add("untrusted_ca_with_rogue_chain", sign(unsigned, rk, rc, [rogue_ca]), Reason.CERT_UNTRUSTED)
    now = dt.datetime.now(dt.UTC)
    ek, ec_ = pki.make_cert(a, not_before=now - dt.timedelta(days=40), days=30)
    add("expired_certificate", sign(unsigned, ek, ec_), Reason.CERT_EXPIRED)
    fk, fc = pki.make_cert(a, not_before=now + dt.timedelta(days=2), days=30)
    add("not_yet_valid_certificate", sign(unsigned, fk, fc), Reason.CERT_EXPIRED)
    vk, vc = pki.make_cert(a)
    pki.revoke_cert(vc)
    add("revoked_certificate", sign(unsigned, vk, vc), Reason.CERT_REVOKED)
    uk, uc = pki.make_cert(a, digital_signature=False)
    add("no_digital_signature_usage", sign(unsigned, uk, uc), Reason.CERT_USAGE)
    nk, nc = pki.make_cert(a, key_usage=False)
    add("no_key_usage_extension", sign(unsigned, nk, nc), Reason.CERT_USAGE)
    add("signer_is_not_sender", pki.sign(unsigned, b), Reason.SIGNER_MISMATCH)
    return items


def free_port_block(n: int, *, low: int = 20_000, high: int = 32_000) -> int:
    """A base port such that ``base - 1 .. base + n`` are free on 127.0.0.1 now (``base - 1``: the admin app).

    Chosen at random BELOW Linux's ephemeral range (32768-60999), where the outgoing connections of a busy
    machine (every AMQP and HTTP client) take their local ports: a block there can be taken between the check and
    the bind. Random, so that concurrent runs rarely try the same block."""
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low + 1, high - n - 1)
        try:
            for port in range(base - 1, base + n + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no block of {n + 2} free ports between {low} and {high}")
