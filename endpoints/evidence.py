"""The evidence log through an endpoint server (contract section 5): a document's trace, the sender's receipts,
the latest signed tree head, consistency proofs, and the offline evidence bundle of a document.

Isolation as for the inbox: an agency sees the trace and the evidence of a document it sent (``id`` from the
submission) or received (``id`` from its inbox); any other id answers the same 404 ``FORBIDDEN`` as the inbox
routes. Receipts are the sender's alone. Proofs are computed by the log store from its stored subtree hashes
(:mod:`axis.log.store`); every proof is against the signed tree head it is delivered with.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from axis.core.blobref import read_stored
from axis.core.evidence import SignedTreeHead, consistency_json, event_from_leaf, inclusion_json
from axis.core.evidence_bundle import build_bundle, select_leaves
from axis.core.reasons import Reason, Refusal
from axis.log.store import LogStore
from endpoints.inbox import ReceivedRow, SentRow

#: what ``own_document`` returns: whether the caller sent or received the row, and the row
Owned = tuple[str, ReceivedRow | SentRow]


def _facts(agency: str, owned: Owned) -> tuple[str, str]:
    """(sender, DocumentId) of a document the caller sent or received."""
    how, row = owned
    if how == "sent":
        return agency, row.document_id
    assert isinstance(row, ReceivedRow)
    return row.sender, row.document_id


def _event(index: int, leaf: bytes) -> dict[str, Any]:
    return {"leaf_index": index, **event_from_leaf(leaf).as_dict()}


async def _proved(log: LogStore, leaves: list[tuple[int, bytes]]) -> tuple[SignedTreeHead | None,
                                                                         list[tuple[int, bytes, dict[str, Any]]]]:
    """The latest STH and, for each leaf it covers, the inclusion proof against it (leaves logged after that STH
    wait for the next one, at most ``evidence.sth_interval_seconds`` later)."""
    sth = await log.latest_sth()
    if sth is None:
        return None, []
    covered = [(index, leaf) for index, leaf in leaves if index < sth.tree_size]
    paths = await log.inclusions([index for index, _ in covered], sth.tree_size)
    return sth, [(index, leaf, inclusion_json(index, sth.tree_size, leaf, path))
                 for (index, leaf), path in zip(covered, paths, strict=True)]


def add_evidence_routes(app: FastAPI, *, log: Callable[[], LogStore], caller: Callable[[Request], str],
                        own_document: Callable[[str, str], Awaitable[Owned]],
                        find_document: Callable[[str, str, str | None], Awaitable[Owned]],
                        trust: Callable[[], tuple[bytes, bytes | None]]) -> None:
    """The routes of this module on ``app``. ``log``: the log store; ``caller``: the authenticated agency;
    ``own_document(agency, id)``: the caller's row or NotYours; ``find_document(agency, document_id, sender)``:
    the caller's row by DocumentId; ``trust``: the CA certificate and CRL (PEM) the bundle carries."""

    @app.get("/v1/documents/{rid}/trace")
    async def trace(request: Request, rid: str) -> dict[str, Any]:
        agency = caller(request)
        sender, document_id = _facts(agency, await own_document(agency, rid))
        leaves = await log().leaves_of(sender, document_id)
        return {"id": rid, "document_id": document_id, "sender": sender,
                "events": [_event(index, leaf) for index, leaf in leaves]}

    @app.get("/v1/documents/{rid}/receipts")
    async def receipts(request: Request, rid: str) -> dict[str, Any]:
        agency = caller(request)
        how, row = await own_document(agency, rid)
        if how != "sent":
            raise Refusal(Reason.FORBIDDEN, "receipts are the sender's: this document was sent to you")
        stored = [(index, leaf) for index, leaf in await log().leaves_of(agency, row.document_id)
                  if event_from_leaf(leaf).type == "stored"]
        sth, proved = await _proved(log(), stored)
        items = []
        for index, leaf, proof in proved:
            event = event_from_leaf(leaf)
            items.append({"recipient": event.agency, "stored_at": event.at, "sha256": event.sha256,
                          "leaf_index": index, "proof": proof, "sth": sth.to_json() if sth else None})
        return {"id": rid, "document_id": row.document_id, "items": items, "pending": len(stored) - len(items)}

    @app.get("/v1/log/sth")
    async def latest_sth(request: Request) -> JSONResponse:
        caller(request)
        sth = await log().latest_sth()
        if sth is None:
            return JSONResponse({"type": "about:blank", "title": "no signed tree head yet", "status": 404,
                                 "detail": "the log has not signed a tree head yet", "reason": None},
                                status_code=404, media_type="application/problem+json")
        return JSONResponse(sth.to_json())

    @app.get("/v1/log/consistency")
    async def consistency(request: Request, first: int, second: int) -> dict[str, Any]:
        caller(request)
        size = await log().size()
        if not 0 < first <= second <= size:
            raise Refusal(Reason.SCHEMA_INVALID, f"need 0 < first <= second <= {size} (the log's size)")
        return consistency_json(first, second, await log().consistency(first, second))

    @app.get("/v1/evidence")
    async def evidence_bundle(request: Request, document_id: str, sender: str | None = None) -> Response:
        agency = caller(request)
        owned = await find_document(agency, document_id, sender)
        who, doc = _facts(agency, owned)
        envelope = owned[1].data  # only the leaves about these exact bytes (a DocumentId re-used with others: not)
        if read_stored(envelope) is not None:  # a big document (endpoints.bigdoc): its bundle would hold all of it
            raise Refusal(Reason.TOO_LARGE, "this document travels by reference (over limits.inline_max_bytes): its "
                                            "evidence bundle is not built; take the document (GET /v1/documents/{id}) "
                                            "and its receipts (GET /v1/documents/{id}/receipts)")
        sth, proved = await _proved(log(), select_leaves(envelope, await log().leaves_of(who, doc)))
        if sth is None or not proved:  # not a refusal: the next tree head will cover them
            return JSONResponse({"type": "about:blank", "title": "not signed yet", "status": 503, "reason": None,
                                 "detail": "no signed tree head covers this document's events yet: retry shortly"},
                                status_code=503, media_type="application/problem+json", headers={"Retry-After": "5"})
        ca, crl = trust()
        data = build_bundle(envelope, proved, sth, ca, crl)
        filename = base64.urlsafe_b64encode(orjson.dumps([who, doc])).decode()[:40]
        return Response(data, media_type="application/vnd.etsi.asic-e+zip",
                        headers={"Content-Disposition": f'attachment; filename="evidence-{filename}.zip"'})
