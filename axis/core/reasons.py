"""Reason codes of the public contract (section 2) and the one exception that carries them.

Every refusal anywhere in axis — CLI, HTTP problem details, dead-letter headers, statistics — carries exactly
one :class:`Reason`. Code that refuses raises :class:`Refusal`; shells translate it (exit 1, 4xx, dead letter).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    XML_MALFORMED = "XML_MALFORMED"
    XML_FORBIDDEN = "XML_FORBIDDEN"
    TOO_LARGE = "TOO_LARGE"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    SIGNATURE_MISSING = "SIGNATURE_MISSING"
    SIGNATURE_PROFILE = "SIGNATURE_PROFILE"
    WEAK_ALGORITHM = "WEAK_ALGORITHM"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    CERT_UNTRUSTED = "CERT_UNTRUSTED"
    CERT_EXPIRED = "CERT_EXPIRED"
    CERT_REVOKED = "CERT_REVOKED"
    CERT_USAGE = "CERT_USAGE"
    SIGNER_MISMATCH = "SIGNER_MISMATCH"
    UNKNOWN_SENDER = "UNKNOWN_SENDER"
    UNKNOWN_RECIPIENT = "UNKNOWN_RECIPIENT"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    # contract section 5, the evidence log
    PROOF_INVALID = "PROOF_INVALID"  # an inclusion or consistency proof, a leaf or a root does not match
    STH_INVALID = "STH_INVALID"  # a signed tree head's signature or certificate does not verify


# HTTP status for each reason when it is the caller's fault (problem+json).
HTTP_STATUS: dict[Reason, int] = {
    Reason.TOO_LARGE: 413,
    Reason.UNAUTHORIZED: 401,
    Reason.FORBIDDEN: 403,
}


def http_status(reason: Reason) -> int:
    """The HTTP status that goes with a refusal: 401/403/413 where they apply, else 422."""
    return HTTP_STATUS.get(reason, 422)


class Refusal(Exception):
    """A refusal with exactly one reason code and a human-readable detail."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail

    def as_dict(self) -> dict[str, object]:
        return {"ok": False, "reason": self.reason.value, "detail": self.detail}
