"""The edXML envelope (QCVN 102:2016): model, ``build`` to bytes, ``parse`` / ``from_element`` back.

    from axis.core import envelope
    msg = envelope.new_document("000.00.00.G22", ["000.00.00.H41"], "V/v kết nối", attachments=["a.pdf"])
    data = envelope.build(msg)            # unsigned UTF-8 edXML
    assert envelope.parse(data) == msg    # through axis.core.xmlsafe.parse_untrusted

See :mod:`axis.core.envelope.model` for the field conventions (strings in wire formats, ``""`` = absent).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from axis.core.envelope.build import build
from axis.core.envelope.model import (
    DOC_TYPE_KINDS,
    DS_NS,
    KIND_DOC_TYPES,
    NS,
    STATUS_CODES,
    Attachment,
    Business,
    BusinessDocumentInfo,
    DocumentMessage,
    DocumentType,
    Message,
    Organization,
    OtherInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusMessage,
    TraceHeader,
    message_kind,
)
from axis.core.envelope.parse import document_head, from_element, parse
from axis.core.schema import is_status

if TYPE_CHECKING:
    from axis.core.envelope.compose import (
        DEFAULT_REASONS,
        OFFICIAL_LETTER,
        attachment_from_file,
        check_agency_code,
        format_date,
        format_timestamp,
        is_agency_code,
        new_document,
        new_status,
        response_for,
    )

#: Imported on first use (PEP 562): reading envelopes (the verifier, the router) does not compose new ones, and
#: the composer's imports (uuid, platform, mimetypes, secrets) would only lengthen ``axis envelope verify``'s start-up.
_COMPOSE = frozenset({"DEFAULT_REASONS", "OFFICIAL_LETTER", "attachment_from_file", "check_agency_code", "format_date",
                      "format_timestamp", "is_agency_code", "new_document", "new_status",
                      "response_for"})


def __getattr__(name: str) -> Any:
    if name not in _COMPOSE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("axis.core.envelope.compose"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_REASONS",
    "DOC_TYPE_KINDS",
    "DS_NS",
    "KIND_DOC_TYPES",
    "NS",
    "OFFICIAL_LETTER",
    "STATUS_CODES",
    "Attachment",
    "Business",
    "BusinessDocumentInfo",
    "DocumentMessage",
    "DocumentType",
    "Message",
    "Organization",
    "OtherInfo",
    "Receiver",
    "ReplacementInfo",
    "ResponseFor",
    "SignerInfo",
    "StaffInfo",
    "StatusMessage",
    "TraceHeader",
    "attachment_from_file",
    "build",
    "check_agency_code",
    "document_head",
    "format_date",
    "format_timestamp",
    "from_element",
    "is_agency_code",
    "is_status",
    "message_kind",
    "new_document",
    "new_status",
    "parse",
    "response_for",
]
