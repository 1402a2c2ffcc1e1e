"""Sign an edXML document per the axis signing profile (contract section 1).

:func:`sign` adds exactly one ``ds:Signature`` as the last child of ``edXMLHeader``: an enveloped signature,
one ``Reference URI=""`` with the transforms enveloped-signature then exclusive C14N, SignedInfo canonicalized
with exclusive C14N, SHA-256 digest, RSA-SHA256 (RSA keys) or ECDSA-SHA256 (EC keys), and
``KeyInfo/X509Data/X509Certificate`` with the signer's certificate first, then any intermediates.

A document that already carries a Signature is refused (``SIGNATURE_PROFILE``) unless ``replace=True``, in
which case every existing XML-DSig Signature is removed first: signing never silently produces a document with
two signatures, and never silently drops someone else's.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from axis.core.dsig import (
    DSIG,
    ECDSA_SHA256,
    EXC_C14N,
    PROFILE_TRANSFORMS,
    RSA_SHA256,
    SHA256,
    e,
    enveloped_c14n,
    exc_c14n,
    q,
)
from axis.core.reasons import Reason, Refusal
from axis.core.xmlsafe import DEFAULT_MAX_BYTES, parse_untrusted

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _sub(parent: etree._Element, local: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, q(local), attrs)
    if text is not None:
        el.text = text
    return el


def _header(root: etree._Element) -> etree._Element:
    if root.tag != e("edXML"):
        raise Refusal(Reason.SCHEMA_INVALID, f"root element is {root.tag!s}, not edXML")
    envelope = root.find(e("edXMLEnvelope"))
    header = envelope.find(e("edXMLHeader")) if envelope is not None else None
    if header is None:
        raise Refusal(Reason.SCHEMA_INVALID, "no edXMLEnvelope/edXMLHeader to carry the Signature")
    return header


def raw_signature(key: PrivateKey, data: bytes) -> bytes:
    """The SignatureValue bytes: PKCS#1 v1.5 for RSA, r||s (fixed width) for ECDSA as XML-DSig requires."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    der = key.sign(data, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    width = (key.curve.key_size + 7) // 8
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def sign(
    data: bytes,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    replace: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """Return ``data`` signed per the profile. Raises Refusal for input that cannot be signed."""
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError("key must be an RSA or EC private key")
    cert_key = cert.public_key()
    if (not isinstance(cert_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
            or key.public_key().public_numbers() != cert_key.public_numbers()):
        raise ValueError("the private key does not match the certificate")
    root = parse_untrusted(data, max_bytes=max_bytes)
    header = _header(root)
    existing = list(root.iter("{*}Signature"))  # in any namespace or none; the tag match runs in C
    if existing:
        if not replace:
            raise Refusal(Reason.SIGNATURE_PROFILE, "already signed (re-sign: --replace)")
        for old in existing:
            parent = old.getparent()
            if parent is not None:
                prev = old.getprevious()
                if prev is not None:
                    prev.tail = old.tail if old.tail is not None else prev.tail
                parent.remove(old)

    method = RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) else ECDSA_SHA256
    signature = etree.Element(q("Signature"), nsmap={"ds": DSIG})
    signed_info = _sub(signature, "SignedInfo")
    _sub(signed_info, "CanonicalizationMethod", Algorithm=EXC_C14N)
    _sub(signed_info, "SignatureMethod", Algorithm=method)
    reference = _sub(signed_info, "Reference", URI="")
    transforms = _sub(reference, "Transforms")
    for algorithm in PROFILE_TRANSFORMS:
        _sub(transforms, "Transform", Algorithm=algorithm)
    _sub(reference, "DigestMethod", Algorithm=SHA256)
    digest_value = _sub(reference, "DigestValue")
    signature_value = _sub(signature, "SignatureValue")
    x509_data = _sub(_sub(signature, "KeyInfo"), "X509Data")
    for c in (cert, *chain):
        der = c.public_bytes(serialization.Encoding.DER)
        _sub(x509_data, "X509Certificate", base64.b64encode(der).decode())

    # Last child of edXMLHeader. No whitespace is added anywhere: the signed document is the input (as the
    # hardened parser reads it: comments dropped, which C14N ignores anyway) plus the Signature element, so a
    # signature never changes what the document says.
    header.append(signature)

    digest_value.text = base64.b64encode(hashlib.sha256(enveloped_c14n(root, signature)).digest()).decode()
    signature_value.text = base64.b64encode(raw_signature(key, exc_c14n(signed_info))).decode()
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
