"""Status bundle framing: exact round trip, and anything that does not parse exactly is refused as a whole."""

from __future__ import annotations

import struct

import pytest

from axis.core.bundle import MAGIC, Item, pack, unpack
from axis.core.reasons import Refusal


def test_round_trip_keeps_order_bodies_and_meta() -> None:
    items = [Item(b"<a/>", {"x-axis-doc-type": 1, "x-axis-server": "sh"}), Item(b""), Item(bytes(range(256)) * 40)]
    assert unpack(pack(items)) == [Item(b"<a/>", {"x-axis-doc-type": 1, "x-axis-server": "sh"}), Item(b"", {}),
                                   Item(bytes(range(256)) * 40, {})]
    assert unpack(pack([])) == []


@pytest.mark.parametrize("data", [
    b"",
    b"AXB2\x00\x00\x00\x00",  # wrong magic
    MAGIC + b"\x00\x00",  # no item count
    MAGIC + struct.pack(">I", 1),  # one item announced, none present
    pack([Item(b"<a/>")])[:-1],  # body truncated
    pack([Item(b"<a/>")]) + b"x",  # trailing bytes
    MAGIC + struct.pack(">I", 1) + struct.pack(">H", 2) + b"[]" + struct.pack(">I", 0),  # meta not an object
    MAGIC + struct.pack(">I", 1) + struct.pack(">H", 3) + b"{x}" + struct.pack(">I", 0),  # meta not JSON
    MAGIC + struct.pack(">I", 10**9),  # absurd count
])
def test_bad_framing_is_refused_as_a_whole(data: bytes) -> None:
    with pytest.raises(Refusal) as e:
        unpack(data)
    assert e.value.reason.value == "XML_MALFORMED"


def test_item_limit() -> None:
    data = pack([Item(b"x")] * 3)
    assert len(unpack(data, max_items=3)) == 3
    with pytest.raises(Refusal):
        unpack(data, max_items=2)
