"""Comment truncation (the class of CVE-2017-11427/11428/11429): what the axis reads is what was signed.

Exclusive C14N without comments (the signing profile) drops comments, so ``<OrganId>000.00.00.G23<!-- x -->.1
</OrganId>`` is signed as "000.00.00.G23.1". Reading only the first text node (lxml's ``el.text``) would give
"000.00.00.G23": a sender, recipient or DocumentId other than the one the signature covers. The rule
(:mod:`axis.core.xmlsafe`): the hardened parser drops comments, so adjacent text nodes merge into the signed value;
CDATA sections merge into the text as well; a processing instruction inside the root element (which C14N does
sign, and which would split the value) is refused with XML_FORBIDDEN.

Every leaf value of a fully populated document and status is split by a comment, a CDATA section, both, or a PI,
then read through ``envelope.parse``, ``envelope.document_head`` and (signed) both verifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from lxml import etree

from axis.core import envelope as env
from axis.core import signing
from axis.core.envelope import (
    Attachment,
    Business,
    BusinessDocumentInfo,
    DocumentMessage,
    DocumentType,
    Organization,
    OtherInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusMessage,
    TraceHeader,
)
from axis.core.reasons import Reason, Refusal
from tests.support.testing import TestPKI, make_pki
from tests.support.verify_reference import ReferenceVerifier

A, B, C = "000.00.00.G22", "000.00.00.H41", "000.00.00.G01"
G23 = "000.00.00.G23"


def _org(code: str, n: int) -> Organization:
    return Organization(code, f"Phụ trách {n}", f"Cơ quan số {n}", f"Số {n} Hoàng Hoa Thám, Hà Nội",
                        f"vanthu{n}@example.gov.vn", f"024 3823 000{n}", f"024 3823 111{n}", f"https://cq{n}.gov.vn")


def _staff(n: int) -> StaffInfo:
    return StaffInfo(f"Phòng {n}", f"Chuyên viên {n}", f"cv{n}@example.gov.vn", f"09120000{n}{n}")


#: Every field the model reads, set (a replacement document: Bussiness carries everything).
FULL_DOCUMENT = DocumentMessage(
    sender=_org(A, 1),
    recipients=(_org(B, 2), _org(C, 3)),
    document_id=f"{A},2019/03/12,12/VPCP-TTĐT",
    subject="Về việc thử nghiệm trục liên thông",
    content="Nội dung văn bản thử nghiệm",
    code_number="12",
    code_notation="VPCP-TTĐT",
    promulgation_place="Hà Nội",
    promulgation_date="2019/03/12",
    document_type=DocumentType("1", "2", "Công văn"),
    signer_info=SignerInfo("KT. BỘ TRƯỞNG", "THỨ TRƯỞNG", "Nguyễn Văn A"),
    due_date="2019/04/01",
    other_info=OtherInfo("1", "2", "NVA", "10", "3", "0", ("Phụ lục I", "Phụ lục II")),
    steering_type="1",
    to_places=("Bộ Nội vụ", "UBND tỉnh Tây Ninh"),
    response_for=ResponseFor(B, f"{B},2019/03/01,3/BNV", "3/BNV", "2019/03/01"),
    application_type="1",
    trace_headers=(TraceHeader(A, "2019/03/12 08:00:00"), TraceHeader(B, "2019/03/12 08:05:00")),
    business=Business(
        doc_type=3,
        document_id=f"{A},2019/03/01,7/VPCP",
        reason="Thay thế văn bản sai sót",
        paper="1",
        replacement_info=(ReplacementInfo(f"{A},2019/03/01,7/VPCP", (B, C)),),
        document_info=BusinessDocumentInfo("Thông tin văn bản", "Nơi nhận văn bản", (Receiver(B, "1"),
                                                                                       Receiver(C, "2"))),
        staff_info=_staff(1),
    ),
    attachments=(
        Attachment("cid:1", "vanban.pdf", bytes(range(200)), "application/pdf", "Văn bản chính"),
        Attachment("cid:2", "phuluc.docx", b"phu luc" * 40, "application/msword", "Phụ lục"),
    ),
)

FULL_STATUS = StatusMessage(
    sender=_org(B, 2),
    response_for=ResponseFor(A, f"{A},2019/03/12,12/VPCP-TTĐT", "12/VPCP-TTĐT", "2019/03/12"),
    status_code="03",
    description="Đã tiếp nhận văn bản",
    timestamp="2019/03/12 09:00:00",
    staff_info=_staff(2),
)

MESSAGES = {"document": FULL_DOCUMENT, "status": FULL_STATUS}
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # private-use characters, turned into CDATA delimiters in the bytes
VARIANTS = ("comment", "cdata", "comment+cdata", "comment-first", "pi")


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _path(el: etree._Element) -> str:
    parts = []
    while el is not None:
        parent = el.getparent()
        name = _local(el)
        if parent is not None:
            same = [s for s in parent if s.tag == el.tag]
            if len(same) > 1:
                name += f"[{same.index(el) + 1}]"
        parts.append(name)
        el = parent
    return "/".join(reversed(parts[:-1]))  # without the root


def _keeping_parser() -> etree.XMLParser:
    """A parser that keeps comments and PIs: for building the hostile variants only."""
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=False, remove_pis=False)


def leaves(data: bytes) -> list[str]:
    """Paths of every element with non-whitespace text and no child element (the values the model reads)."""
    root = etree.fromstring(data, _keeping_parser())
    return [_path(el) for el in root.iter("*")
            if len(el) == 0 and el.text and el.text.strip() and etree.QName(el).namespace == env.NS]


def _find(root: etree._Element, path: str) -> etree._Element:
    for el in root.iter("*"):
        if _path(el) == path:
            return el
    raise KeyError(path)


def split_value(data: bytes, path: str, variant: str) -> bytes:
    """``data`` with the text of the element at ``path`` split in two by ``variant``:

    - comment: ``hea<!-- x -->d``; comment-first: ``<!-- x -->head``
    - cdata: ``hea<![CDATA[d]]>``; comment+cdata: ``hea<!-- x --><![CDATA[d]]>``
    - pi: ``hea<?p x?>d``
    """
    root = etree.fromstring(data, _keeping_parser())
    el = _find(root, path)
    text = el.text or ""
    k = 0 if variant == "comment-first" else len(text) // 2
    head, tail = text[:k], text[k:]
    if variant in ("comment", "comment-first", "pi"):
        node = etree.ProcessingInstruction("p", "x") if variant == "pi" else etree.Comment(" x ")
        el.text = head or None
        node.tail = tail
        el.insert(0, node)
    elif variant == "cdata":
        el.text = head + _MARK_OPEN + tail + _MARK_CLOSE
    elif variant == "comment+cdata":
        el.text = head
        node = etree.Comment(" x ")
        node.tail = _MARK_OPEN + tail + _MARK_CLOSE
        el.insert(0, node)
    else:
        raise ValueError(variant)
    if "cdata" in variant:
        assert not set(tail) & set("&<>\r"), "a CDATA section would not carry this text as serialized"
    out = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    return out.replace(_MARK_OPEN.encode(), b"<![CDATA[").replace(_MARK_CLOSE.encode(), b"]]>")


def _cases() -> Iterator[tuple[str, str, str]]:
    for kind, msg in MESSAGES.items():
        for path in leaves(env.build(msg)):
            for variant in VARIANTS:
                yield kind, path, variant


CASES = list(_cases())


def _id(case: tuple[str, str, str]) -> str:
    return "-".join(case)


def test_the_cases_cover_every_field_the_model_reads() -> None:
    paths = {(kind, path) for kind, path, _ in CASES}
    for wanted in ("MessageHeader/From/OrganId", "MessageHeader/To[1]/OrganId", "MessageHeader/To[2]/OrganId",
                   "MessageHeader/DocumentId", "MessageHeader/ResponseFor/DocumentId", "MessageHeader/Subject",
                   "TraceHeaderList/Bussiness/DocumentId", "TraceHeaderList/Bussiness/BussinessDocType",
                   "edXMLManifest/Reference[1]/ContentId"):
        assert any(kind == "document" and path.endswith(wanted) for kind, path in paths), wanted
    for wanted in ("MessageHeader/From/OrganId", "MessageHeader/ResponseFor/OrganId",
                   "MessageHeader/ResponseFor/DocumentId", "MessageHeader/StatusCode"):
        assert any(kind == "status" and path.endswith(wanted) for kind, path in paths), wanted
    assert any(path.startswith("AttachmentEncoded/Attachment[2]/ContentId") for _, path in paths)
    assert len(paths) > 80
    # The built messages hold every field: parse(build(m)) == m.
    for msg in MESSAGES.values():
        assert env.parse(env.build(msg)) == msg


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_parse_reads_the_joined_value_or_refuses_a_pi(case: tuple[str, str, str]) -> None:
    kind, path, variant = case
    data = split_value(env.build(MESSAGES[kind]), path, variant)
    if variant == "pi":
        with pytest.raises(Refusal) as info:
            env.parse(data)
        assert info.value.reason is Reason.XML_FORBIDDEN
        return
    assert env.parse(data) == MESSAGES[kind]


HEAD_CASES = [c for c in CASES if c[0] == "document" and "/MessageHeader/" in c[1]]


@pytest.mark.parametrize("case", HEAD_CASES, ids=_id)
def test_document_head_reads_the_joined_value_or_refuses_a_pi(case: tuple[str, str, str]) -> None:
    _, path, variant = case
    clean = env.build(FULL_DOCUMENT)
    data = split_value(clean, path, variant)
    if variant == "pi":
        with pytest.raises(Refusal) as info:
            env.document_head(data)
        assert info.value.reason is Reason.XML_FORBIDDEN
        return
    assert env.document_head(data) == env.document_head(clean)


def rewrite(data: bytes, value: str, written: str, count: int = 1) -> bytes:
    """``data`` with the first ``count`` element values ``value`` written as ``written`` (markup allowed)."""
    old = f">{value}</".encode()
    assert data.count(old) >= count, value
    return data.replace(old, f">{written}</".encode(), count)


def test_the_examples_of_the_finding() -> None:
    data = env.build(FULL_DOCUMENT)
    forged = rewrite(data, A, f"{A}<!-- -->.1")
    msg = env.parse(forged)
    assert isinstance(msg, DocumentMessage)
    assert msg.sender.organ_id == A + ".1"  # what C14N (and so the signature) says, not A
    doc_id = FULL_DOCUMENT.document_id
    replayed = rewrite(data, doc_id, doc_id[:10] + "<!--new-->" + doc_id[10:])
    assert env.parse(replayed).document_id == FULL_DOCUMENT.document_id  # the duplicate stays a duplicate


# ---- end to end, with real signatures ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["rsa", "ec"])
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [A, B, C, G23], algorithm=request.param)


def sign_as_written(pki: TestPKI, data: bytes, code: str) -> bytes:
    """Sign ``data`` with its comments and PIs in place (the axis's own signer parses through the hardened
    parser, which drops comments): what another agency's software may well send."""
    with mock.patch.object(signing, "parse_untrusted", lambda d, **_: etree.fromstring(d, _keeping_parser())):
        return signing.sign(data, pki.key(code), pki.cert(code))


def _verifiers(pki: TestPKI) -> dict[str, Callable[[bytes], object]]:
    return {"fast": pki.verifier().verify, "reference": ReferenceVerifier(pki.policy()).verify}


def _doc(sender: str, to: tuple[str, ...] = (B,)) -> DocumentMessage:
    return env.new_document(sender, list(to), "Về việc thử nghiệm", number="12", notation="VPCP",
                            date="2019-03-12", attachments=[Attachment("cid:1", "a.pdf", b"%PDF-1.4 test")])


def test_signed_sender_split_by_a_comment_is_read_whole(pki: TestPKI) -> None:
    """The comment is present when signing; the signature stays valid (C14N drops it); the axis reads the whole
    OrganId, so the signer = sender check compares the value the signature covers."""
    data = env.build(_doc(A))
    signed = sign_as_written(pki, rewrite(data, A, "000.00.00<!-- x -->.G22"), A)
    assert b">000.00.00<!-- x -->.G22</" in signed
    for name, verify in _verifiers(pki).items():
        verified = verify(signed)
        assert verified.signer == A, name  # type: ignore[attr-defined]
        assert verified.message.sender.organ_id == A, name  # type: ignore[attr-defined]


def test_a_comment_cannot_make_the_axis_read_another_sender(pki: TestPKI) -> None:
    """G23 signs a document whose From/OrganId is "000.00.00.G23.1" as signed (and as every recipient's software
    that joins text reads it); reading "000.00.00.G23" would let G23 pass as someone else."""
    data = env.build(_doc(G23))
    signed = sign_as_written(pki, rewrite(data, G23, f"{G23}<!-- x -->.1"), G23)
    for name, verify in _verifiers(pki).items():
        with pytest.raises(Refusal) as info:
            verify(signed)
        assert info.value.reason is Reason.SIGNER_MISMATCH, name
        assert "000.00.00.G23.1" in info.value.detail, name


def test_a_comment_in_a_signed_document_id_does_not_make_a_replay_look_new(pki: TestPKI) -> None:
    msg = _doc(A)
    signed = pki.sign(env.build(msg), A)
    doc_id = msg.document_id
    replay = rewrite(signed, doc_id, doc_id[:14] + "<!-- replay -->" + doc_id[14:])
    for name, verify in _verifiers(pki).items():
        original, again = verify(signed), verify(replay)  # the signature is still valid
        assert again.message.document_id == original.message.document_id == msg.document_id, name  # type: ignore


def test_a_comment_in_a_signed_recipient_code_keeps_the_recipient(pki: TestPKI) -> None:
    msg = _doc(A, (B, C))
    signed = pki.sign(env.build(msg), A)
    split = rewrite(signed, C, "000.00.00.G0<!--x-->1")
    for name, verify in _verifiers(pki).items():
        got = verify(split).message  # type: ignore[attr-defined]
        assert [r.organ_id for r in got.recipients] == [B, C], name


def test_a_signed_pi_inside_a_value_is_refused(pki: TestPKI) -> None:
    """A PI is part of the C14N output, so it is signed; it is refused before anything reads the value."""
    data = env.build(_doc(A))
    signed = sign_as_written(pki, rewrite(data, A, "000.00.00.G22<?p x?>"), A)
    for name, verify in _verifiers(pki).items():
        with pytest.raises(Refusal) as info:
            verify(signed)
        assert info.value.reason is Reason.XML_FORBIDDEN, name


def test_signed_status_with_comments_everywhere_reads_the_signed_values(pki: TestPKI) -> None:
    data = env.build(FULL_STATUS)
    for path in leaves(data):
        data = split_value(data, path, "comment+cdata")
    assert data.count(b"<!-- x -->") == len(leaves(env.build(FULL_STATUS)))
    signed = sign_as_written(pki, data, B)
    for name, verify in _verifiers(pki).items():
        verified = verify(signed)
        assert verified.message == FULL_STATUS, name  # type: ignore[attr-defined]


def test_cli_inspect_reads_the_signed_values(pki: TestPKI, tmp_path: Path) -> None:
    """The CLI reads through the same parser (``axis envelope inspect --json``)."""
    import json
    import subprocess
    import sys

    msg = _doc(A)
    data = rewrite(env.build(msg), A, "000.00.00<!-- x -->.G22")
    path = tmp_path / "doc.edxml"
    path.write_bytes(sign_as_written(pki, data, A))
    out = subprocess.run([sys.executable, "-m", "axis", "envelope", "inspect", str(path), "--json"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["sender"]["organ_id"] == A
    assert info["document_id"] == msg.document_id
