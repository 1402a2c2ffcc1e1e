"""Bundles: several status or document messages in ONE AMQP message (internal wire format, not the public contract).

A status 01 per recipient and a forward per status made the status path most of the axis's AMQP traffic. The
endpoint servers publish the statuses of the deliveries they commit together as one ``status-bundle`` message,
and the router forwards the statuses bound for one server in one. Each item keeps its own identity: it is
checked, counted, refused (dead-lettered alone, with its reason) and stored exactly as a single status would be.

Framing (all integers big-endian)::

    b"AXB1"  u32 item-count  then per item:  u16 meta-length  meta (JSON object)  u32 body-length  body

``meta`` carries what a single status message carries in its headers (e.g. ``x-axis-doc-type``). Anything
that does not parse exactly — wrong magic, truncated, trailing bytes, a meta that is not a JSON object, more
items than allowed — refuses the whole message (XML_MALFORMED): nothing in it can be trusted to be one item.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from axis.core.reasons import Reason, Refusal

MAGIC = b"AXB1"
MAX_ITEMS = 10_000
#: documents up to this size travel in document bundles (the router's deliveries, a door's submissions); a larger one
#: goes alone (a bundle is read whole)
BUNDLE_DOCUMENT_BYTES = 256 * 1024
#: a document bundle holds at most this many bytes of documents
BUNDLE_BYTES = 1024 * 1024
_COUNT = struct.Struct(">I")
_META = struct.Struct(">H")
_BODY = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Item:
    body: bytes
    meta: Mapping[str, Any] = field(default_factory=dict)


def pack(items: Sequence[Item]) -> bytes:
    parts = [MAGIC, _COUNT.pack(len(items))]
    for it in items:
        meta = orjson.dumps(dict(it.meta)) if it.meta else b"{}"
        if len(meta) > 0xFFFF:
            raise ValueError("bundle item meta over 64 KiB")
        parts += [_META.pack(len(meta)), meta, _BODY.pack(len(it.body)), it.body]
    return b"".join(parts)


def unpack(data: bytes, *, max_items: int = MAX_ITEMS) -> list[Item]:
    """The items of a bundle, in order; raises Refusal(XML_MALFORMED) unless the framing is exact."""
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC or len(view) < 8:
        raise Refusal(Reason.XML_MALFORMED, "not a status bundle (bad magic)")
    (count,) = _COUNT.unpack_from(view, 4)
    if count > max_items:
        raise Refusal(Reason.XML_MALFORMED, f"status bundle of {count} items (at most {max_items})")
    pos, items = 8, []
    try:
        for _ in range(count):
            (mlen,) = _META.unpack_from(view, pos)
            pos += 2
            meta_raw = bytes(view[pos:pos + mlen])
            pos += mlen
            (blen,) = _BODY.unpack_from(view, pos)
            pos += 4
            if pos + blen > len(view) or len(meta_raw) != mlen:
                raise Refusal(Reason.XML_MALFORMED, "status bundle truncated")
            body = bytes(view[pos:pos + blen])
            pos += blen
            meta = orjson.loads(meta_raw)
            if not isinstance(meta, dict):
                raise Refusal(Reason.XML_MALFORMED, "status bundle item meta is not an object")
            items.append(Item(body, meta))
    except (struct.error, orjson.JSONDecodeError):
        raise Refusal(Reason.XML_MALFORMED, "status bundle truncated or its meta is not JSON") from None
    if pos != len(view):
        raise Refusal(Reason.XML_MALFORMED, f"{len(view) - pos} bytes after the last bundle item")
    return items


def declared_items(data: bytes) -> int:
    """How many items a bundle says it holds (its count field, without reading them; at least 1): a figure for
    rates, never for trust — :func:`unpack` decides what a bundle holds."""
    if len(data) < 8 or data[:4] != MAGIC:
        return 1
    count: int = _COUNT.unpack_from(data, 4)[0]
    return max(1, min(MAX_ITEMS, count))
