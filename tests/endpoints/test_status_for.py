"""The status an endpoint server builds for an agency (``POST /v1/documents/{id}/status``) and the fields it states
beside it (``x-axis-status``), which the router routes it by without parsing the XML."""

from __future__ import annotations

import pytest

from axis.core import envelope
from axis.core.wire import H_STATUS, StatusFields
from axis.router.core import STATED_DESCRIPTION_CHARS, server_fields
from endpoints.app import status_for

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
