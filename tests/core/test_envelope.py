"""axis.core.envelope: exact round trips (hypothesis), constructors, refusals of unusable input."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axis.core import envelope as env
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
from axis.core.xmlsafe import parse_untrusted

# Text that XML 1.0 can carry, Vietnamese included (no control characters, no surrogates).
VIET = "ăâđêôơưàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵĐ"
text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
        st.sampled_from(list(VIET + "&<>\"' \t\n\r")),
    ),
    max_size=30,
)
code = st.from_regex(r"\A[0-9A-Z]{1,3}(\.[0-9A-Z]{1,3}){0,3}\Z")
small = st.lists(text, max_size=3).map(tuple)

orgs = st.builds(Organization, code, text, text, text, text, text, text, text)
staff = st.builds(StaffInfo, text, text, text, text)
response_for = st.builds(ResponseFor, code, text.filter(bool), text, text)
attachments = st.lists(st.builds(Attachment, st.just(""), text, st.binary(max_size=200), text, text), max_size=3).map(
    lambda xs: tuple(Attachment(f"cid:{i}", a.name, a.data, a.content_type, a.description) for i, a in enumerate(xs))
)
business = st.builds(
    Business,
    st.integers(0, 3),
    text,
    text,
    text,
    st.lists(st.builds(ReplacementInfo, text, st.lists(code, max_size=3).map(tuple)), max_size=2).map(tuple),
    st.none() | st.builds(BusinessDocumentInfo, text, text, st.lists(st.builds(Receiver, code, text)).map(tuple)),
    staff,
)
documents = st.builds(
    DocumentMessage,
    sender=orgs,
    recipients=st.lists(orgs, min_size=1, max_size=3).map(tuple),
    document_id=text.filter(lambda s: s.strip() != ""),
    subject=text,
    content=text,
    code_number=text,
    code_notation=text,
    promulgation_place=text,
    promulgation_date=text,
    document_type=st.builds(DocumentType, text, text, text),
    signer_info=st.builds(SignerInfo, text, text, text),
    due_date=text,
    other_info=st.builds(OtherInfo, text, text, text, text, text, text, small),
    steering_type=text,
    to_places=small,
    response_for=st.none() | response_for,
    application_type=text,
    trace_headers=st.lists(st.builds(TraceHeader, text, text), max_size=2).map(tuple),
    business=business,
    attachments=attachments,
)
statuses = st.builds(StatusMessage, orgs, response_for, st.sampled_from(sorted(env.STATUS_CODES)), text, text, staff)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_document_round_trip(msg: DocumentMessage) -> None:
    data = env.build(msg)
    assert env.parse(data) == msg
    assert env.build(msg) == data  # deterministic


@settings(max_examples=100, deadline=None)
@given(statuses)
def test_status_round_trip(msg: StatusMessage) -> None:
    assert env.parse(env.build(msg)) == msg


def test_status_layout_is_pinned() -> None:
    """A status's bytes are pinned: a redelivered delivery re-sends a status 01 that must be identical to the
    first, whatever writes it."""
    rf = env.ResponseFor(organ_id="000.00.00.H53", document_id="d<1>", code="1/QĐ", promulgation_date="")
    minimal = env.new_status("000.00.00.G01", rf, "01", timestamp="2019-01-01T00:00:00Z")
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">\n'
            '  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">\n'
            "    <edXML:edXMLHeader>\n      <edXML:MessageHeader>\n"
            "        <edXML:From>\n          <edXML:OrganId>000.00.00.G01</edXML:OrganId>\n")
    tail = "      </edXML:MessageHeader>\n    </edXML:edXMLHeader>\n  </edXML:edXMLEnvelope>\n</edXML>\n"
    answer = ("        <edXML:ResponseFor>\n          <edXML:OrganId>000.00.00.H53</edXML:OrganId>\n"
              "          <edXML:Code>1/QĐ</edXML:Code>\n          <edXML:DocumentId>d&lt;1&gt;</edXML:DocumentId>\n"
              "        </edXML:ResponseFor>\n")
    assert env.build(minimal).decode() == (
        head + "        </edXML:From>\n" + answer + "        <edXML:StatusCode>01</edXML:StatusCode>\n"
        "        <edXML:Timestamp>2019-01-01T00:00:00Z</edXML:Timestamp>\n" + tail)
    full = env.new_status(Organization("000.00.00.G01", organ_name="Sở & Ban", fax="1"), rf, "03", "r\r",
                          "2019-01-01T00:00:00Z", staff_info=StaffInfo(staff="A", mobile="0"))
    assert env.build(full).decode() == (
        head + "          <edXML:OrganName>Sở &amp; Ban</edXML:OrganName>\n          <edXML:Fax>1</edXML:Fax>\n"
        "        </edXML:From>\n" + answer + "        <edXML:StaffInfo>\n          <edXML:Staff>A</edXML:Staff>\n"
        "          <edXML:Mobile>0</edXML:Mobile>\n        </edXML:StaffInfo>\n"
        "        <edXML:StatusCode>03</edXML:StatusCode>\n        <edXML:Description>r&#13;</edXML:Description>\n"
        "        <edXML:Timestamp>2019-01-01T00:00:00Z</edXML:Timestamp>\n" + tail)
    assert env.parse(env.build(full)) == full
    with pytest.raises(ValueError):
        env.build(dataclasses.replace(full, description="bad \x01"))


def test_build_layout_matches_samples() -> None:
    msg = env.new_document(
        "000.00.00.G22",
        ["000.00.00.H41"],
        "Thử",
        date="2024/01/02",
        timestamp="2024/01/02 03:04:05",
        attachments=[Attachment("cid:1", "a.txt", b"hi", "text/plain")],
    )
    data = env.build(msg).decode()
    assert data.startswith(
        '<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
    )
    assert '<edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">' in data
    assert "<edXML:ContentId>cid:1</edXML:ContentId>" in data  # manifest
    assert "<AttachmentEncoded>" in data and "<ContentTransferEncoded>aGk=</ContentTransferEncoded>" in data
    assert "<edXML:BussinessDocType>0</edXML:BussinessDocType>" in data


def test_build_refuses_text_xml_cannot_carry() -> None:
    msg = env.new_document("000.00.00.G22", ["000.00.00.H41"], "bad \x01 char")
    with pytest.raises(ValueError):
        env.build(msg)


def test_new_document_defaults() -> None:
    msg = env.new_document(
        "000.00.00.G22",
        ["000.00.00.H41", "H55.242"],
        "V/v kết nối",
        number="7816",
        notation="VPCP-TTĐT",
        date="2015/09/30",
    )
    assert msg.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert msg.sender.organ_id == "000.00.00.G22"
    assert [r.organ_id for r in msg.recipients] == ["000.00.00.H41", "H55.242"]
    assert msg.business.doc_type == 0 and env.message_kind(msg) == "edoc"
    assert msg.trace_headers[0].organ_id == "000.00.00.G22"
    other = env.new_document("000.00.00.G22", ["000.00.00.H41"], "x")
    assert other.document_id != env.new_document("000.00.00.G22", ["000.00.00.H41"], "x").document_id


@pytest.mark.parametrize(("kind", "n"), [("revocation", 1), ("update", 2), ("replacement", 3)])
def test_new_document_related_kinds(kind: str, n: int) -> None:
    msg = env.new_document("000.00.00.G22", ["000.00.00.H41"], "x", doc_type=kind, related_document_id="D1")
    assert msg.business.doc_type == n and msg.business.document_id == "D1"
    assert env.message_kind(msg) == kind
    if kind == "replacement":
        assert msg.business.replacement_info == (ReplacementInfo("D1", ("000.00.00.H41",)),)
    assert env.parse(env.build(msg)) == msg


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sender": "g22", "recipients": ["000.00.00.H41"]},
        {"sender": "000.00.00.G22", "recipients": []},
        {"sender": "000.00.00.G22", "recipients": ["000..H41"]},
        {"sender": "000.00.00.G22", "recipients": ["A" * 36]},
        {"sender": "000.00.00.G22", "recipients": ["000.00.00.H41"], "doc_type": 1},
        {"sender": "000.00.00.G22", "recipients": ["000.00.00.H41"], "doc_type": 7, "related_document_id": "x"},
    ],
)
def test_new_document_rejects_bad_input(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        env.new_document(subject="s", **kwargs)


def test_agency_codes() -> None:
    for good in ("000.00.00.G22", "28.22.H17", "000.00.13.H53", "H55.242", "G01"):
        assert env.is_agency_code(good)
    for bad in ("", "000.00.00.g22", ".H41", "H41.", "H 41", "A" * 36, "H41,1"):
        assert not env.is_agency_code(bad)


def test_new_status_from_document() -> None:
    doc = env.new_document("000.00.00.G22", ["000.00.00.H41"], "x", number="12", notation="VP", date="2024/05/06")
    status = env.new_status("000.00.00.H41", doc, "03", "Đã tiếp nhận", timestamp="2024/05/06 10:00:00")
    assert status.response_for == ResponseFor("000.00.00.G22", doc.document_id, "12/VP", "2024/05/06")
    assert status.status_code == "03" and status.timestamp == "2024/05/06 10:00:00"
    assert env.message_kind(status) == "status"
    assert env.parse(env.build(status)) == status
    with pytest.raises(ValueError):
        env.new_status("000.00.00.H41", doc, "99")


def test_attachment_from_file(tmp_path: Path) -> None:
    p = tmp_path / "Quyết định.pdf"
    p.write_bytes(b"%PDF-1.4 data")
    a = env.attachment_from_file(p)
    assert a.name == "Quyết định.pdf" and a.content_type == "application/pdf" and a.data == b"%PDF-1.4 data"
    assert a.content_id.startswith("cid:")
    msg = env.new_document("000.00.00.G22", ["000.00.00.H41"], "x", attachments=[p])
    assert env.parse(env.build(msg)).attachments[0].data == b"%PDF-1.4 data"


def test_from_element_uses_given_root() -> None:
    msg = env.new_document("000.00.00.G22", ["000.00.00.H41"], "x")
    root = parse_untrusted(env.build(msg))
    assert env.from_element(root) == msg


def _doc_bytes(**kw) -> bytes:
    return env.build(env.new_document("000.00.00.G22", ["000.00.00.H41"], "x", **kw))


@pytest.mark.parametrize(
    ("old", "new", "reason", "fragment"),
    [
        (b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>\n", b"", Reason.SCHEMA_INVALID, "From has no OrganId"),
        (b"edXML:To>", b"edXML:Cc>", Reason.SCHEMA_INVALID, "no To"),
        (b"edXMLHeader>", b"Header>", Reason.SCHEMA_INVALID, "no edXMLHeader"),
        (b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>9<", Reason.SCHEMA_INVALID, "BussinessDocType"),
        (b"aGVsbG8=", b"aGVsbG8=!!", Reason.XML_MALFORMED, "not valid base64"),
        (b"<ContentId>cid:1</ContentId>", b"<ContentId>cid:2</ContentId>", Reason.SCHEMA_INVALID, "not listed"),
        (
            b"<edXML:ContentId>cid:1</edXML:ContentId>",
            b"<edXML:ContentId>cid:9</edXML:ContentId>",
            Reason.SCHEMA_INVALID,
            "not listed",
        ),
    ],
)
def test_unusable_input_is_refused(old: bytes, new: bytes, reason: Reason, fragment: str) -> None:
    data = _doc_bytes(attachments=[Attachment("cid:1", "a.txt", b"hello", "text/plain")])
    assert old in data
    with pytest.raises(Refusal) as exc:
        env.parse(data.replace(old, new))
    assert exc.value.reason is reason
    assert fragment in exc.value.detail


def test_manifest_entry_without_attachment() -> None:
    data = _doc_bytes(attachments=[Attachment("cid:1", "a.txt", b"hello", "text/plain")])
    start, end = data.index(b"<AttachmentEncoded>"), data.index(b"</AttachmentEncoded>") + len(b"</AttachmentEncoded>")
    with pytest.raises(Refusal) as exc:
        env.parse(data[:start] + data[end:])
    assert exc.value.reason is Reason.SCHEMA_INVALID and "cid:1" in exc.value.detail


def test_wrong_root_and_status_without_response_for() -> None:
    with pytest.raises(Refusal) as exc:
        env.parse(b"<html/>")
    assert exc.value.reason is Reason.SCHEMA_INVALID
    status = env.build(env.new_status("000.00.00.H41", ResponseFor("000.00.00.G22", "D"), "01"))
    start = status.index(b"<edXML:ResponseFor>")
    end = status.index(b"</edXML:ResponseFor>") + len(b"</edXML:ResponseFor>")
    with pytest.raises(Refusal) as exc:
        env.parse(status[:start] + status[end:])
    assert exc.value.reason is Reason.SCHEMA_INVALID and "ResponseFor" in exc.value.detail


HOSTILE = [
    b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY x "y">]><edXML>&x;</edXML>',
    b'<?xml version="1.0"?><!DOCTYPE edXML SYSTEM "http://127.0.0.1:1/x.dtd"><edXML/>',
    b'<!DOCTYPE lolz [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&b;</edXML>',
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><edXML>&e;</edXML>',
]


@pytest.mark.parametrize("data", HOSTILE)
def test_hostile_xml_is_forbidden(data: bytes) -> None:
    with pytest.raises(Refusal) as exc:
        env.parse(data)
    assert exc.value.reason is Reason.XML_FORBIDDEN


def test_size_limit_and_malformed() -> None:
    data = _doc_bytes()
    with pytest.raises(Refusal) as exc:
        env.parse(data, max_bytes=100)
    assert exc.value.reason is Reason.TOO_LARGE
    with pytest.raises(Refusal) as exc:
        env.parse(data[:-20])
    assert exc.value.reason is Reason.XML_MALFORMED


def test_base64_with_line_breaks_is_accepted() -> None:
    payload = bytes(range(256)) * 4
    b64 = base64.encodebytes(payload)  # MIME style, wrapped every 76 characters
    data = _doc_bytes(attachments=[Attachment("cid:1", "b.bin", payload)])
    data = data.replace(base64.b64encode(payload), b64)
    assert env.parse(data).attachments[0].data == payload


def test_attachment_repr_is_short() -> None:
    assert "size=1000000" in repr(Attachment("cid:1", "big", b"\0" * 1_000_000))


def test_header_only_model_skips_the_attachments() -> None:
    msg = env.new_document("000.00.00.G22", ["000.00.00.H41"], "x",
                           attachments=[Attachment("cid:1", "a.txt", b"hi", "text/plain")])
    root = parse_untrusted(env.build(msg))
    full, header = env.from_element(root), env.from_element(root, attachments=False)
    assert isinstance(full, env.DocumentMessage) and isinstance(header, env.DocumentMessage)
    assert [a.data for a in full.attachments] == [b"hi"] and header.attachments == ()
    assert header == dataclasses.replace(full, attachments=())


# ---- comments, CDATA and PIs inside values: the model reads what exclusive C14N signs ------------------------------


def _split_values(data: bytes, draw: st.DrawFn, node: str) -> tuple[bytes, int]:
    """Every non-empty leaf value of ``data`` split at a drawn point by a comment (or, for ``node="pi"``, one
    value split by a processing instruction). Returns the bytes and how many values were split."""
    from lxml import etree

    root = etree.fromstring(data, etree.XMLParser(remove_comments=False, remove_pis=False))
    values = [el for el in root.iter("*") if len(el) == 0 and el.text]
    if node == "pi":
        values = [values[draw(st.integers(0, len(values) - 1))]]
    for el in values:
        k = draw(st.integers(0, len(el.text)))
        head, tail = el.text[:k], el.text[k:]
        split = etree.ProcessingInstruction("p", "x") if node == "pi" else etree.Comment(" x ")
        el.text, split.tail = head or None, tail or None
        el.insert(0, split)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"), len(values)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, statuses), st.data())
def test_comments_inside_values_do_not_change_what_is_read(msg: env.Message, data: st.DataObject) -> None:
    """Exclusive C14N without comments signs the text around a comment as one value: parse must read that."""
    split, n = _split_values(env.build(msg), data.draw, "comment")
    assert n and split.count(b"<!-- x -->") == n
    assert env.parse(split) == msg
    if isinstance(msg, DocumentMessage):
        assert env.document_head(split) == dataclasses.replace(
            msg, attachments=(), trace_headers=(), business=Business())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, statuses), st.data())
def test_a_processing_instruction_inside_a_value_is_forbidden(msg: env.Message, data: st.DataObject) -> None:
    """A PI is signed (C14N keeps it) and would split the value: refused before anything reads the document."""
    split, _ = _split_values(env.build(msg), data.draw, "pi")
    with pytest.raises(Refusal) as exc:
        env.parse(split)
    assert exc.value.reason is Reason.XML_FORBIDDEN and "processing instruction" in exc.value.detail


@pytest.mark.parametrize("written", [
    "000.00.00.G22",  # unchanged
    "000.00.00<!-- x -->.G22",
    "<!---->000.00.00.G22",
    "000.00.00<![CDATA[.G22]]>",
    "000.<!-- a -->00.00<!-- b --><![CDATA[.G]]>22<!-- c -->",
])
def test_sender_organ_id_is_read_whole(written: str) -> None:
    data = _doc_bytes()
    old = b">000.00.00.G22</edXML:OrganId>"
    assert old in data
    msg = env.parse(data.replace(old, f">{written}</edXML:OrganId>".encode(), 1))
    assert msg.sender.organ_id == "000.00.00.G22"
