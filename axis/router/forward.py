"""Forwards: deliveries an endpoint server holds for agencies that moved away from it, re-routed by the router.

While an agency moves (docs/core.md, "Moving an agency"), its old server may still consume deliveries routed to
it before the routers learnt the move: documents for it, statuses and refusals about documents it sent. Under
least privilege an endpoint server may publish only to ``axis.submit``, so it cannot deliver them itself: it
publishes a *forward* (``x-axis-kind: forward``, ``x-axis-forward-kind``: the kind it received,
``x-axis-recipients``: the agencies it forwards for, the body unchanged) and acks its delivery only after the
router confirmed the forward — nothing is lost; a crash in between forwards twice, and the inbox and status
stores keep one copy.

The forwarding server is the broker-validated ``user_id`` (:func:`axis.broker.users.authenticated_origin`); no
named agency may be on it. A forwarded document is re-verified (signature, schema) and the agencies must be
among its signed recipients — which gives a server no more than re-submitting the signed document would (the
inbox keeps one copy), so any server may forward a document (also after a hand-edited move without
``moved_from``). Statuses and refusals are unsigned: they are forwarded only for an agency that moved away from
the forwarding server (it is in the agency's ``moved_from``); a status must be about a document of that
(single) agency, a refusal must name it as the sender. Anything else is
refused (dead letter with the reason). Nothing is counted: the document was counted when first routed, the
status 01 when it first passed. Residual trust: a former server of an agency can hand the router statuses and
refusals *addressed to* that agency (not from it) until ``moved_from`` is cleared — statuses are unsigned.

During a live move, routers and endpoint hosts reload one after the other: for a moment a server may forward
for an agency that this router still places on that very server (or that the server does not know it hosts
yet). For an agency with a ``moved_from`` (being or having been moved) that is a disagreement, not an attack:
the forward goes back to the server (``x-axis-bounces`` + 1) until both sides have reloaded — milliseconds.
After :data:`MAX_BOUNCES` rounds the disagreement is not transient (a host left on an old configuration): the
forward is refused (dead letter, FORBIDDEN), never dropped. A server forwarding for an agency it hosts that
never moved is refused at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from axis.core import envelope, schema
from axis.core.directory import Directory
from axis.core.reasons import Reason, Refusal
from axis.core.verify import Verifier
from axis.core.wire import (
    EX_DELIVER,
    H_BOUNCES,
    H_DETAIL,
    H_DOC_TYPE,
    H_DOCUMENT_ID,
    H_FORWARD_KIND,
    H_KIND,
    H_REASON,
    H_RECIPIENTS,
    H_SENDER,
    H_SERVER,
    KIND_DOCUMENT,
    KIND_REFUSAL,
    KIND_STATUS,
    Outgoing,
    StatusFields,
    header_codes,
    header_text,
)
from axis.core.xmlsafe import parse_untrusted

#: rounds a forward may go back to its server while the two disagree about where an agency is (a reload)
MAX_BOUNCES = 500


def _bounces(headers: Mapping[str, Any]) -> int:
    try:
        return max(0, int(header_text(headers.get(H_BOUNCES)) or 0))
    except ValueError:
        return 0


def _targets(directory: Directory, via: str, codes: list[str], *, moved: bool,
             bounces: int) -> dict[str, list[str]]:
    """Current server id → agencies; with ``moved``, each must have moved away from ``via``. A moved agency this
    router places on ``via`` itself goes back there (a reload in progress), at most :data:`MAX_BOUNCES` times."""
    if not codes:
        raise Refusal(Reason.SCHEMA_INVALID, "a forward names no agency")
    out: dict[str, list[str]] = {}
    for code in codes:
        a = directory.resolve(code)  # queued before a code change: the former code is an alias
        if a is None:
            raise Refusal(Reason.UNKNOWN_RECIPIENT, f"forwarded for {code!r}, which is not in the directory")
        if not via:
            raise Refusal(Reason.FORBIDDEN, "a forward from no known server")
        if a.server == via and a.moved_from:  # an agency being moved: this router or that server not reloaded yet
            if bounces >= MAX_BOUNCES:
                raise Refusal(Reason.FORBIDDEN, f"server {via} forwards for {code}, which the directory places on "
                                                f"{via}: still so after {bounces} rounds (a stale configuration)")
        elif a.server == via or (moved and via not in a.moved_from):
            raise Refusal(Reason.FORBIDDEN, f"server {via} may forward only for agencies that moved away "
                                            f"from it; {code} did not")
        out.setdefault(a.server, []).append(a.code)
    return out


def forward(directory: Directory, verifier: Verifier, max_bytes: int, body: bytes,
            headers: Mapping[str, Any]) -> list[Outgoing]:
    """The deliveries a forward turns into, or raises Refusal. ``headers[H_SERVER]`` must be authenticated."""
    via, kind = header_text(headers.get(H_SERVER)), header_text(headers.get(H_FORWARD_KIND))
    codes = header_codes(headers.get(H_RECIPIENTS))
    bounces = _bounces(headers)
    targets = _targets(directory, via, codes, moved=kind != KIND_DOCUMENT, bounces=bounces)
    again = {H_BOUNCES: bounces + 1} if via in targets else {}
    if kind == KIND_DOCUMENT:
        verified = verifier.verify(body)
        schema.validate(verified.root)
        msg = envelope.from_element(verified.root)
        if not isinstance(msg, envelope.DocumentMessage):
            raise Refusal(Reason.SCHEMA_INVALID, "a status was forwarded as a document")
        stray = set(codes) - {r.organ_id for r in msg.recipients}
        if stray:
            raise Refusal(Reason.FORBIDDEN, f"forwarded for {sorted(stray)}, not recipients of the document")
        doc_type = int(msg.business.doc_type) if msg.business is not None else 0
        base = {H_KIND: KIND_DOCUMENT, H_SENDER: msg.sender.organ_id, H_DOCUMENT_ID: msg.document_id,
                H_DOC_TYPE: doc_type}
        return [Outgoing(EX_DELIVER, sid, body, {**base, H_RECIPIENTS: cs, **(again if sid == via else {})})
                for sid, cs in targets.items()]
    if len(codes) != 1:
        raise Refusal(Reason.SCHEMA_INVALID, f"a forwarded {kind or 'message'} is for exactly one agency")
    (sid,) = targets
    if kind == KIND_STATUS:
        root = parse_untrusted(body, max_bytes=max_bytes)
        schema.validate(root)
        st = envelope.from_element(root)
        if not isinstance(st, envelope.StatusMessage):
            raise Refusal(Reason.SCHEMA_INVALID, "a document was forwarded as a status")
        if st.response_for.organ_id != codes[0]:
            raise Refusal(Reason.FORBIDDEN, f"the status is about a document of {st.response_for.organ_id}, "
                                            f"not of {codes[0]}")
        return [Outgoing(EX_DELIVER, sid, body, {H_KIND: KIND_STATUS, H_SENDER: st.sender.organ_id,
                                                 H_DOCUMENT_ID: st.response_for.document_id,
                                                 **StatusFields.of(st).header(), **again})]
    if kind == KIND_REFUSAL:
        try:
            info = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refusal(Reason.XML_MALFORMED, "a forwarded refusal is not JSON") from None
        if not isinstance(info, dict) or str(info.get("sender") or "") != codes[0]:
            raise Refusal(Reason.FORBIDDEN, f"the refusal is not about a document of {codes[0]}")
        reason, detail = str(info.get("reason") or ""), str(info.get("detail") or "")
        return [Outgoing(EX_DELIVER, sid, body, {H_KIND: KIND_REFUSAL, H_REASON: reason, H_DETAIL: detail[:1000],
                                                 H_SENDER: codes[0],
                                                 H_DOCUMENT_ID: str(info.get("document_id") or ""), **again},
                         content_type="application/json")]
    raise Refusal(Reason.SCHEMA_INVALID, f"cannot forward a {kind!r}")
