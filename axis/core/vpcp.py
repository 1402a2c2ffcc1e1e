"""The VPCP SDK's request side, without I/O: what agency software built on the Government Office's Java SDK
(SDKVXP 2.0.1, ``com.vpcp.services``) puts on the wire (shared reference ``vpcp-sdk.md``, sections 3, 4 and 6).

Used by the ``/vxp`` facade of the endpoint servers (``endpoints/vxp``, which checks these headers) and by the
simulator (:mod:`axis.sim.vxp`, which sends them). A request carries each parameter as ``XroadVnpt-<key>``, the
compact JSON of all of them as ``XroadVnpt-sign-header`` and its HMAC-SHA256 under the agency's secret (its token)
as ``XroadVnpt-hash-header``; sendEdoc's body is the file followed by one CRLF, bound by ``hash-file``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime

#: sendEdoc's messagetype → BussinessDocType (vpcp-sdk.md section 6); ``status`` is a status message.
DOC_TYPES: Mapping[str, int] = {"edoc": 0, "revocation": 1, "update": 2, "replacement": 3}
STATUS = "status"
#: updateStatus values: ``done`` takes the item, the others are recorded and it stays listed.
ITEM_STATES = frozenset({"done", "processing", "fail"})
SDK_VERSION = "3.0.201608"
USER_AGENT = "JAVASDKAgent/1.0.0 XRoad/VPCP"


def sdk_timestamp(now: datetime | None = None) -> str:
    """``ddMMyyyy'T'HHmmss+SSSS`` in local time, where SSSS is milliseconds (not a zone)."""
    t = now or datetime.now()
    return t.strftime("%d%m%YT%H%M%S") + f"+{t.microsecond // 1000:04d}"


def sign_headers(params: Mapping[str, str], secret: str) -> dict[str, str]:
    """The headers the SDK sends for its parameter map ``params`` (``timestamp``, ``systemid``, ``Content-Type``
    and the call's keys): each as ``XroadVnpt-<key>``, the sign-header JSON, its key list and its MAC, the version
    and the SDK's User-Agent. The plain ``Content-Type`` header is the caller's to add."""
    signed = {f"XroadVnpt-{k}": v for k, v in params.items()}
    sign_header = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)
    mac = hmac.new(secret.encode(), sign_header.encode(), hashlib.sha256).hexdigest()
    return {**signed, "XroadVnpt-sign-header": sign_header, "XroadVnpt-sign-header-key": ";".join(params),
            "XroadVnpt-hash-header": mac, "XroadVnpt-version": SDK_VERSION, "User-Agent": USER_AGENT}


def sdk_hash_file(data: bytes) -> str:
    """SHA-256 as the SDK writes it: each byte in lowercase hex without zero padding (``0x0d`` → ``d``)."""
    return "".join(format(b, "x") for b in hashlib.sha256(data).digest())


def sdk_body(document: bytes) -> bytes:
    """sendEdoc's body: the file followed by exactly one CRLF."""
    return document + b"\r\n"


def strip_sdk_body(body: bytes) -> bytes:
    """The document of a sendEdoc body (the inverse of :func:`sdk_body`)."""
    return body[:-2] if body.endswith(b"\r\n") else body
