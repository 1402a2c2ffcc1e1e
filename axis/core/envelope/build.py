"""``build(msg) -> bytes``: unsigned, deterministic UTF-8 edXML laid out like the real samples.

The root ``edXML`` binds the edXML namespace as default; the envelope binds it again as prefix ``edXML`` and
its descendants use the prefix; ``AttachmentEncoded`` (outside the envelope) is unprefixed. Empty text fields
and all-empty records are omitted. The output is written as text (no tree), which is both deterministic and
fast; every value is escaped, and characters XML 1.0 cannot carry raise ``ValueError``.
"""

from __future__ import annotations

import base64
import re

from axis.core.envelope.model import (
    NS,
    Attachment,
    DocumentMessage,
    Message,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusMessage,
)

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _esc(text: str) -> str:
    if _INVALID_XML_CHARS.search(text):
        raise ValueError(f"text contains characters XML 1.0 cannot carry: {text[:40]!r}")
    return text.translate(_ESCAPES)


class _Writer:
    __slots__ = ("indent", "lines", "prefix")

    def __init__(self, prefix: str) -> None:
        self.lines: list[str] = []
        self.indent = 0
        self.prefix = prefix

    def open(self, tag: str, attrs: str = "") -> None:
        self.lines.append(f"{'  ' * self.indent}<{self.prefix}{tag}{attrs}>")
        self.indent += 1

    def close(self, tag: str) -> None:
        self.indent -= 1
        self.lines.append(f"{'  ' * self.indent}</{self.prefix}{tag}>")

    def leaf(self, tag: str, value: str, *, always: bool = False) -> None:
        if value or always:
            p = self.prefix
            self.lines.append(f"{'  ' * self.indent}<{p}{tag}>{_esc(value)}</{p}{tag}>")

    def record(self, tag: str, fields: tuple[tuple[str, str], ...]) -> None:
        """A flat record, omitted entirely when every field is empty."""
        if any(v for _, v in fields):
            self.open(tag)
            for name, value in fields:
                self.leaf(name, value)
            self.close(tag)


def _organization(w: _Writer, tag: str, org: Organization) -> None:
    w.open(tag)
    w.leaf("OrganId", org.organ_id, always=True)
    w.leaf("OrganizationInCharge", org.organization_in_charge)
    w.leaf("OrganName", org.organ_name)
    w.leaf("OrganAdd", org.organ_add)
    w.leaf("Email", org.email)
    w.leaf("Telephone", org.telephone)
    w.leaf("Fax", org.fax)
    w.leaf("Website", org.website)
    w.close(tag)


def _response_for(w: _Writer, rf: ResponseFor) -> None:
    w.open("ResponseFor")
    w.leaf("OrganId", rf.organ_id, always=True)
    w.leaf("Code", rf.code)
    w.leaf("PromulgationDate", rf.promulgation_date)
    w.leaf("DocumentId", rf.document_id, always=True)
    w.close("ResponseFor")


def _staff(w: _Writer, s: StaffInfo) -> None:
    w.record(
        "StaffInfo",
        (("Department", s.department), ("Staff", s.staff), ("Email", s.email), ("Mobile", s.mobile)),
    )


def _document_header(w: _Writer, m: DocumentMessage) -> None:
    w.open("MessageHeader")
    _organization(w, "From", m.sender)
    for r in m.recipients:
        _organization(w, "To", r)
    w.leaf("DocumentId", m.document_id, always=True)
    w.record("Code", (("CodeNumber", m.code_number), ("CodeNotation", m.code_notation)))
    w.record("PromulgationInfo", (("Place", m.promulgation_place), ("PromulgationDate", m.promulgation_date)))
    t = m.document_type
    w.record("DocumentType", (("Type", t.type), ("TypeDetail", t.type_detail), ("TypeName", t.type_name)))
    w.leaf("Subject", m.subject)
    w.leaf("Content", m.content)
    s = m.signer_info
    w.record("SignerInfo", (("Competence", s.competence), ("Position", s.position), ("FullName", s.full_name)))
    w.leaf("DueDate", m.due_date)
    o = m.other_info
    flat = (
        ("Priority", o.priority),
        ("SphereOfPromulgation", o.sphere_of_promulgation),
        ("TyperNotation", o.typer_notation),
        ("PromulgationAmount", o.promulgation_amount),
        ("PageAmount", o.page_amount),
        ("Direction", o.direction),
    )
    if o.appendixes or any(v for _, v in flat):
        w.open("OtherInfo")
        for name, value in flat:
            w.leaf(name, value)
        if o.appendixes:
            w.open("Appendixes")
            for a in o.appendixes:
                w.leaf("Appendix", a, always=True)
            w.close("Appendixes")
        w.close("OtherInfo")
    if m.response_for is not None:
        _response_for(w, m.response_for)
    w.leaf("SteeringType", m.steering_type)
    if m.to_places:
        w.open("ToPlaces")
        for p in m.to_places:
            w.leaf("Place", p, always=True)
        w.close("ToPlaces")
    w.leaf("ApplicationType", m.application_type)
    w.close("MessageHeader")

    w.open("TraceHeaderList")
    for th in m.trace_headers:
        w.open("TraceHeader")
        w.leaf("OrganId", th.organ_id, always=True)
        w.leaf("Timestamp", th.timestamp)
        w.close("TraceHeader")
    b = m.business
    w.open("Bussiness")
    w.leaf("DocumentId", b.document_id)
    w.leaf("BussinessDocType", str(b.doc_type), always=True)
    w.leaf("BussinessDocReason", b.reason)
    w.leaf("Paper", b.paper)
    if b.replacement_info:
        w.open("ReplacementInfoList")
        for ri in b.replacement_info:
            w.open("ReplacementInfo")
            w.leaf("DocumentId", ri.document_id, always=True)
            w.open("OrganIdList")
            for oid in ri.organ_ids:
                w.leaf("OrganId", oid, always=True)
            w.close("OrganIdList")
            w.close("ReplacementInfo")
        w.close("ReplacementInfoList")
    if b.document_info is not None:
        di = b.document_info
        w.open("BussinessDocumentInfo")
        w.leaf("DocumentInfo", di.document_info)
        w.leaf("DocumentReceiver", di.document_receiver)
        if di.receivers:
            w.open("ReceiverList")
            for rc in di.receivers:
                w.open("Receiver")
                w.leaf("OrganId", rc.organ_id, always=True)
                w.leaf("ReceiverType", rc.receiver_type)
                w.close("Receiver")
            w.close("ReceiverList")
        w.close("BussinessDocumentInfo")
    _staff(w, b.staff_info)
    w.close("Bussiness")
    w.close("TraceHeaderList")


def _status_header(w: _Writer, m: StatusMessage) -> None:
    w.open("MessageHeader")
    _organization(w, "From", m.sender)
    _response_for(w, m.response_for)
    _staff(w, m.staff_info)
    w.leaf("StatusCode", m.status_code, always=True)
    w.leaf("Description", m.description)
    w.leaf("Timestamp", m.timestamp)
    w.close("MessageHeader")


def _check_attachments(attachments: tuple[Attachment, ...]) -> None:
    seen: set[str] = set()
    for a in attachments:
        if a.content_id in seen:
            raise ValueError(f"duplicate attachment ContentId {a.content_id!r}")
        seen.add(a.content_id)


def build(msg: Message) -> bytes:
    """Serialize a message as unsigned UTF-8 edXML (deterministic: same message, same bytes)."""
    if not isinstance(msg, DocumentMessage | StatusMessage):
        raise TypeError(f"not an edXML message: {type(msg).__name__}")
    w = _Writer("edXML:")
    w.indent = 1
    w.lines.append(f'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="{NS}">')
    w.open("edXMLEnvelope", f' xmlns:edXML="{NS}"')
    w.open("edXMLHeader")
    if isinstance(msg, StatusMessage):
        _status_header(w, msg)
        w.close("edXMLHeader")
        w.close("edXMLEnvelope")
    else:
        _check_attachments(msg.attachments)
        _document_header(w, msg)
        w.close("edXMLHeader")
        w.open("edXMLBody")
        w.open("edXMLManifest", ' version="1.0"')
        for a in msg.attachments:
            w.open("Reference")
            w.leaf("ContentId", a.content_id, always=True)
            w.leaf("ContentType", a.content_type)
            w.leaf("Description", a.description)
            w.leaf("AttachmentName", a.name)
            w.close("Reference")
        w.close("edXMLManifest")
        w.close("edXMLBody")
        w.close("edXMLEnvelope")
        if msg.attachments:
            w.prefix = ""
            w.open("AttachmentEncoded")
            for a in msg.attachments:
                w.open("Attachment")
                w.leaf("ContentId", a.content_id, always=True)
                w.leaf("AttachmentName", a.name)
                w.leaf("Description", a.description)
                w.leaf("ContentType", a.content_type)
                w.leaf("ContentTransferEncoded", base64.b64encode(a.data).decode("ascii"), always=True)
                w.close("Attachment")
            w.close("AttachmentEncoded")
    w.lines.append("</edXML>\n")
    return "\n".join(w.lines).encode("utf-8")
