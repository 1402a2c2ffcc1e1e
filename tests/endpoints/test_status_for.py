"""The status an endpoint server builds for an agency (``POST /v1/documents/{id}/status``) and the fields it states
beside it (``x-axis-status``), which the router routes it by without parsing the XML."""

from __future__ import annotations

import dataclasses

import pytest

from axis.core import envelope
from axis.core.wire import H_STATUS, StatusFields
from axis.router.core import STATED_DESCRIPTION_CHARS, server_fields
from endpoints.app import status_about, status_for

G01, G22, H53 = "000.00.00.G01", "000.00.00.G22", "000.00.00.H53"


@pytest.mark.parametrize("code", ["03", "05", "06", "15"])
def test_the_stated_fields_are_what_the_xml_says_and_the_router_takes_them(code: str) -> None:
    stored = envelope.build(envelope.new_document(G22, [G01, H53], "Công văn"))
    xml, fields = status_for(stored, G01, code, "Đã tiếp nhận <vào sổ> & chuyển", 1 << 20)
    read = envelope.parse(xml)
    assert isinstance(read, envelope.StatusMessage)
    assert fields == StatusFields.of(read)
    assert (fields.owner, fields.reporter, fields.code) == (G22, G01, code)
    assert server_fields(fields.header()) == fields


def test_a_long_description_travels_in_the_xml_only() -> None:
    stored = envelope.build(envelope.new_document(G22, [G01], "Công văn"))
    xml, fields = status_for(stored, G01, "05", "x" * (STATED_DESCRIPTION_CHARS + 1), 1 << 20)
    assert fields.description in xml.decode()
    assert server_fields(fields.header()) is None  # read from its XML at the router
    assert H_STATUS not in StatusFields(*["y" * 300] * 6).header()  # over a header's size: not stated at all


def test_a_status_from_the_head_kept_at_delivery_is_the_one_read_from_the_bytes() -> None:
    """What a delivery keeps for its statuses (:class:`endpoints.inbox.ReceivedHead`: Code, PromulgationDate; the row
    has the sender and DocumentId) makes the same status as reading the stored bytes' head, which rows stored before
    it was kept still need."""
    stored = envelope.build(envelope.new_document(G22, [G01], "Công văn", number="12", notation="UBND-VP",
                                                  date="2019-03-12"))
    checked = envelope.parse(stored)
    assert isinstance(checked, envelope.DocumentMessage)
    answers = envelope.response_for(checked)  # what endpoints.delivery keeps
    assert (answers.code, answers.promulgation_date) == ("12/UBND-VP", "2019-03-12")
    kept = envelope.ResponseFor(organ_id=checked.sender.organ_id, document_id=checked.document_id,
                                code=answers.code, promulgation_date=answers.promulgation_date)
    from_row, row_fields = status_about(kept, G01, "03", "vào sổ")
    from_bytes, byte_fields = status_for(stored, G01, "03", "vào sổ", 1 << 20)
    a, b = envelope.parse(from_row), envelope.parse(from_bytes)
    assert isinstance(a, envelope.StatusMessage) and isinstance(b, envelope.StatusMessage)
    assert a.response_for == b.response_for == kept
    assert (a.sender, a.status_code, a.description) == (b.sender, b.status_code, b.description)
    assert dataclasses.replace(row_fields, timestamp="") == dataclasses.replace(byte_fields, timestamp="")
