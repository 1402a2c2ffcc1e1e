"""The VPCP SDK's wire format, without I/O: its signed ``XroadVnpt-*`` headers, its answers, its file hash.

What the SDK (SDKVXP 2.0.1, ``com.vpcp.services``) puts on the wire is described in the shared reference
``vpcp-sdk.md`` section 3; this module reads it and writes what the SDK parses back (section 5):

- :func:`read_signed` takes the raw request headers and returns the :class:`SignedRequest`: the systemId, the
  raw bytes of ``XroadVnpt-sign-header`` (what the MAC covers) and the call's parameters — only those that appear
  in the signed JSON **and** agree with the real ``XroadVnpt-<key>`` headers (names compared case-insensitively).
- :func:`mac_ok` checks ``XroadVnpt-hash-header`` = HMAC-SHA256(secret, sign-header) in constant time. The key it
  takes is the one :func:`hmac_key` derives from the agency's stored token digest (see there).
- :func:`answer` writes ``{"status", "ErrorCode", "ErrorDesc", …}`` as ASCII-only JSON (the SDK reads sendEdoc's
  answer as US-ASCII; ``\\uXXXX`` escapes keep Vietnamese names intact).
- What the SDK sends (its headers, ``hash-file``, sendEdoc's body) is built in :mod:`axis.core.vpcp`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from axis.core.reasons import Reason, Refusal

PREFIX = "xroadvnpt-"
SIGN_HEADER = "xroadvnpt-sign-header"
HASH_HEADER = "xroadvnpt-hash-header"
#: Headers the SDK sends beside the signed ones (never parameters of a call).
UNSIGNED = frozenset({SIGN_HEADER, HASH_HEADER, "xroadvnpt-sign-header-key", "xroadvnpt-version"})
#: A retryable condition (broker or store busy): nothing was taken (an ErrorCode beside contract section 2's).
UNAVAILABLE = "UNAVAILABLE"
#: The HMAC block size: a longer key is hashed first (RFC 2104), which is what lets axis verify with the digest.
HMAC_BLOCK = 64


@dataclass(frozen=True, slots=True)
class SignedRequest:
    system_id: str
    sign_header: bytes  # the raw bytes the MAC covers
    mac: str  # XroadVnpt-hash-header, lowercase
    params: Mapping[str, str]  # the call's parameters, keys lowercase, values as signed

    def get(self, key: str) -> str | None:
        return self.params.get(key.lower())


def _header_map(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, bytes]:
    """Lowercase header name → the first value's raw bytes."""
    out: dict[str, bytes] = {}
    for name, value in headers:
        out.setdefault(name.decode("latin-1").lower(), value)
    return out


def read_signed(headers: Iterable[tuple[bytes, bytes]]) -> SignedRequest:
    """The signed part of a request, or Refusal(UNAUTHORIZED) when the SDK's headers are missing, malformed or
    disagree with what was signed. The MAC itself is checked by :func:`mac_ok` once the key is known."""
    found = _header_map(headers)
    raw = found.get(SIGN_HEADER)
    mac = found.get(HASH_HEADER)
    if not raw or not mac:
        raise Refusal(Reason.UNAUTHORIZED, "missing XroadVnpt-sign-header or XroadVnpt-hash-header")
    try:
        signed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refusal(Reason.UNAUTHORIZED, "XroadVnpt-sign-header is not a JSON object") from None
    if not isinstance(signed, dict):
        raise Refusal(Reason.UNAUTHORIZED, "XroadVnpt-sign-header is not a JSON object")
    params: dict[str, str] = {}
    for name, value in signed.items():
        key = str(name).lower()
        if not key.startswith(PREFIX) or key in UNSIGNED:
            continue  # not a parameter: nothing of it is used
        real = found.get(key)
        text = value if isinstance(value, str) else json.dumps(value)
        if real is None or real.decode("utf-8", "replace") != text:
            raise Refusal(Reason.UNAUTHORIZED, f"header {name} is missing or differs from the signed value")
        params[key[len(PREFIX):]] = text
    system_id = params.get("systemid", "")
    if not system_id:
        raise Refusal(Reason.UNAUTHORIZED, "no XroadVnpt-systemid in XroadVnpt-sign-header")
    return SignedRequest(system_id, raw, mac.decode("latin-1").strip().lower(), params)


def hmac_key(token_sha256: str) -> bytes:
    """The HMAC key equivalent to the agency's token, from the SHA-256 digest stored at rest: HMAC hashes a key
    longer than its 64-byte block, so for a token of more than 64 bytes HMAC(token, m) = HMAC(SHA-256(token), m).
    A shorter token cannot be checked from its digest: its requests fail the MAC (UNAUTHORIZED)."""
    return bytes.fromhex(token_sha256)


def mac_ok(key: bytes, request: SignedRequest) -> bool:
    expected = hmac.new(key, request.sign_header, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.mac)








def answer(status: str = "OK", code: str = "0", desc: str = "Success", **fields: Any) -> bytes:
    """The SDK's answer: ``status``, ``ErrorCode``, ``ErrorDesc`` (strings) and the call's fields, ASCII JSON."""
    body = {"status": status, "ErrorCode": code, "ErrorDesc": desc, **fields}
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def fail(code: str, desc: str, **fields: Any) -> bytes:
    """A refusal: ``{"status": "FAIL", "ErrorCode": <reason code>, "ErrorDesc": <text>}``."""
    return answer("FAIL", code, desc, **fields)
