"""XML-DSig vocabulary of the axis signing profile (contract section 1) and the two canonicalizations it uses.

Shared by :mod:`axis.core.signing`, :mod:`axis.core.verify` and :mod:`tests.support.verify_reference` so that signer
and verifiers
compute byte-for-byte the same canonical forms. Pure functions on lxml elements; nothing here parses bytes.
"""

from __future__ import annotations

from lxml import etree

from axis.core.reasons import Reason, Refusal

DSIG = "http://www.w3.org/2000/09/xmldsig#"
EDXML = "http://www.mic.gov.vn/TBT/QCVN_102_2016"

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
PROFILE_TRANSFORMS = (ENVELOPED, EXC_C14N)

#: Digest algorithms allowed by the profile (SHA-256 or stronger), URI -> hashlib name.
DIGESTS: dict[str, str] = {
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
#: Signature algorithms allowed by the profile, URI -> (key type, hashlib name).
SIGNATURES: dict[str, tuple[str, str]] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": ("rsa", "sha256"),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": ("rsa", "sha384"),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": ("rsa", "sha512"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ("ec", "sha256"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ("ec", "sha384"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": ("ec", "sha512"),
}
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"

#: Smallest RSA modulus and the EC curves the profile accepts.
MIN_RSA_BITS = 2048
EC_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})


def q(local: str) -> str:
    """Clark name of an XML-DSig element."""
    return f"{{{DSIG}}}{local}"


def e(local: str) -> str:
    """Clark name of an edXML element."""
    return f"{{{EDXML}}}{local}"


def exc_c14n(element: etree._Element) -> bytes:
    """Exclusive C14N 1.0 (without comments) of one element and its subtree.

    Raises Refusal(SIGNATURE_PROFILE) for documents C14N cannot process (libxml2 refuses relative namespace
    URIs such as ``xmlns:a="rel"``): such a document can be neither signed nor verified per the profile.
    """
    try:
        return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
    except etree.C14NError as exc:
        raise Refusal(Reason.SIGNATURE_PROFILE, f"the document cannot be canonicalized ({exc}); "
                      "relative namespace URIs are not allowed") from None


def enveloped_c14n(root: etree._Element, signature: etree._Element) -> bytes:
    """The Reference's input for ``URI=""``: the document minus ``signature`` (enveloped-signature), exc-C14N.

    The Signature element is detached for the duration of the call and put back exactly where it was, tail text
    included (the enveloped-signature transform removes the element, not the whitespace that follows it).
    The caller's tree is unchanged afterwards, even if canonicalization raises.
    """
    parent = signature.getparent()
    if parent is None:
        raise ValueError("the Signature element has no parent")
    index = parent.index(signature)
    tail = signature.tail
    prev = signature.getprevious()
    prev_tail = prev.tail if prev is not None else None
    parent_text = parent.text
    # Keep the Signature's tail in the document: lxml moves an element's tail along with it.
    if tail:
        if prev is not None:
            prev.tail = (prev_tail or "") + tail
        else:
            parent.text = (parent_text or "") + tail
    signature.tail = None
    parent.remove(signature)
    try:
        return exc_c14n(root)
    finally:
        if prev is not None:
            prev.tail = prev_tail
        else:
            parent.text = parent_text
        parent.insert(index, signature)
        signature.tail = tail
