"""Bearer-token authentication of agency software on one endpoint server.

Tokens are stored only as SHA-256 hex digests (config). The presented token is hashed, looked up by digest,
and compared with ``hmac.compare_digest`` against the stored digests sharing its first 4 hex digits (the
bucket lookup reveals nothing usable; the full comparison is constant-time). Only the agencies of this server
are accepted: a valid token of an agency on another server is UNAUTHORIZED here.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable

from axis.config import AgencyConfig
from axis.reasons import Reason, Refusal


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


class TooManyFailures(Exception):
    """This client failed authentication too often: refuse everything from it for ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed authentication attempts; retry after {retry_after}s")
        self.retry_after = retry_after


class FailureLimiter:
    """At most ``max_failures`` failed authentications per client (IP) per ``window`` seconds.

    Once over, every request from that client is refused (429) until the window ends — valid tokens included,
    so a guess that happens to be right is not confirmed. Memory is bounded: at most ``max_clients`` tracked.
    """

    def __init__(self, max_failures: int = 20, window: float = 60.0, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: dict[str, tuple[float, int]] = {}  # client -> (window start, failures)

    def check(self, client: str) -> None:
        start, n = self._failures.get(client, (0.0, 0))
        now = self._clock()
        if n >= self.max_failures and now - start < self.window:
            raise TooManyFailures(max(1, int(self.window - (now - start)) + 1))

    def failed(self, client: str) -> None:
        now = self._clock()
        start, n = self._failures.get(client, (now, 0))
        if now - start >= self.window:
            start, n = now, 0
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._failures = {c: v for c, v in self._failures.items() if now - v[0] < self.window}
            if len(self._failures) >= self.max_clients:
                self._failures.pop(next(iter(self._failures)))
        self._failures[client] = (start, n + 1)
