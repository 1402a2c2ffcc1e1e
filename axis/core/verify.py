"""Verify a signed edXML envelope: the strict-profile fast path (lxml + cryptography).

``Verifier(policy).verify(data) -> Verified`` or raises ``Refusal`` with exactly one reason (contract section 2).
The Verifier keeps no per-call state: one instance serves every asyncio task (and thread). Its only shared state
is a bounded LRU cache of per-certificate results that do not depend on time (chain signature to an anchor, key
usage, UID, key strength), keyed by the DER bytes of the certificates; validity window and CRL membership are
evaluated against the policy clock and CRLs on every call.

Schema validation is NOT done here; the caller does that (on ``Verified.root``).

Order of checks — the first failing check gives the one reason:

1. ``TOO_LARGE`` / ``XML_FORBIDDEN`` (a DTD, an entity, a processing instruction inside the root) /
   ``XML_MALFORMED`` — :func:`axis.core.xmlsafe.parse_untrusted` (comments are dropped as it parses: what is read is
   what exclusive C14N signs).
2. ``SIGNATURE_MISSING`` — no element named ``Signature`` (in any namespace) and nothing in the XML-DSig
   namespace (only when ``policy.require_signature``; otherwise the unsigned document is returned with
   ``signer=None``).
3. ``SIGNATURE_PROFILE`` (structure) — a ``Signature`` in the wrong namespace (the real samples put it in the
   edXML namespace); more than one Signature, or any XML-DSig element outside it (wrapping); a processing
   instruction outside the root element (not covered by what signers sign); the Signature not the last element
   child of ``edXML/edXMLEnvelope/edXMLHeader`` (followed by nothing but whitespace; an ``Id``, if any, an ASCII
   XML name); attributes other than Signature/@Id, Reference/@URI and
   @Algorithm on the method and transform elements; children other than SignedInfo, SignatureValue, KeyInfo
   (no ds:Object); not exactly one ``Reference``; ``URI`` other than ``""`` (no Id references).
4. ``WEAK_ALGORITHM`` — SignatureMethod or DigestMethod not in the policy's allowed sets (SHA-1, MD5, HMAC,
   unknown URIs).
5. ``SIGNATURE_PROFILE`` (details) — non-whitespace text anywhere in the Signature except in DigestValue,
   SignatureValue and X509Certificate; CanonicalizationMethod not exclusive C14N, transforms not exactly
   enveloped-signature then exclusive C14N, any parameter child (InclusiveNamespaces, XPath), KeyInfo without
   exactly one X509Data of X509Certificate elements, base64 values that are not plain base64 text, a signer
   certificate that cannot be decoded. Then ``WEAK_ALGORITHM`` again for the signer's key: RSA under 2048 bits,
   an EC curve other than P-256/384/521.
6. ``SIGNATURE_INVALID`` — the SignatureValue does not verify over exc-C14N(SignedInfo) with the certificate's key
   (or is malformed, or the key type does not fit the method), or the DigestValue does not match
   exc-C14N(document minus Signature).
7. ``CERT_UNTRUSTED`` — the certificate does not chain (through the X509Data intermediates) to a trust anchor.
8. ``CERT_EXPIRED`` — the certificate or an intermediate is expired or not yet valid at ``policy.clock()``.
9. ``CERT_UNTRUSTED`` when the policy's CRLs are stale — past their nextUpdate, or older than
   ``policy.crl_max_age`` — (revocation cannot be known: refused rather than trusted, as X-Road refuses on a stale
   OCSP answer); then ``CERT_REVOKED`` — the certificate or an intermediate is on a CRL of the policy.
10. ``CERT_USAGE`` — the signer certificate lacks the digitalSignature key usage, or is a CA certificate.
11. ``SIGNER_MISMATCH`` — the certificate has no single UID, or it differs from ``MessageHeader/From/OrganId``.

The signature is checked before the certificate so that a tampered document is always ``SIGNATURE_INVALID``
whatever certificate it carries, and certificate problems are only reported for documents that are intact.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from axis.core.dsig import (
    DIGESTS,
    DSIG,
    EC_CURVES,
    EDXML,
    EXC_C14N,
    MIN_RSA_BITS,
    PROFILE_TRANSFORMS,
    SIGNATURES,
    e,
    enveloped_c14n,
    exc_c14n,
    q,
)
from axis.core.pki import cert_uid, is_tls_certificate, issuer_public_key, load_trust
from axis.core.reasons import Reason, Refusal
from axis.core.xmlsafe import DEFAULT_MAX_BYTES, parse_untrusted

if TYPE_CHECKING:
    from axis.core.envelope import Message


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PolicyOptions(TypedDict, total=False):
    """The settings of a :class:`VerifyPolicy` besides its trust (keywords of :meth:`VerifyPolicy.from_files`)."""

    max_bytes: int
    digest_algorithms: frozenset[str]
    signature_algorithms: frozenset[str]
    clock: Callable[[], dt.datetime]
    require_signature: bool
    crl_max_age: dt.timedelta | None


@dataclass(frozen=True)
class VerifyPolicy:
    """What a valid envelope is, for one deployment. Safe defaults; immutable.

    - ``trust_anchors``: CA certificates a signer must chain to (the axis CA). Empty means nothing is trusted.
    - ``crls``: CRLs consulted for revocation; each must be signed by a trust anchor (checked by ``Verifier``).
    - ``max_bytes``: size limit of one envelope (TOO_LARGE above it).
    - ``digest_algorithms`` / ``signature_algorithms``: allowed algorithm URIs (SHA-256 or stronger only; the
      Verifier refuses to widen them to anything the profile does not know).
    - ``clock``: returns "now" (aware UTC) for certificate validity; tests pass a fixed clock.
    - ``require_signature``: refuse unsigned documents (SIGNATURE_MISSING). With False, an unsigned document is
      returned with ``signer=None``; a signed one is still fully verified.
    - ``crl_max_age``: a CRL older than this (since its thisUpdate) no longer vouches for anything: signed
      documents are refused ``CERT_UNTRUSTED`` until a newer CRL is loaded. A CRL past its own nextUpdate is stale
      in any case (RFC 5280 section 6.3.3). None: the nextUpdate alone.
    """

    trust_anchors: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    digest_algorithms: frozenset[str] = frozenset(DIGESTS)
    signature_algorithms: frozenset[str] = frozenset(SIGNATURES)
    clock: Callable[[], dt.datetime] = _utcnow
    require_signature: bool = True
    crl_max_age: dt.timedelta | None = None

    @classmethod
    def from_files(cls, ca_pem: Path | str | bytes, crl_pem: Path | str | bytes | None = None,
                   **options: Unpack[PolicyOptions]) -> VerifyPolicy:
        """A policy trusting the CA(s) in ``ca_pem`` with the CRL(s) in ``crl_pem`` (paths or PEM bytes)."""
        anchors, crls = load_trust(ca_pem, crl_pem)
        return cls(trust_anchors=anchors, crls=crls, **options)


@dataclass(frozen=True)
class Verified:
    """A document whose signature, certificate and signer all checked out. Read the document only from ``root``
    (or ``message``, parsed from it); ``data`` are the exact bytes that were verified."""

    root: etree._Element
    signer: str | None
    certificate: x509.Certificate | None
    data: bytes = field(repr=False)

    @functools.cached_property
    def message(self) -> Message:
        """The parsed DocumentMessage / StatusMessage, read from ``root`` (computed on first use; the envelope model
        is imported only then: ``axis envelope verify`` never needs it)."""
        from axis.core.envelope import from_element

        return from_element(self.root)


# ---- the parts shared with tests.support.verify_reference ----------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """The profile-checked pieces of one ds:Signature."""

    signature: etree._Element
    signed_info: etree._Element
    signature_method: str
    digest_method: str
    digest_value: bytes
    signature_value: bytes
    certs_der: tuple[bytes, ...]


def _decode_b64(text: str, what: str) -> bytes:
    """Base64 text -> bytes: only XML whitespace is ignored, and the encoding must be canonical (no stray bits in
    the last character), as xsd:base64Binary requires."""
    try:
        compact = text.encode("ascii").translate(None, b" \t\r\n")
        value = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(Reason.SIGNATURE_PROFILE, f"{what} is not valid base64") from None
    if base64.b64encode(value) != compact:
        raise Refusal(Reason.SIGNATURE_PROFILE, f"{what} is not canonical base64")
    return value


#: Certificates repeat from envelope to envelope: their decoding is cached by text (bounded).
_decode_cert_b64 = functools.lru_cache(maxsize=1024)(_decode_b64)


def _text_b64(el: etree._Element, what: str) -> bytes:
    """The base64 value of a DigestValue/SignatureValue/X509Certificate (text only: no child nodes)."""
    if len(el):  # child elements (the parser drops comments and refuses processing instructions)
        raise Refusal(Reason.SIGNATURE_PROFILE, f"{what} has child nodes other than text")
    text = el.text or ""
    return _decode_cert_b64(text, what) if what == "X509Certificate" else _decode_b64(text, what)


def _children(el: etree._Element) -> list[etree._Element]:
    """Element children; comments and PIs are ignored (they are not part of the canonical form)."""
    return list(el.iterchildren("*"))


_DSIG_ANY = "{" + DSIG + "}*"
_XML_SPACE = " \t\r\n"
#: Signature/@Id is an xs:ID (an XML name); axis accepts the ASCII subset, as the signxml reference does.
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
#: The only elements of the Signature with character content (base64); everywhere else only whitespace.
_VALUE_ELEMENTS = frozenset({q("DigestValue"), q("SignatureValue"), q("X509Certificate")})
_DSIG_OPEN = "{" + DSIG + "}"
_ANY_SIGNATURE = "{*}Signature"  # lxml: in any namespace or in none
_SIGNATURE, _TRANSFORM, _X509_DATA, _X509_CERTIFICATE = (q(n) for n in ("Signature", "Transform", "X509Data",
                                                                         "X509Certificate"))
_EDXML, _ENVELOPE, _HEADER = e("edXML"), e("edXMLEnvelope"), e("edXMLHeader")

#: The only attributes the profile allows inside the Signature (XML-DSig allows more; axis needs none of them).
_ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    q("Signature"): frozenset({"Id"}),
    q("Reference"): frozenset({"URI"}),
    q("CanonicalizationMethod"): frozenset({"Algorithm"}),
    q("SignatureMethod"): frozenset({"Algorithm"}),
    q("DigestMethod"): frozenset({"Algorithm"}),
    q("Transform"): frozenset({"Algorithm"}),
}


@functools.cache
def _qs(names: tuple[str, ...]) -> list[str]:
    return [q(n) for n in names]


def _expect(children: list[etree._Element], names: tuple[str, ...], where: str) -> None:
    got = [c.tag for c in children]
    if got != _qs(names):
        shown = ", ".join(etree.QName(c).localname for c in children)
        raise Refusal(Reason.SIGNATURE_PROFILE, f"{where} must contain {', '.join(names)}; found: {shown or 'nothing'}")


def _scan_signature(signature: etree._Element) -> tuple[int, str | None, str | None]:
    """One walk over the Signature's subtree: (how many XML-DSig elements it holds, the first attribute the profile
    does not allow, the first character content outside the base64 values). Raises nothing: :func:`locate`
    reports each finding at its own step."""
    dsig_inside = 0
    attribute_problem = text_problem = None
    for el in signature.iter():  # elements (the hardened parser drops comments and refuses PIs inside the root)
        tag = el.tag
        if isinstance(tag, str):
            if tag.startswith(_DSIG_OPEN):
                dsig_inside += 1
            keys = el.keys()
            if (attribute_problem is None and keys
                    and not _ALLOWED_ATTRIBUTES.get(tag, frozenset()).issuperset(keys)):
                attribute_problem = f"unexpected attributes on {etree.QName(el).localname}"
            if text_problem is None and tag not in _VALUE_ELEMENTS and el.text and el.text.strip(_XML_SPACE):
                text_problem = f"text inside {etree.QName(el).localname}"
        if text_problem is None and el is not signature and el.tail and el.tail.strip(_XML_SPACE):
            text_problem = "text between the elements of the Signature"
    return dsig_inside, attribute_problem, text_problem


def locate(root: etree._Element, policy: VerifyPolicy) -> Located | None:
    """Steps 2-5 of the module docstring: find the one Signature and enforce the profile. None = unsigned.

    Two walks over the whole tree, each matching tags in lxml's C code (only the matches become Python objects),
    and one over the Signature; the lists keep the Signature's elements alive for the checks that follow."""
    candidates = list(root.iter(_ANY_SIGNATURE))  # Signature in any namespace, or in none
    dsig = list(root.iter(_DSIG_ANY))  # every XML-DSig element of the document
    if not candidates and not dsig:
        if policy.require_signature:
            raise Refusal(Reason.SIGNATURE_MISSING, "the document carries no signature")
        return None
    for el in candidates:
        if el.tag != _SIGNATURE:
            ns = etree.QName(el).namespace or "no namespace"
            raise Refusal(Reason.SIGNATURE_PROFILE, f"Signature is in {ns}, not the XML-DSig namespace")
    if len(candidates) != 1:
        raise Refusal(Reason.SIGNATURE_PROFILE, f"{len(candidates) or 'no'} Signature elements; exactly one is allowed")
    signature = candidates[0]
    dsig_inside, attribute_problem, text_problem = _scan_signature(signature)  # text_problem: reported at step 5
    if dsig_inside != len(dsig):
        raise Refusal(Reason.SIGNATURE_PROFILE, "XML-DSig elements outside the Signature")
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            # URI="" would cover it, but signers (signxml, axis) sign the root element only: refuse, not ignore.
            raise Refusal(Reason.SIGNATURE_PROFILE, "a processing instruction outside the root element is not signed")
    header = signature.getparent()
    envelope = header.getparent() if header is not None else None
    if (header is None or header.tag != _HEADER or envelope is None or envelope.tag != _ENVELOPE
            or envelope.getparent() is not root or root.tag != _EDXML):
        raise Refusal(Reason.SIGNATURE_PROFILE, "the Signature must be a child of edXML/edXMLEnvelope/edXMLHeader")
    if next(signature.itersiblings("*"), None) is not None:  # an element after it
        raise Refusal(Reason.SIGNATURE_PROFILE, "the Signature must be the last child of edXMLHeader")
    if signature.tail and signature.tail.strip(_XML_SPACE):
        raise Refusal(Reason.SIGNATURE_PROFILE, "text after the Signature")
    sig_id = signature.get("Id")
    if sig_id is not None and not _ID.fullmatch(sig_id):
        raise Refusal(Reason.SIGNATURE_PROFILE, "Signature/@Id must be an ASCII XML name")
    if attribute_problem:
        raise Refusal(Reason.SIGNATURE_PROFILE, attribute_problem)

    kids = _children(signature)
    _expect(kids, ("SignedInfo", "SignatureValue", "KeyInfo"), "Signature")
    signed_info, sig_value_el, key_info = kids
    si = _children(signed_info)
    _expect(si, ("CanonicalizationMethod", "SignatureMethod", "Reference"), "SignedInfo")
    c14n_el, method_el, reference = si
    if set(reference.attrib) != {"URI"} or reference.get("URI") != "":
        raise Refusal(Reason.SIGNATURE_PROFILE, 'the Reference must have URI="" and no other attributes (no Id/Type)')
    ref_kids = _children(reference)
    _expect(ref_kids, ("Transforms", "DigestMethod", "DigestValue"), "Reference")
    transforms_el, digest_method_el, digest_value_el = ref_kids

    # 4. algorithms
    signature_method = method_el.get("Algorithm", "")
    digest_method = digest_method_el.get("Algorithm", "")
    if signature_method not in policy.signature_algorithms or signature_method not in SIGNATURES:
        raise Refusal(Reason.WEAK_ALGORITHM, f"signature algorithm {signature_method or '(none)'} is not allowed")
    if digest_method not in policy.digest_algorithms or digest_method not in DIGESTS:
        raise Refusal(Reason.WEAK_ALGORITHM, f"digest algorithm {digest_method or '(none)'} is not allowed")

    # 5. character content, canonicalization, transforms, key info
    if text_problem:
        raise Refusal(Reason.SIGNATURE_PROFILE, text_problem)
    if c14n_el.get("Algorithm") != EXC_C14N or _children(c14n_el) or len(c14n_el.attrib) != 1:
        raise Refusal(Reason.SIGNATURE_PROFILE, f"SignedInfo canonicalization must be {EXC_C14N} without parameters")
    if (_children(method_el) or _children(digest_method_el)
            or len(method_el.attrib) != 1 or len(digest_method_el.attrib) != 1):
        raise Refusal(Reason.SIGNATURE_PROFILE, "SignatureMethod/DigestMethod take no parameters")
    transforms = _children(transforms_el)
    algs = tuple(t.get("Algorithm") for t in transforms)
    if (algs != PROFILE_TRANSFORMS or any(t.tag != _TRANSFORM or _children(t) or len(t.attrib) != 1
                                          for t in transforms) or transforms_el.attrib):
        raise Refusal(Reason.SIGNATURE_PROFILE, "transforms must be exactly enveloped-signature then exclusive C14N")
    x509_data = _children(key_info)
    if len(x509_data) != 1 or x509_data[0].tag != _X509_DATA:
        raise Refusal(Reason.SIGNATURE_PROFILE, "KeyInfo must hold exactly one X509Data")
    cert_els = _children(x509_data[0])
    if not cert_els or any(c.tag != _X509_CERTIFICATE for c in cert_els):
        raise Refusal(Reason.SIGNATURE_PROFILE, "X509Data must hold only X509Certificate elements (signer first)")
    certs_der = tuple(_text_b64(c, "X509Certificate") for c in cert_els)
    return Located(
        signature=signature,
        signed_info=signed_info,
        signature_method=signature_method,
        digest_method=digest_method,
        digest_value=_text_b64(digest_value_el, "DigestValue"),
        signature_value=_text_b64(sig_value_el, "SignatureValue"),
        certs_der=certs_der,
    )


@dataclass(frozen=True)
class CertFacts:
    """Time-independent facts about a certificate chain (what the Verifier caches)."""

    certificate: x509.Certificate
    path: tuple[x509.Certificate, ...]  # signer, intermediates used, anchor
    uid: str | None
    usage_problem: str | None
    #: (not before, not after, issuer name DER, serial) of each certificate of ``path`` (precomputed for speed)
    windows: tuple[tuple[dt.datetime, dt.datetime, bytes, int], ...] = ()
    public_key: object = None  # the signer's public key, loaded once


def load_chain(certs_der: tuple[bytes, ...]) -> list[x509.Certificate]:
    """Decode the X509Certificate values. ``cryptography`` parses lazily, so every field the checks read is
    touched here: a corrupt certificate is refused now (SIGNATURE_PROFILE; an unknown key algorithm or curve
    WEAK_ALGORITHM) instead of failing later with an exception that is not a Refusal."""
    chain = []
    for der in certs_der:
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.public_key()
            _ = (cert.subject, cert.issuer, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc,
                 cert.signature_hash_algorithm, cert.tbs_certificate_bytes, cert.signature)
            for ext in cert.extensions:
                _ = ext.value
            cert_uid(cert)
        except UnsupportedAlgorithm as exc:
            raise Refusal(Reason.WEAK_ALGORITHM, f"certificate uses an unsupported algorithm: {exc}") from None
        except Exception as exc:  # untrusted DER: ValueError, x509.InvalidVersion, DuplicateExtension, ...
            raise Refusal(Reason.SIGNATURE_PROFILE, f"X509Certificate cannot be decoded: {exc}") from None
        chain.append(cert)
    return chain


def check_key_strength(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise Refusal(Reason.WEAK_ALGORITHM, f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS})")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            raise Refusal(Reason.WEAK_ALGORITHM, f"EC curve {key.curve.name} is not allowed")
    else:
        raise Refusal(Reason.WEAK_ALGORITHM, f"{type(key).__name__} keys are not allowed")


#: The hash algorithms of :data:`SIGNATURES` and the RSA padding (immutable: made once, not per signature).
_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                                            "sha512": hashes.SHA512()}
_PKCS1V15 = padding.PKCS1v15()


def check_signature_value(key: object, method: str, signed_info_c14n: bytes, value: bytes) -> None:
    kind, hash_name = SIGNATURES[method]
    algorithm = _HASHES[hash_name]
    try:
        if kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, signed_info_c14n, _PKCS1V15, algorithm)
            return
        if kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey):
            width = (key.curve.key_size + 7) // 8
            if len(value) != 2 * width:
                raise InvalidSignature
            der = encode_dss_signature(int.from_bytes(value[:width], "big"), int.from_bytes(value[width:], "big"))
            key.verify(der, signed_info_c14n, ec.ECDSA(algorithm))
            return
    except InvalidSignature:
        raise Refusal(Reason.SIGNATURE_INVALID, "the SignatureValue does not match SignedInfo") from None
    raise Refusal(Reason.SIGNATURE_INVALID, f"a {type(key).__name__} cannot make a {method} signature")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)


def cert_facts(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> CertFacts:
    """Chain the signer (``chain[0]``) to an anchor through the other certificates; key usage; UID.

    Raises CERT_UNTRUSTED when no path exists. Usage problems are recorded, not raised, because validity and
    revocation (checked per call) take precedence over usage.
    """
    signer = chain[0]
    check_key_strength(signer)
    path = [signer]
    current = signer
    pool = list(chain[1:])
    for _ in range(5):
        anchor = next((a for a in anchors if _issued_by(current, a)), None)
        if anchor is not None:
            path.append(anchor)
            break
        nxt = next((c for c in pool if c is not current and _is_ca(c) and _issued_by(current, c)), None)
        if nxt is None:
            raise Refusal(Reason.CERT_UNTRUSTED, f"{signer.subject.rfc4514_string()} does not chain to a trust anchor")
        path.append(nxt)
        pool.remove(nxt)
        current = nxt
    else:
        raise Refusal(Reason.CERT_UNTRUSTED, "certificate chain is too long")
    usage_problem = None
    try:
        ku = signer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            usage_problem = "the certificate lacks the digitalSignature key usage"
    except x509.ExtensionNotFound:
        usage_problem = "the certificate has no key usage extension (digitalSignature required)"
    if usage_problem is None and _is_ca(signer):
        usage_problem = "a CA certificate may not sign envelopes"
    if usage_problem is None and is_tls_certificate(signer):
        usage_problem = "a TLS certificate (extendedKeyUsage serverAuth/clientAuth) may not sign envelopes"
    windows = tuple((c.not_valid_before_utc, c.not_valid_after_utc, c.issuer.public_bytes(), c.serial_number)
                    for c in path)
    return CertFacts(certificate=signer, path=tuple(path), uid=cert_uid(signer), usage_problem=usage_problem,
                     windows=windows, public_key=signer.public_key())


def revoked_index(policy: VerifyPolicy) -> frozenset[tuple[bytes, int]]:
    """(issuer name DER, serial) of every revoked certificate on a CRL signed by a trust anchor."""
    out: set[tuple[bytes, int]] = set()
    for crl in policy.crls:
        issuer = next((a for a in policy.trust_anchors if a.subject == crl.issuer), None)
        if issuer is None or not crl.is_signature_valid(issuer_public_key(issuer)):
            raise ValueError(f"CRL from {crl.issuer.rfc4514_string()} is not signed by a trust anchor")
        for entry in crl:
            out.add((crl.issuer.public_bytes(), entry.serial_number))
    return frozenset(out)


def crl_fresh_until(crls: tuple[x509.CertificateRevocationList, ...], max_age: dt.timedelta | None = None
                    ) -> dt.datetime | None:
    """Until when ``crls`` vouch for revocation: the earliest nextUpdate, or thisUpdate + ``max_age`` when that is
    earlier (None: no CRL, nothing to go stale)."""
    limits = []
    for crl in crls:
        if crl.next_update_utc is not None:
            limits.append(crl.next_update_utc)
        if max_age is not None:
            limits.append(crl.last_update_utc + max_age)
    return min(limits) if limits else None


def check_time_revocation_usage(facts: CertFacts, now: dt.datetime, revoked: frozenset[tuple[bytes, int]],
                                fresh_until: dt.datetime | None = None) -> None:
    """Steps 8-10: validity of signer and intermediates (and the anchor) at ``now``, a fresh CRL (``fresh_until``,
    :func:`crl_fresh_until`), CRL membership, key usage."""
    *certs, anchor = facts.windows
    for not_before, not_after, _, _ in certs:
        if now < not_before:
            raise Refusal(Reason.CERT_EXPIRED, f"certificate not valid before {not_before.isoformat()}")
        if now > not_after:
            raise Refusal(Reason.CERT_EXPIRED, f"certificate expired at {not_after.isoformat()}")
    if not anchor[0] <= now <= anchor[1]:
        raise Refusal(Reason.CERT_EXPIRED, "the trust anchor is not valid now")
    if fresh_until is not None and now > fresh_until:
        raise Refusal(Reason.CERT_UNTRUSTED, f"the CRL is stale since {fresh_until.isoformat()}: revocation cannot "
                                             "be checked until the axis CA issues a new one (axis pki crl)")
    for _, _, issuer, serial in certs:
        if (issuer, serial) in revoked:
            raise Refusal(Reason.CERT_REVOKED, f"certificate {serial:x} is revoked")
    if facts.usage_problem:
        raise Refusal(Reason.CERT_USAGE, facts.usage_problem)


#: Every MessageHeader/From/OrganId of the document (each step on the child axis, in document order), found by
#: libxml2 in one call. lxml serializes concurrent calls of one XPath object with a lock of its own.
_SENDER_ORGAN_IDS = etree.XPath("x:edXMLEnvelope/x:edXMLHeader/x:MessageHeader/x:From/x:OrganId",
                                namespaces={"x": EDXML})


def check_signer(root: etree._Element, uid: str | None) -> str:
    """Step 11: the certificate UID equals MessageHeader/From/OrganId (read from the verified root)."""
    organ_ids = _SENDER_ORGAN_IDS(root)
    assert isinstance(organ_ids, list)  # a location path gives a node-set
    if len(organ_ids) != 1:
        raise Refusal(Reason.SIGNER_MISMATCH, "the document has no single MessageHeader/From/OrganId")
    sender = (organ_ids[0].text or "").strip()
    if uid is None:
        raise Refusal(Reason.SIGNER_MISMATCH, "the certificate has no single UID attribute")
    if uid != sender:
        raise Refusal(Reason.SIGNER_MISMATCH, f"certificate UID {uid} is not the sender {sender}")
    return uid


# ---- the fast path ----------------------------------------------------------------------------------------------


_HASHLIB = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


class Verifier:
    """Verifies envelopes against one :class:`VerifyPolicy`. Stateless per call; safe to share."""

    def __init__(self, policy: VerifyPolicy, *, cache_size: int = 4096) -> None:
        unknown = (policy.digest_algorithms - set(DIGESTS)) | (policy.signature_algorithms - set(SIGNATURES))
        if unknown:
            raise ValueError(f"algorithms outside the profile cannot be allowed: {sorted(unknown)}")
        self.policy = policy
        self.revoked = revoked_index(policy)
        self.crl_fresh_until = crl_fresh_until(policy.crls, policy.crl_max_age)
        self._facts = functools.lru_cache(maxsize=cache_size)(self._facts_uncached)

    def _facts_uncached(self, certs_der: tuple[bytes, ...]) -> CertFacts:
        return cert_facts(load_chain(certs_der), self.policy.trust_anchors)

    def chain_facts(self, certs_der: tuple[bytes, ...]) -> CertFacts:
        """The time-independent facts of a certificate chain (signer first), from this verifier's cache; Refusal
        when it does not chain to a trust anchor or cannot be read. The moment-dependent part is
        :func:`check_time_revocation_usage`."""
        return self._facts(certs_der)

    def _certificate(self, certs_der: tuple[bytes, ...]) -> CertFacts | Refusal:
        try:
            return self._facts(certs_der)
        except Refusal as refusal:  # not cached (lru_cache does not cache exceptions); cheap enough to redo
            return refusal

    def verify(self, data: bytes, *, check_tree: Callable[[etree._Element], None] | None = None) -> Verified:
        return self.verify_with_facts(data, check_tree=check_tree)[0]

    def verify_with_facts(self, data: bytes, *, check_tree: Callable[[etree._Element], None] | None = None
                          ) -> tuple[Verified, CertFacts | None]:
        """:meth:`verify`, and the (cached) chain facts behind its result (None when unsigned): what a caller
        that remembers the result must check again at each later use (:func:`check_time_revocation_usage`).

        ``check_tree``, if given, is called with the parsed tree right after step 1 and before any signature
        check (it may raise a Refusal, which then is the one reason): ``axis envelope verify`` validates the
        schema there, so every file is parsed once and a document that is both schema-invalid and unsigned or
        tampered is still refused SCHEMA_INVALID. It must not change the tree."""
        root = parse_untrusted(data, max_bytes=self.policy.max_bytes)
        if check_tree is not None:
            check_tree(root)
        located = locate(root, self.policy)
        if located is None:
            return Verified(root=root, signer=None, certificate=None, data=bytes(data)), None
        facts = self._certificate(located.certs_der)
        if isinstance(facts, Refusal) and facts.reason in (Reason.SIGNATURE_PROFILE, Reason.WEAK_ALGORITHM):
            raise facts
        signer = facts.certificate if isinstance(facts, CertFacts) else load_chain(located.certs_der[:1])[0]
        if not isinstance(facts, CertFacts):
            check_key_strength(signer)
        key = facts.public_key if isinstance(facts, CertFacts) else signer.public_key()
        check_signature_value(key, located.signature_method, exc_c14n(located.signed_info), located.signature_value)
        digest = _HASHLIB[DIGESTS[located.digest_method]](enveloped_c14n(root, located.signature)).digest()
        if digest != located.digest_value:
            raise Refusal(Reason.SIGNATURE_INVALID, "the document does not match its digest: it was altered")
        if isinstance(facts, Refusal):
            raise facts
        check_time_revocation_usage(facts, self.policy.clock(), self.revoked, self.crl_fresh_until)
        uid = check_signer(root, facts.uid)
        return Verified(root=root, signer=uid, certificate=facts.certificate, data=bytes(data)), facts
