"""The wire vocabulary's pure readers: the status fields a delivered status carries (``x-axis-status``)."""

from __future__ import annotations

import dataclasses

import pytest

from axis.core.wire import H_STATUS, HEADER_TEXT_BYTES, StatusFields, status_fields

FIELDS = StatusFields("000.00.00.G22", "000.00.00.H53", "G22.2019.1", "02", "Đã tiếp nhận", "2019/05/10 08:00:00")


def test_status_fields_round_trip_through_a_header() -> None:
    header = FIELDS.header()
    assert list(header) == [H_STATUS] and len(header[H_STATUS].encode()) <= HEADER_TEXT_BYTES
    assert status_fields(header) == FIELDS
    assert status_fields({H_STATUS: header[H_STATUS].encode()}) == FIELDS  # as an AMQP header may arrive: bytes


def test_fields_too_long_for_a_header_are_left_out() -> None:
    long = dataclasses.replace(FIELDS, description="ý" * HEADER_TEXT_BYTES)
    assert long.header() == {}  # the server then parses the status itself


@pytest.mark.parametrize("value", [None, "", "not json", "{}", '["a", "b"]', '[1, 2, 3, 4, 5, 6]',
                                   '["a", "b", "c", "d", "e", "f", "g"]', '"six"'])
def test_anything_but_six_strings_is_no_fields(value: str | None) -> None:
    assert status_fields({} if value is None else {H_STATUS: value}) is None
