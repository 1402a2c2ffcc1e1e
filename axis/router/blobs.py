"""The router's side of big documents: a submission by reference (``x-axis-blob``, an empty body) is decided as an
inline one, from the blob's exact bytes.

Where the router reads the signed header fields (sender, recipients, DocumentId, type): from the blob itself, not
from anything the door passed along. The door's verification is not evidence the router can check (a header is
only what the publishing server claims), and "the router verifies the signature" stays true whatever a server
publishes: the blob is read from the shared store and verified with bounded memory
(:func:`axis.core.streamverify.verify_stream`: ~1.3 s of CPU and ~45 MB for 200 MB), its digest compared with the
reference's name, and the same decisions follow (:class:`axis.router.core.RouterCore`) — routes, refusals, counts,
evidence. The outcome is then made *by reference* (:func:`by_reference`): deliveries and dead letters carry the
header and an empty body, and every digest is the blob's (the SHA-256 of the exact signed bytes, as for an inline
document: the log's leaves are the same).

A forward (``x-axis-kind: forward`` of a document by reference, an agency that moved during a live move) is decided
as :mod:`axis.router.forward` decides it, from the verified blob: deliveries by reference to the agencies' current
servers, nothing counted, a refusal to the dead letters only.

Holds (axis.core.blobref): before the deliveries are published the router holds the blob for every recipient agency
(released by its endpoint server when the agency acks); once the outcome is published and the message acked,
:meth:`BlobRouting.settled` releases the door's ``submitted.<server>`` hold. A crash in between redelivers the
message: holding again changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from axis.blobs import BlobMissing, BlobStore, BlobStoreUnavailable
from axis.config.model import Limits
from axis.core import envelope, schema
from axis.core.blobref import BlobRef, submitted_hold
from axis.core.reasons import Reason, Refusal
from axis.core.routing import check_limits
from axis.core.streamverify import verify_stream
from axis.core.wire import (
    EX_DELIVER,
    EX_DLX,
    H_BLOB,
    H_BOUNCES,
    H_DOC_TYPE,
    H_DOCUMENT_ID,
    H_FORWARD_KIND,
    H_KIND,
    H_RECIPIENTS,
    H_SENDER,
    H_SERVER,
    KIND_DOCUMENT,
    KIND_FORWARD,
    KIND_REFUSAL,
    Outgoing,
    blob_of,
    header_codes,
    header_text,
)
from axis.router.core import Outcome, RouterCore
from axis.router.forward import _bounces, _targets

_EMPTY = hashlib.sha256(b"").hexdigest()

log = logging.getLogger("axis.router")


@dataclasses.dataclass(slots=True)
class BlobOutcome(Outcome):
    """An outcome of a submission by reference: what to release once it is settled."""

    ref: BlobRef | None = None
    server: str = ""


def by_reference(out: Outcome, ref: BlobRef, claims: tuple[str, str] | None = None) -> Outcome:
    """The outcome decided on an empty body, made about the blob: the header on deliveries and dead letters, the
    blob's digest and size in events, counts and refusal notices. ``claims``: the (sender, DocumentId) the blob's
    header claims, for a refusal nobody's signature proved (addressed as the inline path addresses it: marked
    unverified, so that the publishing server records it only for a submission of exactly these bytes)."""
    outgoing = []
    for o in out.outgoing:
        if o.exchange == EX_DLX or (o.exchange == EX_DELIVER and o.headers.get(H_KIND) == KIND_DOCUMENT):
            headers = {**o.headers, H_BLOB: ref.header}
            if o.exchange == EX_DLX and claims and H_SENDER not in headers:
                headers.update({H_SENDER: claims[0], H_DOCUMENT_ID: claims[1]})
            o = dataclasses.replace(o, headers=headers)
        elif o.exchange == EX_DELIVER and o.headers.get(H_KIND) == KIND_REFUSAL:
            notice = orjson.loads(o.body)
            if notice.get("sha256") == _EMPTY:
                notice["sha256"] = ref.sha256
                headers = dict(o.headers)
                if claims and not notice.get("sender"):
                    notice["sender"], notice["document_id"] = claims
                    headers.update({H_SENDER: claims[0], H_DOCUMENT_ID: claims[1]})
                o = dataclasses.replace(o, body=orjson.dumps(notice), headers=headers)
        outgoing.append(o)
    return BlobOutcome(
        outgoing=outgoing,
        accepted=[dataclasses.replace(a, size=ref.size) for a in out.accepted],
        delivered=out.delivered,
        refused=[dataclasses.replace(r, size=ref.size) for r in out.refused],
        reason=out.reason, items=out.items,
        events=[dataclasses.replace(e, sha256=ref.sha256) if e.sha256 == _EMPTY else e for e in out.events],
        ref=ref)


#: with big documents on, what the router may hold of inline documents at once: its prefetch is cut to this many
#: bytes' worth of the largest inline document (axis.config.model.Limits.inline_limit) — a bound by bytes in flight,
#: not only by message count (documents over the inline limit are ~90-byte references)
INFLIGHT_BYTES = 256 * 1024 * 1024
MIN_PREFETCH = 16


def prefetch_for(limits: Limits, prefetch: int) -> int:
    """The router's prefetch: ``prefetch``, cut so that prefetch × the inline limit stays within
    :data:`INFLIGHT_BYTES` when documents may travel by reference (at least :data:`MIN_PREFETCH`). Without big
    documents it is unchanged (an inline document may then be as large as ``max_envelope_bytes``)."""
    if not limits.big_documents:
        return prefetch
    return max(MIN_PREFETCH, min(prefetch, INFLIGHT_BYTES // max(1, limits.inline_limit)))


class BlobRouting:
    """Decides submissions by reference with the router's current :class:`RouterCore` (see the module docstring)."""

    def __init__(self, store: BlobStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes

    def process(self, core: RouterCore, headers: Mapping[str, Any], message_id: str) -> Outcome:
        server = header_text(headers.get(H_SERVER))
        try:
            ref = blob_of(headers)
            assert ref is not None
        except Refusal as refusal:
            return core._refuse(refusal, b"", headers, message_id, notify=True)
        forwarded = header_text(headers.get(H_KIND)) == KIND_FORWARD
        try:
            decided = self._forward(core, ref, headers) if forwarded else self._document(core, ref, headers, message_id)
            out = by_reference(decided, ref)
        except Refusal as refusal:  # a forward's refusal goes to the dead letters only, as inline
            out = by_reference(core._refuse(refusal, b"", headers, message_id, notify=not forwarded), ref,
                               self._claims(ref))
        assert isinstance(out, BlobOutcome)
        out.server = server
        for o in out.outgoing:  # held for each recipient before anything is published
            if o.exchange == EX_DELIVER and o.headers.get(H_KIND) == KIND_DOCUMENT:
                for agency in o.headers.get(H_RECIPIENTS, ()):
                    self.store.hold(ref.sha256, agency)
        return out

    def _claims(self, ref: BlobRef) -> tuple[str, str] | None:
        """What the blob's MessageHeader claims (sender, DocumentId), best effort: only to address a refusal."""
        try:
            head = envelope.document_head(self.store.head(ref), max_bytes=self.max_bytes)
        except Exception:
            return None
        return head.sender.organ_id, head.document_id

    def _verified(self, core: RouterCore, ref: BlobRef) -> tuple[envelope.DocumentMessage, str | None]:
        """The blob verified (streaming), its schema and model: the message and the signer."""
        try:
            verified, _ = verify_stream(core.verifier, self.store.chunks(ref), max_bytes=self.max_bytes)
        except BlobMissing:
            raise Refusal(Reason.XML_MALFORMED, f"the referenced document {ref.sha256} is not in the blob store"
                          ) from None
        if verified.sha256 != ref.sha256 or verified.size != ref.size:
            raise Refusal(Reason.SIGNATURE_INVALID, "the stored document does not match its reference")
        schema.validate(verified.root)
        msg = envelope.from_element(verified.root)  # the small tree: everything but the attachments' content
        if not isinstance(msg, envelope.DocumentMessage):
            raise Refusal(Reason.SCHEMA_INVALID, "a status message was submitted as a document")
        return msg, verified.signer

    def _forward(self, core: RouterCore, ref: BlobRef, headers: Mapping[str, Any]) -> Outcome:
        """A delivery by reference an endpoint server hands back for agencies that moved away from it: as
        :func:`axis.router.forward.forward` decides for a document, from the verified blob; nothing counted."""
        via, kind = header_text(headers.get(H_SERVER)), header_text(headers.get(H_FORWARD_KIND))
        if kind != KIND_DOCUMENT:
            raise Refusal(Reason.SCHEMA_INVALID, f"a forwarded {kind or 'message'} cannot travel by reference")
        codes = header_codes(headers.get(H_RECIPIENTS))
        bounces = _bounces(headers)
        targets = _targets(core.directory, via, codes, moved=False, bounces=bounces)
        msg, _ = self._verified(core, ref)
        stray = set(codes) - {r.organ_id for r in msg.recipients}
        if stray:
            raise Refusal(Reason.FORBIDDEN, f"forwarded for {sorted(stray)}, not recipients of the document")
        base = {H_KIND: KIND_DOCUMENT, H_SENDER: msg.sender.organ_id, H_DOCUMENT_ID: msg.document_id,
                H_DOC_TYPE: int(msg.business.doc_type) if msg.business is not None else 0}
        return Outcome(outgoing=[Outgoing(EX_DELIVER, sid, b"", {**base, H_RECIPIENTS: cs,
                                                                 **({H_BOUNCES: bounces + 1} if sid == via else {})})
                                 for sid, cs in targets.items()])

    def _document(self, core: RouterCore, ref: BlobRef, headers: Mapping[str, Any], message_id: str) -> Outcome:
        msg, signer = self._verified(core, ref)
        sender = msg.sender.organ_id
        if signer != sender:
            raise Refusal(Reason.SIGNER_MISMATCH, f"signed by {signer}, sent as {sender}")
        if sender not in core.directory:
            raise Refusal(Reason.UNKNOWN_SENDER, f"{sender} is not in the directory")
        doc_type = int(msg.business.doc_type) if msg.business is not None else 0
        try:  # from here on the sender is proven: a refusal goes to it, about its document
            check_limits(msg, core.max_recipients)
            return core._route(msg, b"", headers)
        except Refusal as refusal:
            return core._refuse(refusal, b"", headers, message_id, notify=True,
                                proven=(sender, msg.document_id, doc_type))

    def settled(self, out: Outcome) -> None:
        """The outcome is published and its message acked: the door's hold goes (never failing the settling: with
        the blob store unreachable the hold stays, and the blob is kept rather than collected)."""
        if isinstance(out, BlobOutcome) and out.ref is not None and out.server:
            try:
                self.store.release(out.ref.sha256, submitted_hold(out.server))
            except BlobStoreUnavailable as exc:
                log.warning("router: the door's hold on blob %s stays: %s", out.ref.sha256, exc)
