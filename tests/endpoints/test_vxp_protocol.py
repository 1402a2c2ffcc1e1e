"""The VPCP SDK's wire format (endpoints.vxp.protocol), without a server: the signed headers as the SDK builds
them (tests/support/vpcp_sdk.py, written independently), the MAC from the stored token digest, hash-file."""

from __future__ import annotations

import hashlib
import json

import pytest

from axis.config.model import hash_token, new_token
from axis.core.reasons import Reason, Refusal
from axis.core.vpcp import sdk_hash_file, strip_sdk_body
from endpoints.vxp.protocol import answer, hmac_key, mac_ok, read_signed
from tests.support.vpcp_sdk import SdkService, java_hex_sha256, sdk_timestamp


def raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def sdk_headers(secret: str, **params: str) -> dict[str, str]:
    service = SdkService(None, "http://x/vxp", "000.00.00.G01", secret)  # type: ignore[arg-type]
    service.params.update({"Content-Type": "application/json", **params})
    return service.headers()


def test_the_stored_digest_checks_the_sdk_mac() -> None:
    token = new_token()
    assert len(token.encode()) > 64
    request = read_signed(raw(sdk_headers(token, docId="abc", status="done")))
    assert request.system_id == "000.00.00.G01"
    assert (request.get("docId"), request.get("status"), request.get("content-type")) == (
        "abc", "done", "application/json")
    assert mac_ok(hmac_key(hash_token(token)), request)
    assert not mac_ok(hmac_key(hash_token(new_token())), request)
    # a token of 64 bytes or fewer cannot be checked from its digest (documented: re-issue it)
    short = "s" * 32
    assert not mac_ok(hmac_key(hash_token(short)), read_signed(raw(sdk_headers(short))))


def test_only_signed_values_that_agree_with_the_headers_are_used() -> None:
    headers = sdk_headers("k" * 72, docId="mine")
    headers["XroadVnpt-docId"] = "someone-elses"
    with pytest.raises(Refusal) as err:
        read_signed(raw(headers))
    assert err.value.reason is Reason.UNAUTHORIZED
    # a header that was not signed is not a parameter
    headers = sdk_headers("k" * 72)
    headers["XroadVnpt-docId"] = "unsigned"
    assert read_signed(raw(headers)).get("docId") is None
    # names compare case-insensitively
    signed = sdk_headers("k" * 72, docId="d")
    headers = {k.upper() if k.startswith("XroadVnpt-doc") else k: v for k, v in signed.items()}
    assert read_signed(raw(headers)).get("docid") == "d"
    for broken in ({}, {"XroadVnpt-sign-header": "[]", "XroadVnpt-hash-header": "00"},
                   {"XroadVnpt-sign-header": "{nope", "XroadVnpt-hash-header": "00"},
                   {"XroadVnpt-sign-header": "{}", "XroadVnpt-hash-header": "00"}):
        with pytest.raises(Refusal):
            read_signed(raw(broken))


def test_hash_file_has_no_zero_padding() -> None:
    # find a body whose digest has a byte below 0x10: the SDK writes it as one hex digit
    data = next(d for d in (str(i).encode() for i in range(1000)) if min(hashlib.sha256(d).digest()) < 0x10)
    assert sdk_hash_file(data) == java_hex_sha256(data)
    assert len(sdk_hash_file(data)) < 64
    assert strip_sdk_body(b"<x/>\r\n") == b"<x/>" and strip_sdk_body(b"<x/>") == b"<x/>"


def test_answers_are_ascii_json_with_string_codes() -> None:
    body = answer(data=[{"name": "Bộ Công an"}])
    assert body.isascii()
    assert json.loads(body) == {"status": "OK", "ErrorCode": "0", "ErrorDesc": "Success",
                                "data": [{"name": "Bộ Công an"}]}


def test_sdk_timestamp_is_milliseconds_not_a_zone() -> None:
    from datetime import datetime

    assert sdk_timestamp(datetime(2026, 11, 28, 6, 31, 40, 265_000)) == "28112026T063140+0265"


def test_core_request_builder_matches_the_sdk_emulation() -> None:
    """axis.core.vpcp.sign_headers (the simulator's) builds the same headers as the independent emulation."""
    from axis.core.vpcp import sign_headers

    params = {"timestamp": "28112026T063140+0265", "systemid": "000.00.00.G01", "Content-Type": "application/json",
              "docId": "d", "status": "done"}
    service = SdkService(None, "http://x/vxp", "000.00.00.G01", "k" * 72)  # type: ignore[arg-type]
    service.params = dict(params)
    emulated = service.headers()
    emulated.pop("Content-Type")
    assert sign_headers(params, "k" * 72) == emulated
