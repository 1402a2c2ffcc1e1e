"""The edXML envelope model (QCVN 102:2016): frozen dataclasses for every header field.

Conventions (so that ``parse(build(m)) == m`` holds exactly):

- Text fields are ``str``; ``""`` means "absent" (``build`` omits the element, ``parse`` gives ``""`` for a
  missing or empty element). Values are kept verbatim, never stripped.
- Dates and timestamps stay strings in their wire formats: dates ``yyyy/MM/dd``, timestamps
  ``yyyy/MM/dd HH:mm:ss`` (see :func:`axis.core.envelope.format_date` /
  :func:`axis.core.envelope.format_timestamp`). Real files carry impossible dates (``2014/02/30``), which a
  ``date`` type could not hold.
- Nested records with only empty fields are omitted on the wire and parse back to their defaults.
- ``Business.doc_type`` is an ``int`` 0..3 (new, revocation, update, replacement).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The edXML namespace.
NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
#: The XML-DSig namespace.
DS_NS = "http://www.w3.org/2000/09/xmldsig#"

#: BussinessDocType → message kind (the real axis transport's message types).
DOC_TYPE_KINDS: dict[int, str] = {0: "edoc", 1: "revocation", 2: "update", 3: "replacement"}
KIND_DOC_TYPES: dict[str, int] = {v: k for k, v in DOC_TYPE_KINDS.items()}

#: Status codes of QCVN 102:2016 with their meaning.
STATUS_CODES: dict[str, str] = {
    "01": "arrived",
    "02": "rejected",
    "03": "accepted",
    "04": "assigned",
    "05": "processing",
    "06": "done",
    "13": "recall requested",
    "15": "recall/update agreed",
    "16": "recall/update refused",
}


@dataclass(frozen=True, slots=True)
class Organization:
    """An agency in From / To: ``organ_id`` is its identifier code (mã định danh)."""

    organ_id: str
    organization_in_charge: str = ""
    organ_name: str = ""
    organ_add: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass(frozen=True, slots=True)
class DocumentType:
    type: str = ""
    type_detail: str = ""
    type_name: str = ""


@dataclass(frozen=True, slots=True)
class SignerInfo:
    competence: str = ""
    position: str = ""
    full_name: str = ""


@dataclass(frozen=True, slots=True)
class OtherInfo:
    priority: str = ""
    sphere_of_promulgation: str = ""
    typer_notation: str = ""
    promulgation_amount: str = ""
    page_amount: str = ""
    direction: str = ""
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseFor:
    """The document a status (or a revocation/update) answers."""

    organ_id: str
    document_id: str
    code: str = ""
    promulgation_date: str = ""


@dataclass(frozen=True, slots=True)
class TraceHeader:
    organ_id: str
    timestamp: str = ""


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    email: str = ""
    mobile: str = ""


@dataclass(frozen=True, slots=True)
class ReplacementInfo:
    """A replaced document and the agencies it had been sent to."""

    document_id: str
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Receiver:
    organ_id: str
    receiver_type: str = ""


@dataclass(frozen=True, slots=True)
class BusinessDocumentInfo:
    """``Bussiness/BussinessDocumentInfo`` as seen in update messages."""

    document_info: str = ""
    document_receiver: str = ""
    receivers: tuple[Receiver, ...] = ()


@dataclass(frozen=True, slots=True)
class Business:
    """``TraceHeaderList/Bussiness`` (sic): what kind of message this is and what it relates to."""

    doc_type: int = 0
    document_id: str = ""
    reason: str = ""
    paper: str = ""
    replacement_info: tuple[ReplacementInfo, ...] = ()
    document_info: BusinessDocumentInfo | None = None
    staff_info: StaffInfo = field(default_factory=StaffInfo)


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attached file: ``data`` holds the raw bytes (base64 only on the wire)."""

    content_id: str
    name: str
    data: bytes
    content_type: str = "application/octet-stream"
    description: str = ""

    def __repr__(self) -> str:  # never dump megabytes into logs
        return (
            f"Attachment(content_id={self.content_id!r}, name={self.name!r}, "
            f"content_type={self.content_type!r}, size={len(self.data)})"
        )


@dataclass(frozen=True, slots=True)
class DocumentMessage:
    """An edXML document message: new document, revocation, update or replacement (``business.doc_type``)."""

    sender: Organization
    recipients: tuple[Organization, ...]
    document_id: str
    subject: str = ""
    content: str = ""
    code_number: str = ""
    code_notation: str = ""
    promulgation_place: str = ""
    promulgation_date: str = ""
    document_type: DocumentType = field(default_factory=DocumentType)
    signer_info: SignerInfo = field(default_factory=SignerInfo)
    due_date: str = ""
    other_info: OtherInfo = field(default_factory=OtherInfo)
    steering_type: str = ""
    to_places: tuple[str, ...] = ()
    response_for: ResponseFor | None = None
    application_type: str = ""
    trace_headers: tuple[TraceHeader, ...] = ()
    business: Business = field(default_factory=Business)
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """An edXML status message: ``sender`` reports ``status_code`` about ``response_for``."""

    sender: Organization
    response_for: ResponseFor
    status_code: str
    description: str = ""
    timestamp: str = ""
    staff_info: StaffInfo = field(default_factory=StaffInfo)


Message = DocumentMessage | StatusMessage


def message_kind(msg: Message) -> str:
    """``"status"`` for a status, else ``"edoc"``/``"revocation"``/``"update"``/``"replacement"``."""
    if isinstance(msg, StatusMessage):
        return "status"
    return DOC_TYPE_KINDS.get(msg.business.doc_type, "edoc")
