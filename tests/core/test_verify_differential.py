"""Differential tests: the fast path and the signxml reference must agree on every envelope.

Hypothesis mutates valid envelopes (text and byte flips, attribute and element edits, transform and algorithm
edits, a moved or duplicated Signature, whitespace and comments, values split by a comment, a CDATA section or a
processing instruction) and both verifiers judge the result. They must
agree on accept/reject AND on the reason. ``AXIS_DIFF_EXAMPLES=5000`` runs a longer search.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from axis.core.dsig import DIGESTS, DSIG, EDXML, ENVELOPED, EXC_C14N, SIGNATURES, q
from axis.core.reasons import Refusal
from axis.core.verify import Verifier
from tests.support.testing import TestPKI, make_pki
from tests.support.verify_reference import ReferenceVerifier

A, B = "000.00.00.G22", "000.00.00.H41"

ALGORITHMS = [
    *DIGESTS, *SIGNATURES, ENVELOPED, EXC_C14N,
    "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#md5",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/1999/REC-xpath-19991116",
    "",
]
NAMES = ["Signature", "SignedInfo", "Reference", "Transform", "Transforms", "Object", "KeyInfo", "X509Data",
         "DigestValue", "MessageHeader", "From", "OrganId", "x"]
ATTRS = ["Id", "URI", "Algorithm", "Type", "version", "{http://www.w3.org/XML/1998/namespace}id",
         "{http://www.w3.org/XML/1998/namespace}lang"]


class Kit:
    def __init__(self, pki: TestPKI) -> None:
        self.pki = pki
        self.fast = pki.verifier()
        self.reference = ReferenceVerifier(pki.policy())
        self.bases = [pki.envelope(A, [B], size=3000, number=1), pki.envelope(B, [A], size=3500, number=2)]


@pytest.fixture(scope="module", params=["rsa", "ec"])
def kit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit(make_pki(tmp_path_factory.mktemp("pki"), [A, B], algorithm=request.param))


def outcome(verify: Callable[[bytes], Any], data: bytes) -> str:
    try:
        verified = verify(data)
    except Refusal as refusal:
        return refusal.reason.value
    return f"ok:{verified.signer}"


# ---- mutations (each takes the tree and Hypothesis' draw) ----------------------------------------------------------


class _Nothing(Exception):
    """The mutation has nothing to act on in this tree."""


def _pick(draw: Any, items: list[Any]) -> Any:
    if not items:
        raise _Nothing
    return items[draw(st.integers(0, len(items) - 1))]


def _first(root: etree._Element, tag: str) -> etree._Element:
    for el in root.iter(tag):
        return el
    raise _Nothing


def m_text(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, [el for el in root.iter("*") if el.text and el.text.strip()])
    text = el.text
    i = draw(st.integers(0, len(text) - 1))
    el.text = text[:i] + draw(st.sampled_from(["A", "0", "=", " ", "\n", "đ", ""])) + text[i + 1 :]


def m_text_anywhere(root: etree._Element, draw: Any) -> None:
    """Text where there was none or only whitespace: element content or tails, inside the Signature too."""
    el = _pick(draw, [el for el in root.iter("*") if el is not root])
    junk = draw(st.sampled_from(["x", " junk ", "\u00a0", "A=="]))
    if draw(st.booleans()):
        el.text = (el.text or "") + junk
    else:
        el.tail = (el.tail or "") + junk


def m_attr_set(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, list(root.iter("*")))
    el.set(draw(st.sampled_from(ATTRS)), draw(st.sampled_from(["", "#x", "x", *ALGORITHMS[:4]])))


def m_attr_delete(root: etree._Element, draw: Any) -> None:
    els = [el for el in root.iter("*") if el.attrib]
    el = _pick(draw, els)
    del el.attrib[_pick(draw, list(el.attrib))]


def m_delete(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, [el for el in root.iter("*") if el is not root])
    el.getparent().remove(el)


def m_duplicate(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, [el for el in root.iter("*") if el is not root])
    el.addnext(copy.deepcopy(el))


def m_rename(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, list(root.iter("*")))
    el.tag = f"{{{draw(st.sampled_from([DSIG, EDXML]))}}}{draw(st.sampled_from(NAMES))}"


def m_move_signature(root: etree._Element, draw: Any) -> None:
    sig = _first(root, q("Signature"))
    targets = [el for el in root.iter("*") if el is not sig and sig not in el.iterancestors()]
    target = _pick(draw, targets)
    target.insert(draw(st.integers(0, len(target))), sig)


def m_algorithm(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, [el for el in root.iter(f"{{{DSIG}}}*") if el.get("Algorithm") is not None])
    el.set("Algorithm", draw(st.sampled_from(ALGORITHMS)))


def m_transforms(root: etree._Element, draw: Any) -> None:
    transforms = _first(root, q("Transforms"))
    action = draw(st.sampled_from(["add", "remove", "swap"]))
    if action == "add":
        t = etree.Element(q("Transform"), Algorithm=draw(st.sampled_from(ALGORITHMS)))
        transforms.insert(draw(st.integers(0, len(transforms))), t)
    elif action == "remove":
        transforms.remove(_pick(draw, list(transforms)))
        if not len(transforms):
            return
    else:
        transforms.append(_pick(draw, list(transforms)))


def m_whitespace(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, list(root.iter("*")))
    el.tail = (el.tail or "") + draw(st.sampled_from([" ", "\n", "\t  "]))


def m_comment(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, list(root.iter("*")))
    el.insert(draw(st.integers(0, len(el))), etree.Comment(" c "))


def m_pi(root: etree._Element, draw: Any) -> None:
    el = _pick(draw, list(root.iter("*")))
    el.insert(draw(st.integers(0, len(el))), etree.ProcessingInstruction("p", "x"))


def m_top_level_pi(root: etree._Element, draw: Any) -> None:
    pi = etree.ProcessingInstruction("xml-stylesheet", 'href="x"')
    if draw(st.booleans()):
        root.addprevious(pi)
    else:
        root.addnext(pi)


#: Private-use characters that :func:`mutated` turns into CDATA delimiters in the serialized bytes.
CDATA_OPEN, CDATA_CLOSE = "\ue000", "\ue001"
SPLITS = ("comment", "cdata", "comment+cdata", "pi")


def split_text(el: etree._Element, k: int, how: str) -> None:
    """Split the text of ``el`` at ``k`` with a comment, a CDATA section (markers), both, or a PI."""
    text = el.text or ""
    head, tail = text[:k], text[k:]
    if how == "cdata":
        el.text = head + CDATA_OPEN + tail + CDATA_CLOSE
        return
    node = etree.ProcessingInstruction("p", "x") if how == "pi" else etree.Comment(" x ")
    el.text = head or None
    node.tail = (CDATA_OPEN + tail + CDATA_CLOSE) if how == "comment+cdata" else (tail or None)
    el.insert(0, node)


def with_cdata(data: bytes) -> bytes:
    return data.replace(CDATA_OPEN.encode(), b"<![CDATA[").replace(CDATA_CLOSE.encode(), b"]]>")


def m_split_value(root: etree._Element, draw: Any) -> None:
    """A value (any element's text, the Signature's base64 values included) split by a comment, CDATA or a PI:
    what C14N signs and what the verifiers read must stay the same thing."""
    el = _pick(draw, [el for el in root.iter("*") if el.text and el.text.strip()
                      and not set(el.text) & set("&<>\r" + CDATA_OPEN + CDATA_CLOSE)])
    split_text(el, draw(st.integers(0, len(el.text or ""))), draw(st.sampled_from(SPLITS)))


MUTATIONS = [m_text, m_text_anywhere, m_attr_set, m_attr_delete, m_delete, m_duplicate, m_rename, m_move_signature,
             m_algorithm, m_transforms, m_whitespace, m_comment, m_pi, m_top_level_pi, m_split_value]


@st.composite
def mutated(draw: Any, bases: list[bytes]) -> bytes:
    data = draw(st.sampled_from(bases))
    if draw(st.integers(0, 9)) == 0:  # raw byte flips: malformed XML, encoding errors, text changes
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            buf[draw(st.integers(0, len(buf) - 1))] ^= draw(st.integers(1, 255))
        return bytes(buf)
    if draw(st.integers(0, 9)) == 0:  # namespace declarations and xml:* attributes, which c14n treats specially
        where = draw(st.sampled_from([b"<edXML ", b"<edXMLHeader>", b"<ds:Signature ", b"<ds:SignedInfo>",
                                      b"<ds:KeyInfo>", b"<Subject>"]))
        extra = draw(st.sampled_from([b' xmlns:zz="urn:zz"', b' xml:lang="vi"', b' xmlns:ds="http://www.w3.org/2000/09/xmldsig#"',
                                      b' xmlns="urn:other"', b' xml:space="preserve"', b' xmlns:rel="relative"']))
        tail = b" " if where.endswith(b" ") else b">"
        data = data.replace(where, where[:-1] + extra + tail, 1)
    try:
        root = etree.fromstring(data)
    except etree.XMLSyntaxError:  # e.g. a redefined xmlns: judged as it is
        return data
    for _ in range(draw(st.integers(0, 3))):
        with contextlib.suppress(_Nothing):
            draw(st.sampled_from(MUTATIONS))(root, draw)
    return with_cdata(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))


DISAGREEMENTS: list[tuple[str, str, bytes]] = []


@settings(
    max_examples=int(os.environ.get("AXIS_DIFF_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)
@given(data=st.data())
def test_fast_path_and_reference_agree(kit: Kit, data: st.DataObject) -> None:
    doc = data.draw(mutated(kit.bases))
    fast = outcome(kit.fast.verify, doc)
    ref = outcome(kit.reference.verify, doc)
    event(fast.split(":")[0])
    assert fast == ref, f"fast={fast} reference={ref}\n{doc.decode(errors='replace')[:3000]}"


def test_unmutated_bases_are_accepted_by_both(kit: Kit) -> None:
    for doc, signer in zip(kit.bases, [A, B], strict=True):
        assert outcome(kit.fast.verify, doc) == outcome(kit.reference.verify, doc) == f"ok:{signer}"


def test_whitespace_and_comments_in_signature_keep_it_valid(kit: Kit) -> None:
    """Mutations that do not change the canonical form are accepted by both (not only rejections agree)."""
    root = etree.fromstring(kit.bases[0])
    key_info = next(root.iter(q("KeyInfo")))
    key_info.text = "\n   "
    next(root.iter(q("SignedInfo"))).insert(0, etree.Comment("c14n drops comments"))
    doc = etree.tostring(root)
    assert outcome(kit.fast.verify, doc) == outcome(kit.reference.verify, doc) == f"ok:{A}"


def test_verifier_instances_are_independent_of_examples(kit: Kit) -> None:
    assert isinstance(kit.fast, Verifier)
    assert outcome(kit.fast.verify, kit.bases[1]) == f"ok:{B}"


def test_corrupt_certificates_are_refusals_in_both(kit: Kit) -> None:
    """cryptography parses certificates lazily: every corrupt byte must still end in the same Refusal."""
    root = etree.fromstring(kit.bases[0])
    cert_el = _first(root, q("X509Certificate"))
    der = base64.b64decode(cert_el.text or "")
    for pos in range(0, len(der), 3):
        bad = bytearray(der)
        bad[pos] ^= 0x5A
        cert_el.text = base64.b64encode(bytes(bad)).decode()
        doc = etree.tostring(root)
        fast, ref = outcome(kit.fast.verify, doc), outcome(kit.reference.verify, doc)
        assert fast == ref, f"byte {pos}: fast={fast} reference={ref}"
        assert not fast.startswith("ok")


def _message(verify: Callable[[bytes], Any], data: bytes) -> object:
    try:
        return verify(data).message
    except Refusal as refusal:
        return refusal.reason.value


@pytest.mark.parametrize("how", SPLITS)
def test_every_value_split_by_a_comment_cdata_or_pi(kit: Kit, how: str) -> None:
    """Every value of a signed envelope (header, body, attachments and the Signature's own base64 values), split
    after signing: a comment or CDATA section changes nothing C14N signs, so both verifiers accept and read the
    very same message as from the untouched envelope; a PI is refused by both (XML_FORBIDDEN)."""
    base = kit.bases[0]
    want_fast, want_ref = _message(kit.fast.verify, base), _message(kit.reference.verify, base)
    assert want_fast == want_ref and not isinstance(want_fast, str)
    count = len([el for el in etree.fromstring(base).iter("*") if el.text and el.text.strip()])
    wrong = {}
    for i in range(count):
        root = etree.fromstring(base)
        el = [el for el in root.iter("*") if el.text and el.text.strip()][i]
        name = etree.QName(el).localname
        split_text(el, len(el.text or "") // 2, how)
        doc = with_cdata(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))
        fast, ref = _message(kit.fast.verify, doc), _message(kit.reference.verify, doc)
        expected = "XML_FORBIDDEN" if how == "pi" else want_fast
        if not fast == ref == expected:
            wrong[f"{i}:{name}"] = (fast if isinstance(fast, str) else "read differently",
                                    ref if isinstance(ref, str) else "read differently")
    assert count > 30
    assert not wrong, wrong
