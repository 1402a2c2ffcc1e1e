"""Convenience constructors for agency software and the simulator, with sensible defaults."""

from __future__ import annotations

import mimetypes
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from axis.core.envelope.model import (
    KIND_DOC_TYPES,
    STATUS_CODES,
    Attachment,
    Business,
    DocumentMessage,
    DocumentType,
    Organization,
    OtherInfo,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusMessage,
    TraceHeader,
)

# Both identifier forms (QCVN 102:2016 "000.00.00.H41", Decision 20/2020 "H55.242"): dot-separated groups of
# 0-9/A-Z, at most 35 characters. The same rule is in schemas/edxml-common.xsd (OrganIdType).
_AGENCY_CODE = re.compile(r"[0-9A-Z]+(?:\.[0-9A-Z]+)*")

DEFAULT_REASONS = {
    0: "Văn bản điện tử mới",
    1: "Thu hồi văn bản điện tử",
    2: "Cập nhật văn bản điện tử",
    3: "Văn bản thay thế",
}
#: The default document type: an official letter (công văn).
OFFICIAL_LETTER = DocumentType(type="1", type_detail="0", type_name="Công văn")


def is_agency_code(code: str) -> bool:
    """True for a syntactically valid agency identifier code (either form)."""
    return len(code) <= 35 and _AGENCY_CODE.fullmatch(code) is not None


def check_agency_code(code: str) -> str:
    if not is_agency_code(code):
        raise ValueError(
            f"{code!r} is not an agency code: dot-separated groups of 0-9/A-Z, at most 35 characters "
            "(e.g. 000.00.00.G22 or H55.242)"
        )
    return code


def format_date(d: date | datetime | str | None = None) -> str:
    """``yyyy/MM/dd`` (today when ``None``; a string is returned unchanged)."""
    if isinstance(d, str):
        return d
    return (d or datetime.now()).strftime("%Y/%m/%d")


def format_timestamp(t: datetime | str | None = None) -> str:
    """``yyyy/MM/dd HH:mm:ss`` (now, local time, when ``None``; a string is returned unchanged)."""
    if isinstance(t, str):
        return t
    return (t or datetime.now()).strftime("%Y/%m/%d %H:%M:%S")


def _org(x: str | Organization) -> Organization:
    if isinstance(x, Organization):
        check_agency_code(x.organ_id)
        return x
    return Organization(organ_id=check_agency_code(x))


def attachment_from_file(
    path: str | Path,
    *,
    content_id: str | None = None,
    content_type: str | None = None,
    description: str = "",
) -> Attachment:
    """An attachment holding the file's bytes; ContentId ``cid:<uuid>`` and a content type guessed from the name."""
    p = Path(path)
    data = p.read_bytes()
    ctype = content_type or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    return Attachment(
        content_id=content_id or f"cid:{uuid.uuid4()}",
        name=p.name,
        data=data,
        content_type=ctype,
        description=description,
    )


def new_document(
    sender: str | Organization,
    recipients: Sequence[str | Organization],
    subject: str,
    *,
    number: str | None = None,
    notation: str | None = None,
    content: str = "",
    attachments: Sequence[Attachment | str | Path] = (),
    doc_type: int | str = 0,
    related_document_id: str | None = None,
    date: date | datetime | str | None = None,
    timestamp: datetime | str | None = None,
    place: str = "",
    reason: str | None = None,
    document_type: DocumentType = OFFICIAL_LETTER,
    signer_info: SignerInfo | None = None,
    due_date: str = "",
    priority: str = "0",
    steering_type: str = "1",
    staff_info: StaffInfo | None = None,
) -> DocumentMessage:
    """A document message with sensible defaults.

    ``DocumentId`` is ``"<sender OrganId>,<yyyy/MM/dd>,<number>/<notation>"`` (reference format); without
    ``number`` a random one is generated. ``doc_type`` is 0..3 or a kind name (``"revocation"``, ``"update"``,
    ``"replacement"``); those need ``related_document_id``, the document they act on (``Bussiness/DocumentId``,
    and for a replacement also ``ReplacementInfo`` naming the recipients). Raises ``ValueError`` for a bad
    agency code, no recipient, an unknown type or a missing related document.
    """
    frm = _org(sender)
    tos = tuple(_org(r) for r in recipients)
    if not tos:
        raise ValueError("a document needs at least one recipient")
    kind = KIND_DOC_TYPES.get(doc_type) if isinstance(doc_type, str) else doc_type
    if kind not in (0, 1, 2, 3):
        raise ValueError(f"unknown document type {doc_type!r} (0-3 or edoc/revocation/update/replacement)")
    if kind and not related_document_id:
        raise ValueError("a revocation, update or replacement needs related_document_id")
    number = number or secrets.token_hex(4).upper()
    notation = notation if notation is not None else "VBDT"
    day = format_date(date)
    document_id = f"{frm.organ_id},{day},{number}/{notation}" if notation else f"{frm.organ_id},{day},{number}"
    atts: list[Attachment] = [a if isinstance(a, Attachment) else attachment_from_file(a) for a in attachments]
    if len({a.content_id for a in atts}) != len(atts):
        raise ValueError("attachments must have distinct content ids")
    replacement = (ReplacementInfo(related_document_id or "", tuple(t.organ_id for t in tos)),) if kind == 3 else ()
    return DocumentMessage(
        sender=frm,
        recipients=tos,
        document_id=document_id,
        subject=subject,
        content=content,
        code_number=number,
        code_notation=notation,
        promulgation_place=place,
        promulgation_date=day,
        document_type=document_type,
        signer_info=signer_info or SignerInfo(),
        due_date=due_date,
        other_info=OtherInfo(priority=priority),
        steering_type=steering_type,
        trace_headers=(TraceHeader(frm.organ_id, format_timestamp(timestamp)),),
        business=Business(
            doc_type=kind,
            document_id=related_document_id or "",
            reason=DEFAULT_REASONS[kind] if reason is None else reason,
            paper="0",
            replacement_info=replacement,
            staff_info=staff_info or StaffInfo(),
        ),
        attachments=tuple(atts),
    )


def response_for(document: DocumentMessage) -> ResponseFor:
    """What a status about ``document`` answers for: its sender, DocumentId, Code (CodeNumber/CodeNotation) and
    PromulgationDate."""
    return ResponseFor(
        organ_id=document.sender.organ_id,
        document_id=document.document_id,
        code="/".join(p for p in (document.code_number, document.code_notation) if p),
        promulgation_date=document.promulgation_date,
    )


def new_status(
    sender: str | Organization,
    document: DocumentMessage | ResponseFor,
    code: str,
    description: str = "",
    timestamp: datetime | str | None = None,
    *,
    staff_info: StaffInfo | None = None,
) -> StatusMessage:
    """A status message from ``sender`` about ``document`` (a received DocumentMessage or a ResponseFor)."""
    if code not in STATUS_CODES:
        raise ValueError(f"unknown status code {code!r} (one of {', '.join(STATUS_CODES)})")
    rf = response_for(document) if isinstance(document, DocumentMessage) else document
    return StatusMessage(
        sender=_org(sender),
        response_for=rf,
        status_code=code,
        description=description,
        timestamp=format_timestamp(timestamp),
        staff_info=staff_info or StaffInfo(),
    )
