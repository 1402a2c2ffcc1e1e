"""Bearer-token authentication of agency software on one endpoint server.

Tokens are stored only as SHA-256 hex digests (config). The presented token is hashed, looked up by digest,
and compared with ``hmac.compare_digest`` against the stored digests sharing its first 4 hex digits (the
bucket lookup reveals nothing usable; the full comparison is constant-time). Only the agencies of this server
are accepted: a valid token of an agency on another server is UNAUTHORIZED here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from axis.config import AgencyConfig
from axis.core.reasons import Reason, Refusal


class TokenTable:
    def __init__(self, agencies: Iterable[AgencyConfig]) -> None:
        self._buckets: dict[str, list[tuple[str, str]]] = {}
        for a in agencies:
            if a.token_sha256:
                d = a.token_sha256.lower()
                self._buckets.setdefault(d[:4], []).append((d, a.code))

    def authenticate(self, authorization: str | None) -> str:
        """The agency code for an ``Authorization: Bearer <token>`` header, or Refusal(UNAUTHORIZED)."""
        if not authorization:
            raise Refusal(Reason.UNAUTHORIZED, "missing Authorization: Bearer <token>")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refusal(Reason.UNAUTHORIZED, "expected Authorization: Bearer <token>")
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = None
        for stored, code in self._buckets.get(digest[:4], ()):
            if hmac.compare_digest(stored, digest):
                found = code
        if found is None:
            raise Refusal(Reason.UNAUTHORIZED, "unknown or wrong token")
        return found


def bearer_matches(authorization: str | None, token_sha256: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries the one token stored as ``token_sha256`` (constant-time;
    never when no digest is configured). The endpoint servers' ``/metrics`` takes the admin token this way."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token_sha256) != 64:
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), token_sha256.lower())
