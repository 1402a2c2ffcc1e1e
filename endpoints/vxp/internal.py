"""Calling the endpoint server's own ``/v1`` API in-process, as an agency already authenticated.

The VPCP facade (:mod:`endpoints.vxp.facade`) has no machinery of its own for submissions, inboxes, acks or
statuses: each SDK call becomes one or more ``/v1`` requests handed to the same ASGI app that serves ``/v1``
(:func:`call`), so they run the same handlers — verification, signing, routing, counting, evidence, isolation.

Two scope keys carry what HTTP headers cannot (a client can never set a scope key; only in-process code can):

- :data:`AUTHENTICATED_AGENCY`: the agency the facade authenticated (HMAC of the SDK's headers, the
  failed-authentication limit and mutual TLS already applied). ``/v1``'s ``caller()`` returns it as the caller.
- :data:`SUBMIT_CHECK`: a callable ``(message) -> None`` run by ``POST /v1/documents`` right after the document was
  checked; it raises a Refusal when the document disagrees with the SDK's headers (messagetype, ``to``), so that
  refusal is counted and logged like any other refusal at the door.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Scope

AUTHENTICATED_AGENCY = "axis.authenticated_agency"
SUBMIT_CHECK = "axis.submit_check"
#: Keys of the outer scope a sub-request keeps: where the request came from (mutual TLS, rate limits).
_KEPT = ("client", "server", "scheme", "http_version", "extensions", "state", "asgi")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def reason(self) -> str | None:
        """The problem's ``reason`` (contract section 2) of a refusal, else None."""
        if self.status < 400 or "json" not in self.content_type:
            return None
        try:
            body = self.json()
        except orjson.JSONDecodeError:
            return None
        return str(body.get("reason")) if isinstance(body, dict) and body.get("reason") else None

    @property
    def detail(self) -> str:
        try:
            body = self.json()
        except orjson.JSONDecodeError:
            return self.body[:200].decode("utf-8", "replace")
        return str(body.get("detail") or body.get("title") or "") if isinstance(body, dict) else ""


async def call(app: ASGIApp, outer: Scope, agency: str, method: str, path: str, *, query: str = "",
               body: bytes = b"", content_type: str = "application/json", extra: dict[str, Any] | None = None
               ) -> Answer:
    """``method path?query`` with ``body`` through ``app``, as ``agency``; the whole answer."""
    scope: dict[str, Any] = {k: outer[k] for k in _KEPT if k in outer}
    scope.update({
        "type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        AUTHENTICATED_AGENCY: agency, **(extra or {}),
    })
    scope.setdefault("http_version", "1.1")
    scope.setdefault("scheme", "http")
    done = asyncio.Event()
    sent_body = False
    status = 500
    content = ""
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, content
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for name, value in message.get("headers", ()):
                if name.lower() == b"content-type":
                    content = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return Answer(status, content, b"".join(chunks))
