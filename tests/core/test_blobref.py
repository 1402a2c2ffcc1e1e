"""axis.core.blobref: references, names, holds, the removal rule and byte ranges (pure)."""

from __future__ import annotations

import hashlib

import pytest

from axis.core.blobref import (
    STORED_PREFIX,
    BlobRef,
    ByteRange,
    RangeNotSatisfiable,
    blob_path,
    hold_name,
    parse_range,
    read_header,
    read_stored,
    removable,
    submitted_hold,
    temp_owner,
)
from axis.core.reasons import Reason, Refusal

SHA = hashlib.sha256(b"x").hexdigest()


def test_header_and_stored_forms_round_trip() -> None:
    ref = BlobRef(SHA, 209_715_200)
    assert read_header(ref.header) == ref and read_header(ref.header.encode()) == ref
    assert ref.stored.startswith(STORED_PREFIX) and read_stored(ref.stored) == ref
    assert len(ref.header) < 100  # far under the 1 KB bound of a header value
    assert read_header(None) is None and read_header("") is None
    assert read_stored(b"<?xml version='1.0'?><edXML/>") is None  # a document's bytes are not a reference


@pytest.mark.parametrize("bad", ["sha256:" + "0" * 63 + ":1", "sha1:" + SHA + ":1", "sha256:" + SHA.upper() + ":1",
                                 "sha256:" + SHA + ":-1", "sha256:" + SHA, "sha256:" + SHA + ":1:2"])
def test_malformed_headers_are_refused(bad: str) -> None:
    with pytest.raises(Refusal) as refused:
        read_header(bad)
    assert refused.value.reason is Reason.SCHEMA_INVALID


def test_refs_only_from_a_digest() -> None:
    with pytest.raises(ValueError):
        BlobRef("../../etc/passwd" + "0" * 48, 1)
    with pytest.raises(ValueError):
        blob_path("../x")
    assert blob_path(SHA) == f"{SHA[:2]}/{SHA}"


def test_hold_names_are_safe_file_names() -> None:
    assert hold_name("000.00.00.G22") == "000.00.00.G22"
    assert submitted_hold("s1") == "submitted.s1"
    for hostile in ("../x", "a/b", "..", "", "x" * 300, "đ"):
        name = hold_name(hostile)
        assert "/" not in name and name not in (".", "..", "") and len(name) <= 202


def test_removable_needs_no_holds_and_the_retention() -> None:
    assert removable(holds=0, age_seconds=10, retention_seconds=10)
    assert not removable(holds=1, age_seconds=10 ** 9, retention_seconds=0)
    assert not removable(holds=0, age_seconds=9.9, retention_seconds=10)


def test_temp_owner() -> None:
    assert temp_owner("host_a.123.abcd") == ("host_a", 123)
    assert temp_owner("junk") is None and temp_owner("a.b.c") is None


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-9", ByteRange(0, 9)), ("bytes=10-", ByteRange(10, 99)), ("bytes=-10", ByteRange(90, 99)),
    ("bytes=90-200", ByteRange(90, 99)), ("bytes=-200", ByteRange(0, 99)), ("items=0-1", None),
    ("bytes=0-1,5-6", None), ("bytes=5-1", None), ("bytes=x-1", None), ("bytes=", None),
])
def test_ranges(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)
