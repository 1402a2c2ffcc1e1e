"""Big documents at the endpoint server: streamed in at the door, checked with bounded memory, stored and served
by reference (axis.core.blobref, axis.blobs).

- :func:`read_or_spool`: the request body; up to ``limits.inline_limit`` in memory (the inline path, unchanged),
  above it streamed to a temporary file of the blob store while hashed — never a full copy in memory — up to
  ``limits.document_limit`` (TOO_LARGE above, as soon as it passes);
- :func:`submit_big`: the streamed document verified (:func:`axis.core.streamverify.verify_stream`), schema, sender
  = caller, recipients' limit, then committed into the blob store under its SHA-256, held (``submitted.<server>``)
  until the router took it, recorded as sent (its reference in place of the bytes) and published as a
  submission with an empty body and the ``x-axis-blob`` header. A big document must be signed by its agency: the
  server does not sign documents it does not hold in memory (SIGNATURE_MISSING). Refused: the temporary file is
  removed, nothing was published;
- :class:`BigChecks`: a delivered reference checked once per host process (like endpoints.checks.DeliveryChecks,
  keyed by the SHA-256, the certificate's time, CRL and usage checked again at every use);
- :func:`document_response`: ``GET``/``HEAD /v1/documents/{id}`` — the exact signed bytes (a big document's streamed
  from the store) with ``Range: bytes=…`` (206, one range; 416 past the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from axis.blobs import BlobMissing, BlobStore, BlobStoreUnavailable, Spool
from axis.config.model import Limits
from axis.core import envelope, schema
from axis.core.blobref import BlobRef, RangeNotSatisfiable, parse_range, read_stored, submitted_hold
from axis.core.reasons import Reason, Refusal
from axis.core.routing import check_limits
from axis.core.streamverify import verify_stream
from axis.core.verify import CertFacts, check_time_revocation_usage
from axis.core.wire import H_BLOB, H_SUBMITTED_AT, KIND_DOCUMENT, now_ms, submission

if TYPE_CHECKING:
    from endpoints.server import EndpointServer

log = logging.getLogger("axis.endpoint")


class TooLarge(Refusal):
    """TOO_LARGE with the size known when refusing."""

    def __init__(self, size: int, detail: str) -> None:
        super().__init__(Reason.TOO_LARGE, detail)
        self.size = size


class RefusedUpload(Refusal):
    """A streamed document's refusal, with the size and SHA-256 of what was sent (for the refusal's count and
    its leaf in the evidence log, as an inline body's)."""

    def __init__(self, refusal: Refusal, size: int, sha256: str) -> None:
        super().__init__(refusal.reason, refusal.detail)
        self.size = size
        self.sha256 = sha256


async def read_or_spool(request: Request, limits: Limits, blobs: BlobStore) -> bytes | Spool:
    """The body in memory when it is at most ``limits.inline_limit`` bytes, else a :class:`Spool` holding it."""
    limit, inline = limits.document_limit, limits.inline_limit
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    if declared is not None and declared > limit:
        raise TooLarge(declared, f"{declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []  # in memory up to the inline limit; then what is not yet written to the spool
    size = pending = 0
    spool: Spool | None = None
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(size, f"more than the limit of {limit} bytes")
            chunks.append(chunk)
            pending += len(chunk)
            if spool is None and size > inline:
                spool = blobs.spool()
            if spool is not None and pending >= SPOOL_WRITE:
                # written (and hashed) in a worker thread, 1 MB at a time: a disk under writeback pressure never
                # stalls the event loop of every server of this host
                await asyncio.to_thread(spool.write, b"".join(chunks))
                chunks, pending = [], 0
        if spool is not None and chunks:
            await asyncio.to_thread(spool.write, b"".join(chunks))
    except ClientDisconnect:
        if spool is not None:
            spool.discard()
        raise StarletteHTTPException(400, "client disconnected during the upload") from None
    except BaseException:
        if spool is not None:
            spool.discard()
        raise
    return spool if spool is not None else b"".join(chunks)


#: the door writes a spooled upload in pieces of at least this many bytes
SPOOL_WRITE = 1024 * 1024


#: big documents verified at once per host process (each holds its small tree, a chunk and the parser's buffer, ~10-15
#: MB): the host's memory stays bounded whatever the number of big uploads and deliveries in flight
BIG_VERIFICATIONS = 2
_VERIFYING = threading.BoundedSemaphore(BIG_VERIFICATIONS)


class BigChecks:
    """References verified by this host process (SHA-256 → message and certificate facts), at most ``size``."""

    def __init__(self, verifier: Any, size: int = 256) -> None:
        self.verifier = verifier
        self.size = size
        self._done: OrderedDict[str, tuple[envelope.DocumentMessage, CertFacts | None]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, chunks: Any, sha256: str | None, max_bytes: int) -> tuple[envelope.DocumentMessage, str]:
        """The message of the signed document read from ``chunks`` (Refusal otherwise) and its SHA-256; a
        ``sha256`` already verified here is not read again."""
        if sha256 is not None:
            with self._lock:
                done = self._done.get(sha256)
            if done is not None:
                msg, facts = done
                if facts is not None:
                    check_time_revocation_usage(facts, self.verifier.policy.clock(), self.verifier.revoked,
                                                self.verifier.crl_fresh_until)
                return msg, sha256
        with _VERIFYING:
            verified, facts = verify_stream(self.verifier, chunks, max_bytes=max_bytes)
        if sha256 is not None and verified.sha256 != sha256:
            raise Refusal(Reason.SIGNATURE_INVALID, "the stored document does not match its reference's digest")
        schema.validate(verified.root)
        read = envelope.from_element(verified.root)
        if not isinstance(read, envelope.DocumentMessage):
            raise Refusal(Reason.SCHEMA_INVALID, "this is a status message: use POST /v1/documents/{id}/status")
        kept = dataclasses.replace(read, attachments=())  # their content is in the blob, not in the small tree
        with self._lock:
            self._done[verified.sha256] = (kept, facts)
            if len(self._done) > self.size:
                self._done.popitem(last=False)
        return kept, verified.sha256


#: the checks of the last few verifiers of this process (a reload makes a new verifier; older ones are dropped)
_checks: OrderedDict[int, BigChecks] = OrderedDict()
_checks_lock = threading.Lock()


def big_checks_for(verifier: Any) -> BigChecks:
    """The process's :class:`BigChecks` for ``verifier`` (a reload's new verifier starts afresh)."""
    with _checks_lock:
        checks = _checks.get(id(verifier))
        if checks is None or checks.verifier is not verifier:
            checks = _checks[id(verifier)] = BigChecks(verifier)
            while len(_checks) > 4:
                _checks.popitem(last=False)
        return checks


def check_blob(srv: EndpointServer, ref: BlobRef) -> tuple[envelope.DocumentMessage, str]:
    """CPU and disk part of a delivered reference (in a worker thread): the full check of the stored bytes."""
    assert srv.blobs is not None
    try:
        return big_checks_for(srv.verifier).check(srv.blobs.chunks(ref), ref.sha256, srv.config.limits.document_limit)
    except BlobMissing:
        raise Refusal(Reason.XML_MALFORMED, f"the referenced document {ref.sha256} is not in the blob store") from None


def _check_submission(srv: EndpointServer, agency: str, spool: Spool) -> envelope.DocumentMessage:
    try:
        msg, _ = big_checks_for(srv.verifier).check(spool.chunks(), None, srv.config.limits.document_limit)
    except Refusal as refusal:
        if refusal.reason is Reason.SIGNATURE_MISSING:
            raise Refusal(Reason.SIGNATURE_MISSING, "a document over limits.inline_max_bytes must be signed by its "
                                                    "agency (the server signs only the documents it holds in memory)"
                          ) from None
        raise
    if msg.sender.organ_id != agency:
        raise Refusal(Reason.FORBIDDEN, f"the document's sender {msg.sender.organ_id} is not your agency")
    check_limits(msg, srv.config.limits.max_recipients)
    return msg


async def submit_big(srv: EndpointServer, agency: str, spool: Spool, request: Request,
                     check_related: Callable[[EndpointServer, str, envelope.DocumentMessage], Awaitable[None]],
                     submit_check: Any = None) -> JSONResponse:
    """Check, keep and publish a streamed document (see the module docstring)."""
    assert srv.blobs is not None and srv.store is not None
    try:
        caller = srv.config.agency(agency)
        if caller is not None and not caller.active:  # retired (axis agency retire): reads its inbox, sends nothing
            raise Refusal(Reason.FORBIDDEN, f"agency {agency} is retired: it no longer sends documents")
        msg = await asyncio.to_thread(_check_submission, srv, agency, spool)
        if submit_check is not None:
            submit_check(msg)
        await check_related(srv, agency, msg)
    except Refusal as refusal:
        spool.discard()
        raise RefusedUpload(refusal, spool.size, spool.sha256) from None
    except BaseException:
        spool.discard()
        raise
    # held before it exists as a blob, until the router took it (axis.router.blobs): never a moment unheld
    # (in a worker thread, as every blob store call here: a PostgreSQL store goes over the network)
    try:
        await asyncio.to_thread(srv.blobs.hold, spool.sha256, submitted_hold(srv.id))
    except BaseException:
        spool.discard()
        raise
    try:
        ref = await asyncio.to_thread(spool.commit)
    except BaseException:
        spool.discard()
        with contextlib.suppress(BlobStoreUnavailable):  # else a stale hold row stays (bytes kept, not collected)
            await asyncio.to_thread(srv.blobs.release, spool.sha256, submitted_hold(srv.id))
        raise
    recipients = [r.organ_id for r in msg.recipients]
    rid, _new = await srv.store.store_sent(agency, document_id=msg.document_id, doc_type=int(msg.business.doc_type),
                                           recipients=recipients, subject=msg.subject, data=ref.stored)
    await srv.publisher.publish(submission(b"", srv.id, KIND_DOCUMENT, **{H_SUBMITTED_AT: now_ms(),
                                                                          H_BLOB: ref.header}))
    srv.metrics.submitted.labels(agency).inc()
    return JSONResponse({"id": rid, "document_id": msg.document_id, "recipients": recipients, "size": ref.size},
                        status_code=202)


def stored_sha256(data: bytes) -> str:
    """The hex SHA-256 of the document a stored row stands for (its bytes, or the blob it references)."""
    ref = read_stored(data)
    return ref.sha256 if ref is not None else hashlib.sha256(data).hexdigest()


async def stored_head(srv: EndpointServer, data: bytes) -> bytes:
    """The beginning of a stored document (its header): the bytes themselves, or the blob's first 4 MB."""
    ref = read_stored(data)
    if ref is None:
        return data
    try:
        if srv.blobs is None:
            raise BlobMissing(ref.sha256)
        return await asyncio.to_thread(srv.blobs.head, ref)
    except BlobMissing:
        raise StarletteHTTPException(410, "the document is no longer kept (blob store retention)") from None


def document_response(blobs: BlobStore | None, data: bytes, request: Request) -> Response:
    """``GET``/``HEAD /v1/documents/{id}``: the document's exact bytes — a row's own, or streamed from the blob store
    for a big document — with ``Accept-Ranges: bytes`` and one byte range when asked (RFC 9110 section 14: 206 with
    ``Content-Range``, 416 past the end; several ranges or a malformed header: the whole document). ``HEAD``: the
    headers alone. A big document no longer kept (past its retention, every recipient acked): 410."""
    ref = read_stored(data)
    if ref is not None and (blobs is None or not blobs.exists(ref)):
        return JSONResponse({"type": "about:blank", "title": "gone", "status": 410, "reason": None,
                             "detail": "the document is no longer kept (blob store retention)"}, status_code=410,
                            media_type="application/problem+json")
    size = ref.size if ref is not None else len(data)
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = (wanted.start, wanted.end) if wanted is not None else (0, size - 1)
    status = 206 if wanted is not None else 200
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1)}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if ref is not None:
        headers["ETag"] = f'"{ref.sha256}"'
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/xml")
    if ref is None:
        return Response(data if wanted is None else data[start:end + 1], status_code=status, headers=headers,
                        media_type="application/xml")
    assert blobs is not None

    async def body() -> AsyncIterator[bytes]:
        pieces = blobs.chunks(ref, start, end)
        try:
            while True:
                piece = await asyncio.to_thread(next, pieces, None)
                if piece is None:
                    return
                yield piece
        finally:
            pieces.close()  # the client may go away mid-download: the file is closed now

    return StreamingResponse(body(), status_code=status, headers=headers, media_type="application/xml")


async def acked(srv: EndpointServer, data: bytes, agency: str) -> None:
    """A recipient acked a document: its hold on the blob goes; the blob itself goes too when nothing else holds
    it and its retention is over (else the periodic collection takes it later). Never fails the ack."""
    ref = read_stored(data)
    if ref is None or srv.blobs is None:
        return
    blobs, retention = srv.blobs, srv.config.blobs.retention_days * 86400

    def release() -> None:
        blobs.release(ref.sha256, agency)
        blobs.collect_one(ref.sha256, retention)

    try:
        await asyncio.to_thread(release)
    except Exception:
        log.exception("server %s: releasing blob %s after an ack failed (the collection retries)", srv.id, ref.sha256)
