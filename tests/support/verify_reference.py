"""The reference verifier: the same contract as :class:`axis.core.verify.Verifier`, built on signxml.

Slower and simpler; it exists so the fast path can be tested against an independent implementation
(tests/core/test_verify_differential.py) and measured against it (bench/verify.py).

What is independent of the fast path: the profile checks are written again with XPath (not the fast path's
element walking), and digest + signature are computed by signxml's ``XMLVerifier`` (its own enveloped transform,
canonicalization and key handling). What is shared: the hardened parser, the key-strength rule and the
certificate-chain/validity/CRL/usage rules of :mod:`axis.core.verify` (uncached here), because the differential target
is the XML-DSig processing, where wrapping and canonicalization bugs live.

The order of checks, and so the reason reported when several apply, is the one documented in :mod:`axis.core.verify`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, SignXMLException
from signxml.exceptions import InvalidSignature as SignxmlInvalidSignature

from axis.core import xmlsafe
from axis.core.dsig import DIGESTS, DSIG, EDXML, EXC_C14N, SIGNATURES
from axis.core.reasons import Reason, Refusal
from axis.core.verify import (
    Verified,
    VerifyPolicy,
    cert_facts,
    check_key_strength,
    check_signer,
    check_time_revocation_usage,
    load_chain,
    revoked_index,
)

NS = {"ds": DSIG, "x": EDXML}
_ATTRIBUTES = {"Signature": "Id", "Reference": "URI", "CanonicalizationMethod": "Algorithm",
               "SignatureMethod": "Algorithm", "DigestMethod": "Algorithm", "Transform": "Algorithm"}
_TRANSFORMS = ["http://www.w3.org/2000/09/xmldsig#enveloped-signature", EXC_C14N]


def _x(node: etree._Element, path: str) -> list[etree._Element]:
    return node.xpath(path, namespaces=NS)  # type: ignore[return-value]


def _names(node: etree._Element) -> list[str]:
    return [f"{etree.QName(c).namespace}|{etree.QName(c).localname}" for c in _x(node, "*")]


def _want(node: etree._Element, *names: str) -> bool:
    return _names(node) == [f"{DSIG}|{n}" for n in names]


def _profile(root: etree._Element, policy: VerifyPolicy) -> tuple[str, list[bytes]] | None:
    sigs = _x(root, "//*[local-name()='Signature']")
    if not sigs and not _x(root, "//ds:*"):
        if policy.require_signature:
            raise Refusal(Reason.SIGNATURE_MISSING, "no signature")
        return None
    if _x(root, "//*[local-name()='Signature'][namespace-uri()!=$ns]".replace("$ns", f"'{DSIG}'")):
        raise Refusal(Reason.SIGNATURE_PROFILE, "Signature outside the XML-DSig namespace")
    if len(sigs) != 1:
        raise Refusal(Reason.SIGNATURE_PROFILE, f"{len(sigs)} signatures")
    sig = sigs[0]
    if root.xpath("count(//ds:*)", namespaces=NS) != sig.xpath("count(descendant-or-self::ds:*)", namespaces=NS):
        raise Refusal(Reason.SIGNATURE_PROFILE, "XML-DSig elements outside the Signature")
    if not _x(sig, "self::*[parent::x:edXMLHeader[parent::x:edXMLEnvelope[parent::x:edXML[not(parent::*)]]]]"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "Signature misplaced")
    if root.xpath("/processing-instruction()"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "processing instruction outside the root")
    if _x(sig, "following-sibling::text()[normalize-space()]"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "text after the Signature")
    if _x(sig, "following-sibling::*"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "Signature not last")
    for attr in _x(sig, "descendant-or-self::*/@*"):
        owner = etree.QName(attr.getparent())  # type: ignore[attr-defined]
        allowed = _ATTRIBUTES.get(owner.localname, "") if owner.namespace == DSIG else ""
        if attr.attrname != allowed:  # type: ignore[attr-defined]
            raise Refusal(Reason.SIGNATURE_PROFILE, f"attribute {attr.attrname} on {owner.localname}")  # type: ignore
    if sig.get("Id") is not None and not re.match(r"^[A-Za-z_][-A-Za-z0-9_.]*\Z", sig.get("Id", "")):
        raise Refusal(Reason.SIGNATURE_PROFILE, "Signature Id")
    if not _want(sig, "SignedInfo", "SignatureValue", "KeyInfo"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "Signature children")
    si = _x(sig, "ds:SignedInfo")[0]
    if not _want(si, "CanonicalizationMethod", "SignatureMethod", "Reference"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "SignedInfo children")
    ref = _x(si, "ds:Reference")[0]
    if _x(ref, "@*[name()!='URI']") or ref.get("URI") != "":
        raise Refusal(Reason.SIGNATURE_PROFILE, "Reference URI")
    if not _want(ref, "Transforms", "DigestMethod", "DigestValue"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "Reference children")
    sm = _x(si, "ds:SignatureMethod/@Algorithm")
    dm = _x(ref, "ds:DigestMethod/@Algorithm")
    if not sm or sm[0] not in policy.signature_algorithms or sm[0] not in SIGNATURES:
        raise Refusal(Reason.WEAK_ALGORITHM, f"signature method {sm}")
    if not dm or dm[0] not in policy.digest_algorithms or dm[0] not in DIGESTS:
        raise Refusal(Reason.WEAK_ALGORITHM, f"digest method {dm}")
    text = _x(sig, "descendant-or-self::*[not(self::ds:DigestValue or self::ds:SignatureValue"
                   " or self::ds:X509Certificate)]/text()[normalize-space()]")
    if text:
        raise Refusal(Reason.SIGNATURE_PROFILE, f"character content {str(text[0])[:20]!r} in the Signature")
    if (_x(si, "ds:CanonicalizationMethod/@Algorithm") != [EXC_C14N]
            or _x(si, "ds:CanonicalizationMethod/node()[self::*] | ds:CanonicalizationMethod/@*[name()!='Algorithm']")
            or _x(si, "ds:SignatureMethod/*|ds:SignatureMethod/@*[name()!='Algorithm']")
            or _x(ref, "ds:DigestMethod/*|ds:DigestMethod/@*[name()!='Algorithm']")):
        raise Refusal(Reason.SIGNATURE_PROFILE, "canonicalization / method parameters")
    transforms = _x(ref, "ds:Transforms")[0]
    if (_x(transforms, "@*") or not _want(transforms, "Transform", "Transform")
            or _x(transforms, "ds:Transform/@Algorithm") != _TRANSFORMS
            or _x(transforms, "ds:Transform/*|ds:Transform/@*[name()!='Algorithm']")):
        raise Refusal(Reason.SIGNATURE_PROFILE, "transforms")
    key_info = _x(sig, "ds:KeyInfo")[0]
    if not _want(key_info, "X509Data"):
        raise Refusal(Reason.SIGNATURE_PROFILE, "KeyInfo")
    certs = _x(key_info, "ds:X509Data/*")
    if not certs or any(etree.QName(c).localname != "X509Certificate" for c in certs):
        raise Refusal(Reason.SIGNATURE_PROFILE, "X509Data")
    values = []
    for el in [*certs, *_x(ref, "ds:DigestValue"), *_x(sig, "ds:SignatureValue")]:
        if _x(el, "node()[not(self::text())]"):
            raise Refusal(Reason.SIGNATURE_PROFILE, "elements, comments or PIs in base64 content")
        text = re.sub(r"[ \t\r\n]+", "", el.text or "")
        try:
            value = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError):
            raise Refusal(Reason.SIGNATURE_PROFILE, "base64") from None
        if base64.b64encode(value) != text.encode("ascii"):
            raise Refusal(Reason.SIGNATURE_PROFILE, "non-canonical base64")
        values.append(value)
    return str(sm[0]), values[: len(certs)]


class ReferenceVerifier:
    """``verify(data) -> Verified`` with signxml doing the XML-DSig work. Not for production traffic."""

    def __init__(self, policy: VerifyPolicy) -> None:
        self.policy = policy
        self._revoked = revoked_index(policy)
        self._config = SignatureConfiguration(
            require_x509=True,
            location=".//",  # anywhere; _profile already checked there is exactly one, correctly placed
            expect_references=1,
            signature_methods=frozenset(SignatureMethod(m) for m in policy.signature_algorithms),
            digest_algorithms=frozenset(DigestAlgorithm(d) for d in policy.digest_algorithms),
        )

    def verify(self, data: bytes) -> Verified:
        root = xmlsafe.parse_untrusted(data, max_bytes=self.policy.max_bytes)
        found = _profile(root, self.policy)
        if found is None:
            return Verified(root=root, signer=None, certificate=None, data=bytes(data))
        method, ders = found
        chain = load_chain(tuple(ders))  # shared: certificate decoding is not what this module cross-checks
        check_key_strength(chain[0])
        if (SIGNATURES[method][0] == "rsa") != isinstance(chain[0].public_key(), rsa.RSAPublicKey):
            raise Refusal(Reason.SIGNATURE_INVALID, f"the certificate's key cannot make a {method} signature")
        try:
            XMLVerifier().verify(
                # signxml checks the certificate's validity window itself; validity is judged below against the
                # policy clock (CERT_EXPIRED after SIGNATURE_INVALID), so signxml is given a time inside the window.
                root, x509_cert=chain[0], parser=xmlsafe._PARSER,
                expect_config=dataclasses.replace(self._config, verification_time=chain[0].not_valid_before_utc),
                ignore_ambiguous_key_info=True,
            )
        except SignxmlInvalidSignature as exc:
            raise Refusal(Reason.SIGNATURE_INVALID, f"signxml: {exc}") from None
        except (InvalidInput, SignXMLException, ValueError, etree.LxmlError) as exc:
            raise Refusal(Reason.SIGNATURE_PROFILE, f"signxml: {exc}") from None
        facts = cert_facts(chain, self.policy.trust_anchors)
        check_time_revocation_usage(facts, self.policy.clock(), self._revoked)
        signer = check_signer(root, facts.uid)
        return Verified(root=root, signer=signer, certificate=chain[0], data=bytes(data))
