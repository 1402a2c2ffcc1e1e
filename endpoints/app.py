"""The endpoint server's HTTP API (contract section 4) for one logical server (dedicated or shared).

Every error is RFC 9457 ``application/problem+json`` with a ``reason`` from contract section 2. Isolation on a
shared server: an agency only ever sees its own documents; any id that is not the caller's (another
tenant's, or no such id) answers the same ``404`` with reason ``FORBIDDEN`` — existence is never revealed.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from axis.blobs import BlobStoreUnavailable
from axis.broker.transport import BROKER_ERRORS
from axis.core import envelope, schema
from axis.core.evidence import Event
from axis.core.ratelimit import TooManyFailures
from axis.core.reasons import Reason, Refusal, http_status
from axis.core.routing import check_limits
from axis.core.signing import sign
from axis.core.wire import (
    H_DOC_TYPE,
    H_SHA256,
    H_SUBMITTED_AT,
    StatusFields,
    evidence,
    now_ms,
)
from axis.log.store import LogStore
from axis.stats.metrics import process_metrics
from endpoints.auth import bearer_matches
from endpoints.bigdoc import (
    RefusedUpload,
    TooLarge,
    acked,
    document_response,
    read_or_spool,
    stored_head,
    stored_sha256,
    submit_big,
)
from endpoints.checks import checks_for
from endpoints.cpu import run_cpu_for
from endpoints.directory import add_directory_routes
from endpoints.evidence import Owned, add_evidence_routes
from endpoints.inbox import ReceivedRow, SentRow, StoreBusy
from endpoints.refusals import refused_record
from endpoints.server import EndpointServer
from endpoints.vxp.facade import VxpFacade
from endpoints.vxp.internal import AUTHENTICATED_AGENCY, SUBMIT_CHECK

log = logging.getLogger("axis.endpoint")
PROBLEM = "application/problem+json"
#: Status codes agency software may send (01 is sent automatically by the server when a document arrives).
CLIENT_STATUS_CODES = frozenset({"02", "03", "04", "05", "06", "13", "15", "16"})


def problem(status: int, reason: Reason | None, detail: str, title: str | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title or (reason.value if reason else "error"), "status": status,
            "detail": detail, "reason": reason.value if reason else None}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def unavailable(detail: str) -> JSONResponse:
    """503 problem+json with ``Retry-After: 1``: nothing was taken, the client may retry shortly."""
    response = problem(503, None, detail, "service unavailable")
    response.headers["Retry-After"] = "1"
    return response


def refusal_response(r: Refusal) -> JSONResponse:
    return problem(http_status(r.reason), r.reason, r.detail)


class NotYours(Exception):
    """The id is not one of the caller's documents (another tenant's or none at all)."""


class BodyTooLarge(Refusal):
    """TOO_LARGE, with the size known when refusing (the declared length, or what was read so far)."""

    def __init__(self, size: int, detail: str) -> None:
        super().__init__(Reason.TOO_LARGE, detail)
        self.size = size


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with TOO_LARGE as soon as it passes ``limit`` (before any parsing)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(int(length), f"{length} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(size, f"more than the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-upload: nothing was accepted and nobody is left to answer; no traceback.
        raise StarletteHTTPException(400, "client disconnected during the upload") from None
    return b"".join(chunks)


def check_submission(srv: EndpointServer, agency: str, body: bytes) -> tuple[bytes, envelope.DocumentMessage]:
    """The CPU part of a submission (run in the CPU pool): hardened parse, full check of a present signature,
    schema, sender = caller, signing when the server holds the key. Returns (bytes to publish, the message)."""
    # remembered: a recipient server of this process (or, through the records, of this machine) will not check again
    checks = checks_for(srv.verifier, srv.work_dir)
    try:
        msg: envelope.Message | None = checks.check(body)
    except Refusal as refusal:
        if refusal.reason is not Reason.SIGNATURE_MISSING:
            raise
        msg = None
    unsigned = msg is None
    if msg is None:
        checked = srv.verifier_unsigned_ok.verify(body)
        schema.validate(checked.root)
        msg = envelope.from_element(checked.root)
    if not isinstance(msg, envelope.DocumentMessage):
        raise Refusal(Reason.SCHEMA_INVALID, "this is a status message: use POST /v1/documents/{id}/status")
    if msg.sender.organ_id != agency:
        raise Refusal(Reason.FORBIDDEN, f"the document's sender {msg.sender.organ_id} is not your agency")
    check_limits(msg, srv.config.limits.max_recipients)
    if unsigned:
        held = srv.keys.get(agency)
        if held is None:
            raise Refusal(Reason.SIGNATURE_MISSING, "this server does not hold your key: submit a signed document")
        body = sign(body, held.key, held.cert)
        checks.check(body)  # what we publish is exactly what recipients will verify
    return body, msg


def related_documents(msg: envelope.DocumentMessage) -> list[str]:
    """The DocumentIds a revocation, update or replacement acts on (``Bussiness/DocumentId`` and, for a
    replacement, every ``ReplacementInfo/DocumentId``); none for a new document."""
    if not msg.business.doc_type:
        return []
    ids = [msg.business.document_id, *(r.document_id for r in msg.business.replacement_info)]
    return list(dict.fromkeys(i for i in ids if i))


async def check_related(srv: EndpointServer, agency: str, msg: envelope.DocumentMessage) -> None:
    """Only a document's sender may revoke, update or replace it: every document a type 1/2/3 names must be one
    this agency sent (recorded by this server at its submission; moved with the agency on a migration)."""
    related = related_documents(msg)
    if msg.business.doc_type and not related:
        raise Refusal(Reason.SCHEMA_INVALID, "a revocation, update or replacement must name the document it acts on "
                                             "(Bussiness/DocumentId)")
    assert srv.store is not None
    for document_id in related:
        if await srv.store.sent_recipients(agency, document_id) is None:
            raise Refusal(Reason.FORBIDDEN, f"{agency} never sent document {document_id!r}: only its sender may "
                                            "revoke, update or replace it")


def status_about(original: envelope.DocumentMessage | envelope.ResponseFor, agency: str, code: str,
                 description: str) -> tuple[bytes, StatusFields]:
    """The status envelope ``agency`` sends about a received document, and its fields: the router routes it from
    them (``x-axis-status``, :func:`axis.router.core.server_fields`)."""
    st = envelope.new_status(agency, original, code, description)
    return envelope.build(st), StatusFields.of(st)


def status_for(data: bytes, agency: str, code: str, description: str, limit: int) -> tuple[bytes, StatusFields]:
    """:func:`status_about` a received document read from its stored bytes (verified on arrival), parsed up to
    its MessageHeader only: for a row stored before its head was kept (:class:`endpoints.inbox.ReceivedHead`)."""
    return status_about(envelope.document_head(data, max_bytes=limit), agency, code, description)


def row_sha256(row: ReceivedRow) -> str:
    """The hex SHA-256 of a received document's exact bytes: kept at its delivery, or computed for an older row."""
    return row.sha256 or stored_sha256(row.data)


#: A handler of the fast path: the request and the path's groups → the response.
PostHandler = Callable[..., Awaitable[Response]]


class FastPath:
    """ASGI in front of the FastAPI app: the two requests of the traffic itself — ``POST /v1/documents`` for every
    document and ``POST /v1/documents/{id}/status`` for every status — go straight to their handlers, past
    FastAPI's middleware and routing layers (a dozen coroutine layers on the way in and again for the response, a
    measurable share of the host's CPU per document). Their errors are answered by the app's own exception
    handlers, so the responses are exactly those of the routed path; an exception without a handler propagates
    (a 500, as through the app). Everything else goes to the app."""

    def __init__(self, app: FastAPI, posts: Sequence[tuple[str, PostHandler]]) -> None:
        self.app = app
        self.state = app.state
        self._posts = [(re.compile(pattern), handler) for pattern, handler in posts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, handler in self._posts:
                match = pattern.fullmatch(scope["path"])
                if match is not None:
                    await self._answer(handler, match.groups(), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, handler: PostHandler, args: tuple[str, ...], scope: Scope, receive: Receive, send: Send
                      ) -> None:
        request = Request(scope, receive)
        try:
            response = await handler(request, *args)
        except Exception as exc:
            for cls in type(exc).__mro__:
                on_error = self.app.exception_handlers.get(cls)
                if on_error is not None:
                    break
            else:
                raise
            answer = on_error(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)


def create_app(srv: EndpointServer) -> ASGIApp:
    # No /docs, /openapi.json: unauthenticated, and Swagger UI loads from a CDN (contract section 4 is the API's
    # documentation). AXIS_ENDPOINT_DOCS=1 turns them on for development.
    docs = os.environ.get("AXIS_ENDPOINT_DOCS") == "1"
    app = FastAPI(title=f"axis endpoint server {srv.id}", version="1", docs_url="/docs" if docs else None,
                  redoc_url=None, openapi_url="/openapi.json" if docs else None)
    app.state.server = srv
    limit = srv.config.limits.max_envelope_bytes

    @app.exception_handler(Refusal)
    async def _refusal(request: Request, exc: Refusal) -> JSONResponse:
        return refusal_response(exc)

    @app.exception_handler(NotYours)
    async def _not_yours(request: Request, exc: NotYours) -> JSONResponse:
        return problem(404, Reason.FORBIDDEN, "no such document for this agency", "not found")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, None, str(exc.detail))

    async def _broker_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # the broker connection is down or being restored: nothing was published, the client may retry
        return unavailable(f"the message broker is unavailable, retry shortly ({type(exc).__name__})")

    for broker_error in BROKER_ERRORS:
        app.add_exception_handler(broker_error, _broker_unavailable)

    @app.exception_handler(BlobStoreUnavailable)
    async def _blobs_unavailable(request: Request, exc: BlobStoreUnavailable) -> JSONResponse:
        # a big document's store (blobs.url's database) is down: nothing was kept or published, retry (where the
        # database is stays in the server's log)
        log.warning("server %s: %s", srv.id, exc)
        return unavailable("the blob store is unavailable, retry shortly")

    @app.exception_handler(StoreBusy)
    async def _store_busy(request: Request, exc: StoreBusy) -> JSONResponse:
        # another process held the inbox database's write lock too long: nothing was stored, retry
        return unavailable(str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, None, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.exception_handler(TooManyFailures)
    async def _too_many(request: Request, exc: TooManyFailures) -> JSONResponse:
        response = problem(429, Reason.UNAUTHORIZED, str(exc), "too many failed authentication attempts")
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
        return response

    def caller(request: Request, check: Callable[[str | None], str] | None = None) -> str:
        """The authenticated caller: an agency code (``check``, default: this server's agency tokens and, with
        ``client_auth``, the agency's TLS client certificate — endpoints.mtls), behind the failed-authentication
        limit per client address."""
        authenticated = request.scope.get(AUTHENTICATED_AGENCY)  # the /vxp facade's, after its own checks
        if authenticated is not None and check is None:
            return str(authenticated)
        address = request.client.host if request.client else "-"
        now = time.monotonic()
        try:
            srv.auth_limiter.check(address, now)  # over the limit: 429 without looking at the token
        except TooManyFailures:
            srv.metrics.auth_limited.inc()
            raise
        try:
            if check is not None:
                return check(request.headers.get("authorization"))
            agency = srv.tokens.authenticate(request.headers.get("authorization"))
            srv.client_auth.check(agency, request.scope)  # mutual TLS: the certificate must be the agency's too
            return agency
        except Refusal:
            srv.metrics.auth_failed.inc()
            srv.auth_limiter.failed(address, now)
            raise

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "server": srv.id, "kind": srv.server.kind, "agencies": len(srv.local_agencies)}

    def admin(authorization: str | None) -> str:
        if not bearer_matches(authorization, srv.config.admin.token_sha256):
            raise Refusal(Reason.UNAUTHORIZED, "/metrics takes the admin token (Authorization: Bearer <token>)")
        return "admin"

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        # every tenant's counters: the admin token (Prometheus scrapes with it), not an agency's
        caller(request, admin)
        return Response(generate_latest(srv.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/documents", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        agency = caller(request)  # 401/429 are not document refusals: counted apart (auth metrics)
        got: list[bytes] = []
        try:
            return await _submit(request, agency, got)
        except Refusal as r:
            # A refused document never reaches the router: count it here, committed before the 4xx goes out.
            size = r.size if isinstance(r, BodyTooLarge | TooLarge | RefusedUpload) else len(got[0]) if got else 0
            srv.metrics.refused.labels(agency, r.reason.value).inc()
            process_metrics().count_refused(r.reason.value)
            record = refused_record(agency, r.reason.value, size)
            await srv.refusals.record(record)
            # a leaf of the log: the caller's agency (authenticated) and the digest of what it sent; no
            # DocumentId (nothing in refused bytes is proven)
            digest = r.sha256 if isinstance(r, RefusedUpload) else hashlib.sha256(got[0]).hexdigest() if got else ""
            await log_event(Event("refused", now_ms(), agency, "", 0, digest,
                                  reason=r.reason.value, server=srv.id, ref=record.message_id))
            raise

    async def log_event(event: Event) -> None:
        """A door refusal's leaf: best effort — the refusal is answered and counted even if the broker is down."""
        try:
            await srv.publisher.publish(evidence([event]))
        except Exception:
            log.warning("server %s: the evidence of a refusal could not be published", srv.id, exc_info=True)

    async def _submit(request: Request, agency: str, got: list[bytes]) -> JSONResponse:
        if srv.blobs is None:
            body = await read_body(request, limit)
        else:  # big documents allowed: one over limits.inline_max_bytes is streamed to the blob store
            received = await read_or_spool(request, srv.config.limits, srv.blobs)
            if not isinstance(received, bytes):
                return await submit_big(srv, agency, received, request, check_related, request.scope.get(SUBMIT_CHECK))
            body = received
        got.append(body)
        caller = srv.config.agency(agency)
        if caller is not None and not caller.active:  # retired (axis agency retire): reads its inbox, sends nothing
            raise Refusal(Reason.FORBIDDEN, f"agency {agency} is retired: it no longer sends documents")
        body, msg = await run_cpu_for(len(body), check_submission, srv, agency, body)
        agrees = request.scope.get(SUBMIT_CHECK)  # /vxp: the document agrees with the SDK's headers
        if agrees is not None:
            agrees(msg)
        await check_related(srv, agency, msg)
        doc_type = int(msg.business.doc_type)
        recipients = [r.organ_id for r in msg.recipients]
        assert srv.store is not None
        rid, _new = await srv.store.store_sent(agency, document_id=msg.document_id, doc_type=doc_type,
                                               recipients=recipients, subject=msg.subject, data=body)
        await srv.submit(body, {H_SUBMITTED_AT: now_ms()})
        srv.metrics.submitted.labels(agency).inc()
        return JSONResponse({"id": rid, "document_id": msg.document_id, "recipients": recipients}, status_code=202)

    @app.get("/v1/inbox")
    async def inbox(request: Request, unread: bool = False, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        agency = caller(request)
        limit = max(1, min(limit, 1000))
        offset = max(0, offset)
        assert srv.store is not None
        items = await srv.store.inbox(agency, unread=unread, limit=limit, offset=offset)
        return {"items": items, "next_offset": offset + len(items) if len(items) == limit else None}

    async def own_document(agency: str, rid: str) -> tuple[str, ReceivedRow | SentRow]:
        assert srv.store is not None
        received = await srv.store.received_row(agency, rid)
        if received is not None:
            return "received", received
        sent = await srv.store.sent_row(agency, rid)
        if sent is not None:
            return "sent", sent
        raise NotYours(rid)

    @app.api_route("/v1/documents/{rid}", methods=["GET", "HEAD"])
    async def get_document(request: Request, rid: str) -> Response:
        _, row = await own_document(caller(request), rid)
        # byte ranges; a big document streamed from the blob store (endpoints.bigdoc)
        return document_response(srv.blobs, row.data, request)

    @app.post("/v1/documents/{rid}/ack")
    async def ack(request: Request, rid: str) -> dict[str, Any]:
        agency = caller(request)
        assert srv.store is not None
        row = await srv.store.received_row(agency, rid)
        if row is None:
            raise NotYours(rid)
        # the leaf first (confirmed), then the store: a failure in between leaves an ack the client retries
        await srv.publisher.publish(evidence([Event(
            "acked", now_ms(), row.sender, row.document_id, row.doc_type, row_sha256(row),
            agency=agency)]))
        await srv.store.ack(agency, rid)
        await acked(srv, row.data, agency)
        return {"id": rid, "acked": True}

    @app.post("/v1/documents/{rid}/status", status_code=202)
    async def send_status(request: Request, rid: str) -> JSONResponse:
        agency = caller(request)
        try:
            payload = orjson.loads(await read_body(request, 64 * 1024))
        except orjson.JSONDecodeError:
            raise Refusal(Reason.SCHEMA_INVALID, 'expected JSON {"code": "03", "description": "..."}') from None
        code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
        description = str(payload.get("description", "")) if isinstance(payload, dict) else ""
        assert srv.store is not None
        row = await srv.store.received_row(agency, rid)
        if row is None:
            raise NotYours(rid)
        if code == "01":
            raise Refusal(Reason.FORBIDDEN, "status 01 (arrived) is sent automatically by the server")
        if code not in CLIENT_STATUS_CODES:
            raise Refusal(Reason.SCHEMA_INVALID, f"status code {code!r} is not one of {sorted(CLIENT_STATUS_CODES)}")
        kept = row.head
        if kept is not None:  # what the status needs was kept at delivery: no XML to read
            built, fields = status_about(envelope.ResponseFor(
                organ_id=row.sender, document_id=row.document_id, code=kept.doc_code,
                promulgation_date=kept.promulgation_date), agency, code, description)
        else:
            head = await stored_head(srv, row.data)  # a big document's header, from its blob
            built, fields = await run_cpu_for(len(head), status_for, head, agency, code, description, limit)
        await srv.send_status(built, {H_DOC_TYPE: row.doc_type, H_SUBMITTED_AT: now_ms(), H_SHA256: row_sha256(row),
                                      **fields.header()})
        srv.metrics.sent_statuses.labels(agency, code).inc()
        return JSONResponse({"id": rid, "document_id": row.document_id, "code": code, "to": row.sender},
                            status_code=202)

    @app.get("/v1/documents/{rid}/status")
    async def statuses(request: Request, rid: str) -> dict[str, Any]:
        agency = caller(request)
        assert srv.store is not None
        row = await srv.store.sent_row(agency, rid)
        if row is None:
            raise NotYours(rid)
        return {"id": rid, "document_id": row.document_id, "items": await srv.store.statuses_for(agency,
                                                                                               row.document_id)}

    async def find_document(agency: str, document_id: str, sender: str | None) -> Owned:
        """The caller's row of a document by its DocumentId: one it sent (no ``sender``, or itself), else one it
        received from ``sender``; a new document (type 0) before a revocation, update or replacement."""
        assert srv.store is not None
        if sender in (None, agency):
            sent = await srv.store.sent_documents(agency, document_id)
            if sent:
                return "sent", sent[0]
        if sender is not None:
            received = await srv.store.received_documents(agency, sender, document_id)
            if received:
                return "received", received[0]
        raise NotYours(document_id)

    def log_store() -> LogStore:
        assert srv.log is not None
        return srv.log

    def trust() -> tuple[bytes, bytes | None]:
        pki = srv.config.pki
        assert pki.ca is not None
        return pki.ca.read_bytes(), pki.crl.read_bytes() if pki.crl is not None and pki.crl.is_file() else None

    add_evidence_routes(app, log=log_store, caller=caller, own_document=own_document, find_document=find_document,
                        trust=trust)
    add_directory_routes(app, caller=caller, config=lambda: srv.config)
    return VxpFacade(FastPath(app, [("/v1/documents", submit), ("/v1/documents/([^/]+)/status", send_status)]), srv)
