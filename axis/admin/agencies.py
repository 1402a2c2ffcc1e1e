"""The admin API of the agency lifecycle (issue 14 item 4): add, retire, rename and re-certify agencies of a running
axis. The work is done by the ``axis up`` supervisor (:mod:`axis.ops.agencies`, asked over its control socket, as
for a live move); this module is the HTTP door, the admin app's own view of the directory afterwards, and the
evidence log's record of each action.

Routes (admin token, as every ``/admin`` path; errors are RFC 9457 problems with a ``reason``):

- ``POST /admin/agencies`` ``{"code", "name"?, "server", "kind"?, "port"?, "algorithm"?, "days"?, "holds_key"?}``
  → 201 ``{"agency", "name", "server", "kind", "endpoint", "new_server", "token", "certificate": {"serial",
  "not_after", "key", "cert", "sha256"}, "tls_cert"?, "tls_key"?}`` — the token is shown once (and written to
  ``connections.json``, mode 0600);
- ``POST /admin/agencies/{code}/retire`` ``{"revoke"?}`` → ``{"agency", "retired_at", "revoked_serial"}``;
- ``POST /admin/agencies/{code}/rename`` ``{"code", "name"?}`` → ``{"agency" (the new code), "former", …}``;
- ``POST /admin/agencies/{code}/rotate-cert`` ``{"algorithm"?, "days"?}`` → ``{"certificate": …, "previous":
  {"serial", "not_after", "cert", "valid_until"}}``.

Refusals: 422 ``SCHEMA_INVALID`` (malformed request), 404 ``UNKNOWN_RECIPIENT`` (no such agency), 409
``FORBIDDEN`` (a code taken, a dedicated server in use, an agency already retired), 501 without a supervisor,
500 when a process did not take the change (it was undone).

**Evidence.** Each completed action is a leaf of the log (contract section 5) of type ``admin``: ``"action"``
(``agency-add``, ``agency-retire``, ``agency-rename``, ``agency-rotate-cert``), ``"admin"`` (the administrator:
the request's ``X-Axis-Admin`` header — ``axis agency`` sends the operator's login name — else ``admin``),
``"agency"`` (the agency's code after the action), ``"sender"`` (its code before: the former code of a rename),
``"server"``, and ``"sha256"`` the SHA-256 of the DER of the certificate issued ("" for a retirement);
``document_id`` is "" (no document). The admin app publishes it to ``axis.evidence`` (its broker user may); if the
broker does not take it, the answer says so in ``"evidence"`` — the action itself is done and is not undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from axis.core.evidence import Event
from axis.core.reasons import Reason
from axis.core.wire import evidence, now_ms
from axis.ops.control import ControlError
from axis.ops.control import request as control_request

log = logging.getLogger("axis.admin.agencies")

ADMIN_HEADER = "x-axis-admin"
_ADMIN_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
EVIDENCE_TIMEOUT = 15.0

#: ``publish(events)``: hands admin events to the evidence log (raises when the broker does not confirm them)
EventSink = Callable[[list[Event]], Awaitable[None]]


def _problem(status: int, title: str, detail: str, reason: Reason | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if reason is not None:
        body["reason"] = reason.value
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def admin_name(request: Request) -> str:
    """Who acts: the ``X-Axis-Admin`` header when it is a plain name (letters, digits, ``._@+-``, at most 64),
    else ``admin``. One admin token serves every administrator: the name is what they say, recorded as said."""
    name = request.headers.get(ADMIN_HEADER, "")
    return name if _ADMIN_NAME.fullmatch(name) else "admin"


def admin_event(answer: dict[str, Any], admin: str, former: str) -> Event:
    """The ``admin`` leaf of a completed agency action (module docstring)."""
    cert = answer.get("certificate") or {}
    return Event("admin", now_ms(), former, "", 0, str(cert.get("sha256") or ""), agency=str(answer["agency"]),
                 server=str(answer.get("server") or "") or None, action=str(answer["action"]), admin=admin,
                 ref=f"agency-{uuid.uuid4()}")


def broker_sink(amqp_url: str) -> EventSink:
    """Publish events to ``axis.evidence`` over one short-lived connection (agency actions are rare)."""

    async def publish(events: list[Event]) -> None:
        from axis.broker.topology import attach_exchanges
        from axis.broker.transport import Publisher, connect

        connection = await connect(amqp_url)
        try:
            _, exchanges = await attach_exchanges(connection, timeout=EVIDENCE_TIMEOUT)
            await Publisher(exchanges).publish(evidence(events))
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    return publish


class AgencyAdmin:
    """The agency-lifecycle routes of one admin app. ``control_socket``: the supervisor's (None: 501);
    ``sink``: where admin events go (None: not recorded — an app without a broker, in tests);
    ``on_change``: called after every completed action (the app re-reads its configuration)."""

    def __init__(self, control_socket: Any, sink: EventSink | None,
                 on_change: Callable[[], Awaitable[None]] | None = None) -> None:
        self.control_socket = control_socket
        self.sink = sink
        self.on_change = on_change

    @classmethod
    def for_settings(cls, settings: Any, on_change: Callable[[], Awaitable[None]] | None = None) -> AgencyAdmin:
        url = getattr(settings, "amqp_url", None)
        return cls(getattr(settings, "control_socket", None), broker_sink(url) if url else None, on_change)

    async def act(self, op: str, payload: dict[str, Any], admin: str, former: str) -> Response:
        if self.control_socket is None:
            return _problem(501, "Not Implemented", "changing agencies live needs the `axis up` supervisor, and this "
                            "admin app was not started by `axis up`")
        try:
            status, answer = await control_request(self.control_socket, {"op": op, **payload})
        except ControlError as exc:
            return _problem(503, "Service Unavailable", str(exc))
        if status != 200:
            reason = answer.get("reason")
            return _problem(status, "refused" if status < 500 else "failed", str(answer.get("detail")),
                            Reason(reason) if reason else None)
        if self.on_change is not None:
            try:
                await self.on_change()
            except Exception:  # the action is done; the app's view follows at the next change
                log.exception("agency %s: refreshing the admin app's view failed", op)
        answer["evidence"] = await self._record(admin_event(answer, admin, former))
        return Response(orjson.dumps(answer), status_code=201 if op == "agency-add" else 200,
                        media_type="application/json")

    async def _record(self, event: Event) -> str:
        if self.sink is None:
            return "not recorded: no broker"
        try:
            await asyncio.wait_for(self.sink([event]), EVIDENCE_TIMEOUT)
        except Exception as exc:
            log.error("agency %s of %s: the evidence log did not take the admin event: %s", event.action,
                      event.agency, exc)
            return f"not recorded: {type(exc).__name__}: {exc}"[:300]
        return "recorded"

    def install(self, app: FastAPI) -> None:
        api = self

        async def body_of(request: Request) -> dict[str, Any] | JSONResponse:
            raw = await request.body()
            try:
                body = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                return _problem(422, "Unprocessable Content", "expected a JSON object", Reason.SCHEMA_INVALID)
            return body

        def pick(body: dict[str, Any], *keys: str) -> dict[str, Any]:
            return {k: body[k] for k in keys if k in body}

        @app.post("/admin/agencies", response_model=None)
        async def add(request: Request) -> Response:
            body = await body_of(request)
            if isinstance(body, JSONResponse):
                return body
            payload = pick(body, "code", "name", "server", "kind", "port", "algorithm", "days", "holds_key")
            return await api.act("agency-add", payload, admin_name(request), str(body.get("code") or ""))

        @app.post("/admin/agencies/{code}/retire", response_model=None)
        async def retire(code: str, request: Request) -> Response:
            body = await body_of(request)
            if isinstance(body, JSONResponse):
                return body
            return await api.act("agency-retire", {"agency": code, **pick(body, "revoke")}, admin_name(request), code)

        @app.post("/admin/agencies/{code}/rename", response_model=None)
        async def rename(code: str, request: Request) -> Response:
            body = await body_of(request)
            if isinstance(body, JSONResponse):
                return body
            payload = {"agency": code, **pick(body, "code", "name", "algorithm", "days")}
            return await api.act("agency-rename", payload, admin_name(request), code)

        @app.post("/admin/agencies/{code}/rotate-cert", response_model=None)
        async def rotate(code: str, request: Request) -> Response:
            body = await body_of(request)
            if isinstance(body, JSONResponse):
                return body
            payload = {"agency": code, **pick(body, "algorithm", "days")}
            return await api.act("agency-rotate-cert", payload, admin_name(request), code)
