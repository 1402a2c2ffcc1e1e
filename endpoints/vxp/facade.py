"""``/vxp``: the VPCP SDK's protocol on every endpoint server, a thin shell over ``/v1``.

Existing agency software talks to the national axis through the Government Office's Java SDK (SDKVXP 2.0.1); the
shared reference ``vpcp-sdk.md`` gives its wire format and the mapping axis follows. The SDK's configured endpoint
is ``<agency endpoint>/vxp`` and it appends ``/<method>``. This ASGI app sits in front of the endpoint server's app:
any path outside ``/vxp`` goes straight through; a ``/vxp`` call is authenticated from the SDK's signed headers
(:mod:`endpoints.vxp.protocol`) and then served by the ``/v1`` handlers themselves (:mod:`endpoints.vxp.internal`):

======================== ==============================================================================
SDK call                 axis
======================== ==============================================================================
sendEdoc (documents)     ``POST /v1/documents`` (same checks, signing, counting, evidence); DocId = its id
sendEdoc (``status``)    ``POST /v1/documents/{id}/status`` for the received document ResponseFor names
getReceivedEdocList      ``GET /v1/inbox?unread=true`` + the statuses about the caller's sent documents
getEdoc / downloadEdoc   the received document's exact bytes, or the status edXML axis renders
updateStatus             ``done``: ``POST /v1/documents/{id}/ack``; ``processing``/``fail``: recorded
countReceiveEdoc/Status  how many document / status items getReceivedEdocList lists
getSentEdocList          the documents the caller sent, one row per recipient, with their statuses
getAgenciesList(QD20)    ``GET /v1/directory``'s active agencies; getSynchronizeUnit: all, with its version
registerAgency/delete    FAIL FORBIDDEN: the operator owns the directory
======================== ==============================================================================

Decisions where the SDK reference is silent or does not fit axis:

- **Credentials.** systemId = the agency code (it must be hosted on this server), secret = the agency's token.
  The server keeps only the token's SHA-256, and HMAC hashes a key longer than 64 bytes, so the stored digest is
  the MAC key (:func:`endpoints.vxp.protocol.hmac_key`); every token axis issues is 72 characters
  (``axis.config.new_token``).
  A token of 64 bytes or fewer (issued before) cannot be checked: its calls fail UNAUTHORIZED until it is
  re-issued. The cost: for ``/vxp`` the stored digest is as good as the token (the protocol needs a
  key-equivalent on the server; ``/v1`` bearer tokens stay safe from a leaked digest). The failed-authentication
  limit and mutual TLS (``client_auth``) apply exactly as for ``/v1``.
- **No freshness check**: the SDK fixes its timestamp when the service object is built (reference section 3).
- **sendEdoc's body** must match ``hash-file`` (compared as the SDK writes it); a missing ``hash-file`` is
  UNAUTHORIZED (the body would not be bound to the MAC), a mismatch SIGNATURE_INVALID; both are refused before
  ``/v1`` sees the bytes, so they are not counted as document refusals (as a wrong token is not). ``from``, when
  given, must be the systemId (FORBIDDEN); ``to``, when given, must name the document's recipients and
  ``messagetype`` must agree with BussinessDocType (SCHEMA_INVALID, checked by ``/v1`` and counted there).
  A status sent with sendEdoc answers DocId = the inbox id of the document it is about; what axis takes from it is
  what ``POST /v1/documents/{id}/status`` takes (ResponseFor, StatusCode, Description: the sender must be the
  systemId, a signature on it is not checked) and the status travels as ``/v1`` builds it.
- **Lists** put documents and statuses together, oldest first. ``getEdoc``/``downloadEdoc``/``updateStatus``
  accept the caller's received documents and status items, also once taken (agency software may download again);
  anything else is FORBIDDEN (downloadEdoc: 404, empty body). ``getSentEdocList`` with a docId that is not one of
  the caller's sent documents answers an empty list, not FAIL: the SDK re-sends a stale docId of an earlier call.
  Without a docId it lists the last :data:`SENT_LIST_MAX` documents (the SDK has no paging).
- **updateStatus marks** (``processing``, ``fail``, a status item's ``done``) are kept per (agency, item) in the
  server's store (``axis_item_states``); they do not move with an agency to another server (statuses are renumbered
  there), so after a live move its status items are listed again. A received document's ``done`` is its ack, which
  moves with it.
- **receiverDocId / receiveStatus** are known only when the recipient's inbox is in this server's store; for a
  recipient elsewhere they are ``""`` and ``receiveStatus`` is ``new`` once its status 01 arrived.
- **Error codes**: reason codes of contract section 2, plus ``UNAVAILABLE`` (broker or store busy: nothing was
  taken, retry) and ``NOT_FOUND`` (no such SDK call). Unexpected errors are logged and answered FAIL ``INTERNAL``.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from axis.broker.transport import BROKER_ERRORS
from axis.core import envelope
from axis.core.blobref import read_stored
from axis.core.ratelimit import TooManyFailures
from axis.core.reasons import Reason, Refusal
from axis.core.vpcp import DOC_TYPES, ITEM_STATES, STATUS, sdk_hash_file, strip_sdk_body
from endpoints.cpu import run_cpu_for
from endpoints.inbox import StoreBusy
from endpoints.server import EndpointServer
from endpoints.vxp import mapping
from endpoints.vxp.internal import SUBMIT_CHECK, Answer, call
from endpoints.vxp.protocol import UNAVAILABLE, SignedRequest, answer, fail, hmac_key, mac_ok, read_signed

log = logging.getLogger("axis.endpoint.vxp")
PREFIX = "/vxp"
JSON = "application/json"
SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Nothing was taken, the client may retry: the broker is down or the store is locked by another process.
RETRYABLE: tuple[type[Exception], ...] = (StoreBusy, *BROKER_ERRORS)
SMALL_BODY = 64 * 1024
#: getSentEdocList without a docId: the most recent documents only (the SDK has no paging; each row costs reads)
SENT_LIST_MAX = 500  # what any call but sendEdoc may carry (its body means nothing: everything is in headers)


class Failed(Exception):
    """An SDK call refused: answered ``{"status": "FAIL", "ErrorCode": code, …}``."""

    def __init__(self, code: str, desc: str, http: int = 200) -> None:
        super().__init__(desc)
        self.code, self.desc, self.http = code, desc, http


def failed_from(ans: Answer) -> Failed:
    """The SDK's refusal for a ``/v1`` answer that is not a success."""
    if ans.status == 503:  # nothing was taken: 503 (with the FAIL body) so that retrying clients retry
        return Failed(UNAVAILABLE, ans.detail or "retry shortly", 503)
    code = ans.reason or {401: "UNAUTHORIZED", 404: "FORBIDDEN", 413: "TOO_LARGE"}.get(ans.status, "SCHEMA_INVALID")
    return Failed(code, ans.detail or f"HTTP {ans.status}")


@dataclass(frozen=True, slots=True)
class Call:
    scope: Scope
    agency: str
    request: SignedRequest
    body: bytes
    too_large: bool


Handler = Callable[["VxpFacade", Call], Awaitable[Response]]


def ok(**fields: Any) -> Response:
    return Response(answer(**fields), media_type=JSON)


class VxpFacade:
    """ASGI: ``/vxp/<method>`` served here, everything else by ``app`` (the endpoint server's own app)."""

    def __init__(self, app: ASGIApp, srv: EndpointServer) -> None:
        self.app = app
        self.srv = srv
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        response = await self._serve(scope, receive, path[len(PREFIX) + 1:])
        await response(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, method: str) -> Response:
        handler = CALLS.get(method)
        if handler is None:
            self._count("unknown", "NOT_FOUND")
            return Response(orjson.dumps({"status": "FAIL", "ErrorCode": "NOT_FOUND", "ErrorDesc": f"no SDK call "
                            f"{method[:100]!r} under /vxp (see README: the VPCP SDK facade)"}), 404, media_type=JSON)
        limit = self.srv.config.limits.max_envelope_bytes + 2 if method == "sendEdoc" else SMALL_BODY
        code, desc, http = "OK", "", 200
        try:
            agency, request = self._authenticate(scope)
            body, too_large = await _read(receive, limit)
            response = await handler(self, Call(scope, agency, request, body, too_large))
            self._count(method, "OK")
            return response
        except Failed as f:
            code, desc, http = f.code, f.desc, f.http
        except Refusal as r:
            code, desc, http = r.reason.value, r.detail, 401 if r.reason is Reason.UNAUTHORIZED else 404
        except TooManyFailures as exc:
            code, desc, http = Reason.UNAUTHORIZED.value, str(exc), 429
        except RETRYABLE as exc:
            code, desc, http = UNAVAILABLE, f"retry shortly ({type(exc).__name__})", 503
        except Exception:
            log.exception("server %s: /vxp/%s failed", self.srv.id, method)
            code, desc, http = "INTERNAL", "internal error (logged on the server)", 500
        self._count(method, code)
        return _refused(method == "downloadEdoc", code, desc, http, method)

    def _count(self, call: str, result: str) -> None:
        try:
            self.srv.metrics.vxp_calls.labels(call, result).inc()
        except Exception:  # monitoring never breaks a call
            log.debug("vxp metrics", exc_info=True)

    def _authenticate(self, scope: Scope) -> tuple[str, SignedRequest]:
        """The agency of a signed SDK request, behind the same failed-authentication limit and mutual-TLS rule
        as ``/v1`` (endpoints.app caller())."""
        srv = self.srv
        client = scope.get("client")
        address = client[0] if client else "-"
        now = time.monotonic()
        try:
            srv.auth_limiter.check(address, now)
        except TooManyFailures:
            srv.metrics.auth_limited.inc()
            raise
        try:
            request = read_signed(scope.get("headers", ()))
            code = request.system_id
            agency = srv.config.agency(code) if code in srv.local_agencies else None
            if agency is None:
                raise Refusal(Reason.UNAUTHORIZED, f"systemId {code[:64]!r} is not an agency of this server")
            if not agency.token_sha256 or not mac_ok(hmac_key(agency.token_sha256), request):
                raise Refusal(Reason.UNAUTHORIZED, "XroadVnpt-hash-header does not match: wrong secret (the secret "
                                                   "is the agency's token, more than 64 characters)")
            srv.client_auth.check(code, scope)
        except Refusal:
            srv.metrics.auth_failed.inc()
            srv.auth_limiter.failed(address, now)
            raise
        return code, request

    @property
    def _store(self) -> Any:
        assert self.srv.store is not None
        return self.srv.store

    # -- the calls ---------------------------------------------------------------------------------------------
    async def send_edoc(self, c: Call) -> Response:
        messagetype = c.request.get("messagetype")
        sender = c.request.get("from")
        if sender and sender != c.agency:
            raise Failed(Reason.FORBIDDEN.value, f"from {sender} is not your systemId {c.agency}")
        document = strip_sdk_body(c.body)
        if not c.too_large:
            hashed = c.request.get("hash-file")
            if not hashed:
                raise Failed(Reason.UNAUTHORIZED.value, "sendEdoc needs XroadVnpt-hash-file (binds the body)")
            if not hmac.compare_digest(sdk_hash_file(document), hashed.lower()):
                raise Failed(Reason.SIGNATURE_INVALID.value, "the body does not match XroadVnpt-hash-file")
        if messagetype == STATUS:
            return await self._send_status(c, document)
        if messagetype is not None and messagetype not in DOC_TYPES:
            raise Failed(Reason.SCHEMA_INVALID.value, f"unknown messagetype {messagetype!r}: one of "
                                                      f"{', '.join([*DOC_TYPES, STATUS])}")
        check = mapping.submit_check(messagetype, c.request.get("to"))
        ans = await call(self.app, c.scope, c.agency, "POST", "/v1/documents", body=document,
                         content_type="application/xml", extra={SUBMIT_CHECK: check})
        if ans.status != 202:
            raise failed_from(ans)
        return ok(DocId=str(ans.json()["id"]))

    async def _send_status(self, c: Call, data: bytes) -> Response:
        limit = self.srv.config.limits.max_envelope_bytes
        if c.too_large:
            raise Failed(Reason.TOO_LARGE.value, f"a status message over {limit} bytes")
        msg = await run_cpu_for(len(data), envelope.parse, data, max_bytes=limit)
        if not isinstance(msg, envelope.StatusMessage):
            raise Failed(Reason.SCHEMA_INVALID.value, "messagetype status needs a status message (MessageHeader "
                                                      "with ResponseFor and StatusCode)")
        if msg.sender.organ_id != c.agency:
            raise Failed(Reason.FORBIDDEN.value, f"the status's sender {msg.sender.organ_id} is not your agency")
        rows = await self._store.received_documents(c.agency, msg.response_for.organ_id, msg.response_for.document_id)
        if not rows:
            raise Failed(Reason.FORBIDDEN.value, "ResponseFor names no document you received")
        rid = rows[0].id
        payload = orjson.dumps({"code": msg.status_code, "description": msg.description})
        ans = await call(self.app, c.scope, c.agency, "POST", f"/v1/documents/{rid}/status", body=payload)
        if ans.status != 202:
            raise failed_from(ans)
        return ok(DocId=rid)

    async def _listed(self, c: Call, *, documents: bool, statuses: bool, kind: str | None = None
                      ) -> list[dict[str, Any]]:
        """What getReceivedEdocList lists: documents not yet taken (of ``kind``, if given) and statuses about the
        caller's documents not yet marked done, oldest first."""
        states: dict[str, str] = await self._store.item_states(c.agency)
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while documents and offset is not None:
            ans = await call(self.app, c.scope, c.agency, "GET", "/v1/inbox",
                             query=f"unread=true&limit=1000&offset={offset}")
            if ans.status != 200:
                raise failed_from(ans)
            page = ans.json()
            out += [mapping.received_entry(item, c.agency, states.get(item["id"])) for item in page["items"]
                    if kind is None or item["kind"] == kind]
            offset = page["next_offset"]
        if statuses:
            for row in await self._store.statuses_of(c.agency):
                state = states.get(mapping.status_doc_id(row["id"]))
                if state != "done":
                    out.append(mapping.status_entry(row, c.agency, state))
        out.sort(key=lambda e: str(e["created_time"]))
        return out

    async def received_list(self, c: Call) -> Response:
        kind = c.request.get("messagetype")
        if kind is not None and kind != STATUS and kind not in DOC_TYPES:
            raise Failed(Reason.SCHEMA_INVALID.value, f"unknown messagetype {kind!r}")
        data = await self._listed(c, documents=kind != STATUS, statuses=kind in (None, STATUS),
                                  kind=kind if kind in DOC_TYPES else None)
        return ok(data=data)

    async def count_edoc(self, c: Call) -> Response:
        return ok(count=len(await self._listed(c, documents=True, statuses=False)))

    async def count_status(self, c: Call) -> Response:
        return ok(count=len(await self._listed(c, documents=False, statuses=True)))

    async def _status_row(self, agency: str, doc_id: str) -> dict[str, Any] | None:
        number = mapping.status_row_id(doc_id)
        if number is None or number >= 2**63:
            return None
        row: dict[str, Any] | None = await self._store.status_by_id(agency, number)
        return row

    async def _item_bytes(self, c: Call) -> tuple[str, bytes]:
        """(docId, bytes) of one of the caller's items, else Failed(FORBIDDEN)."""
        doc_id = c.request.get("docid") or ""
        if not SAFE_ID.fullmatch(doc_id):
            raise Failed(Reason.FORBIDDEN.value, "no such document for this agency")
        status = await self._status_row(c.agency, doc_id)
        if status is not None:
            sent = await self._store.sent_documents(c.agency, status["document_id"])
            head = None
            if sent:
                try:
                    head = envelope.document_head(sent[0].data, max_bytes=self.srv.config.limits.max_envelope_bytes)
                except Refusal:
                    head = None
            return doc_id, mapping.render_status(status, c.agency, head)
        row = await self._store.received_row(c.agency, doc_id)
        if row is None:
            raise Failed(Reason.FORBIDDEN.value, "no such document for this agency")
        if read_stored(row.data) is not None:  # a big document by reference (endpoints.bigdoc): not held in memory
            raise Failed(Reason.TOO_LARGE.value, "this document is over limits.inline_max_bytes: fetch it with "
                                                 "GET /v1/documents/{id} (streamed, byte ranges)")
        return doc_id, bytes(row.data)

    async def get_edoc(self, c: Call) -> Response:
        _, data = await self._item_bytes(c)
        return ok(data=base64.b64encode(data).decode("ascii"))

    async def download_edoc(self, c: Call) -> Response:
        _, data = await self._item_bytes(c)
        return Response(data, media_type="application/octet-stream")

    async def update_status(self, c: Call) -> Response:
        doc_id = c.request.get("docid") or ""
        state = c.request.get("status") or ""
        if state not in ITEM_STATES:
            raise Failed(Reason.SCHEMA_INVALID.value,
                         f"status {state!r} is not one of {', '.join(sorted(ITEM_STATES))}")
        if await self._status_row(c.agency, doc_id) is None:
            if not SAFE_ID.fullmatch(doc_id) or await self._store.received_row(c.agency, doc_id) is None:
                raise Failed(Reason.FORBIDDEN.value, "no such document for this agency")
            if state == "done":  # the ack is the record (acked_at): the document leaves the list for good
                ans = await call(self.app, c.scope, c.agency, "POST", f"/v1/documents/{doc_id}/ack")
                if ans.status != 200:
                    raise failed_from(ans)
                return ok()
        await self._store.set_item_state(c.agency, doc_id, state)
        return ok()

    async def sent_list(self, c: Call) -> Response:
        doc_id = c.request.get("docid")
        if doc_id:
            row = await self._store.sent_row(c.agency, doc_id) if SAFE_ID.fullmatch(doc_id) else None
            docs = [] if row is None else [
                {"id": row.id, "document_id": row.document_id, "doc_type": row.doc_type,
                 "recipients": orjson.loads(row.recipients), "subject": row.subject, "created_at": row.created_at}]
        else:
            docs = await self._store.sent_list(c.agency, SENT_LIST_MAX)
        statuses: list[dict[str, Any]] = await self._store.statuses_of(c.agency) if docs else []
        states: dict[str, dict[str, str]] = {}
        data: list[dict[str, Any]] = []
        limit = self.srv.config.limits.max_envelope_bytes
        for doc in docs:
            row = await self._store.sent_row(c.agency, doc["id"])
            notation = ""
            if row is not None:
                try:
                    notation = mapping.notation_of(envelope.document_head(row.data, max_bytes=limit))
                except Refusal:
                    notation = ""
            received: dict[str, tuple[str, str]] = {}
            for recipient in doc["recipients"]:
                if recipient not in self.srv.local_agencies:
                    continue
                copies = [r for r in await self._store.received_documents(recipient, c.agency, doc["document_id"])
                          if r.doc_type == doc["doc_type"]]
                if copies:
                    if recipient not in states:
                        states[recipient] = await self._store.item_states(recipient)
                    copy = copies[0]
                    received[recipient] = (copy.id, mapping.item_state(copy.acked_at is not None,
                                                                       states[recipient].get(copy.id)))
            mine = [s for s in statuses if s["document_id"] == doc["document_id"]]
            data += mapping.sent_entries({**doc, "sender": c.agency}, notation, mine, received)
        return ok(data=data)

    async def _directory(self, c: Call) -> dict[str, Any]:
        """``GET /v1/directory`` (the whole directory, with its version)."""
        ans = await call(self.app, c.scope, c.agency, "GET", "/v1/directory")
        if ans.status != 200:
            raise failed_from(ans)
        body: dict[str, Any] = ans.json()
        return body

    async def agencies(self, c: Call) -> Response:
        return ok(data=mapping.agency_entries((await self._directory(c))["agencies"]))

    async def agencies_qd20(self, c: Call) -> Response:
        return ok(data=mapping.qd20_entries((await self._directory(c))["agencies"]))

    async def synchronize(self, c: Call) -> Response:
        listing = await self._directory(c)
        directory = self.srv.config.directory

        def server_of(code: str) -> str:
            agency = directory.agency(code)
            return agency.server if agency is not None else ""

        return ok(data=mapping.synchronize_entries(listing["agencies"], int(listing["version"]), server_of))

    async def operator_only(self, c: Call) -> Response:
        raise Failed(Reason.FORBIDDEN.value, "the axis operator owns the directory (axis configuration); agency "
                                             "software cannot register or delete agencies")


CALLS: dict[str, Handler] = {
    "sendEdoc": VxpFacade.send_edoc,
    "getReceivedEdocList": VxpFacade.received_list,
    "getSentEdocList": VxpFacade.sent_list,
    "getEdoc": VxpFacade.get_edoc,
    "downloadEdoc": VxpFacade.download_edoc,
    "countReceiveEdoc": VxpFacade.count_edoc,
    "countReceiveStatus": VxpFacade.count_status,
    "updateStatus": VxpFacade.update_status,
    "getAgenciesList": VxpFacade.agencies,
    "getAgenciesListQD20": VxpFacade.agencies_qd20,
    "getSynchronizeUnit": VxpFacade.synchronize,
    "registerAgency": VxpFacade.operator_only,
    "deleteAgency": VxpFacade.operator_only,
}


def _refused(download: bool, code: str, desc: str, http: int, method: str) -> Response:
    """A refusal as the SDK reads it: a FAIL body with HTTP 200 (the SDK ignores status codes; 429/503/500 keep
    theirs for proxies and logs); downloadEdoc: the status with an EMPTY body (any body counts as a success)."""
    if download:
        return Response(b"", http if http != 200 else 404)
    extra = {"DocId": ""} if method == "sendEdoc" else {}  # without DocId the SDK discards sendEdoc's answer
    return Response(fail(code, desc, **extra), http if http >= 429 else 200, media_type=JSON)


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body up to ``limit`` bytes (True when there was more: then only ``limit + 1`` bytes are kept,
    enough for ``/v1`` to refuse TOO_LARGE and count it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Failed("UNAVAILABLE", "the client disconnected during the upload")
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            return b"".join(chunks)[: limit + 1], True
        if not message.get("more_body"):
            return b"".join(chunks), False
