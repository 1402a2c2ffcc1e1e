"""What the VPCP SDK's calls answer, computed from axis's own rows (no I/O): list entries, sent-document rows,
the agency list, the status edXML of a status item, and the check that a document agrees with sendEdoc's headers.

Ids. A received document is listed under its ``/v1`` inbox id (32 hex digits). A status about a document the
caller sent is listed under ``st-<n>`` (``n`` = the status row's number in the server's store): both are made of
``[A-Za-z0-9._-]`` only, because the SDK uses a docId as a file name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from axis.core import envelope
from axis.core.reasons import Reason, Refusal
from axis.core.vpcp import DOC_TYPES

STATUS_PREFIX = "st-"
SERVICE_TYPE = "eDoc"


def status_doc_id(row_id: int) -> str:
    return f"{STATUS_PREFIX}{row_id}"


def status_row_id(doc_id: str) -> int | None:
    """The status row's number of an ``st-<n>`` docId, else None."""
    if doc_id.startswith(STATUS_PREFIX) and doc_id[len(STATUS_PREFIX):].isdigit():
        return int(doc_id[len(STATUS_PREFIX):])
    return None


def item_state(acked: bool, recorded: str | None) -> str:
    """An item's SDK status: what updateStatus recorded last, ``done`` once acked, else ``new``."""
    if acked:
        return "done"
    return recorded or "new"


def received_entry(item: Mapping[str, Any], caller: str, recorded: str | None) -> dict[str, Any]:
    """getReceivedEdocList's entry (the SDK's ``Knobstick``) for a ``/v1/inbox`` item."""
    state = item_state(bool(item.get("acked")), recorded)
    return {"docId": item["id"], "serviceType": SERVICE_TYPE, "messageType": item.get("kind") or "edoc",
            "created_time": item["received_at"], "updated_time": item["received_at"], "from": item["from"],
            "to": caller, "status": state, "status_desc": _state_desc(state)}


def status_entry(row: Mapping[str, Any], caller: str, recorded: str | None) -> dict[str, Any]:
    """getReceivedEdocList's entry for a status about a document the caller sent."""
    state = item_state(False, recorded)
    return {"docId": status_doc_id(int(row["id"])), "serviceType": SERVICE_TYPE, "messageType": "status",
            "created_time": row["received_at"], "updated_time": row["received_at"], "from": row["from"],
            "to": caller, "status": state, "status_desc": _state_desc(state)}


def _state_desc(state: str) -> str:
    return {"new": "not yet taken", "processing": "being processed", "fail": "could not be processed",
            "done": "taken"}.get(state, state)


def iso_seconds(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sent_entries(doc: Mapping[str, Any], notation: str, statuses: Sequence[Mapping[str, Any]],
                 received: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """getSentEdocList's rows (the SDK's ``StatusResult``) of one document the caller sent: one per recipient.

    ``statuses``: every status about the document (:meth:`endpoints.inbox.store.InboxStore.statuses_of` rows);
    ``received``: recipient → (its inbox id, its item state) for recipients whose inbox is in this server's store
    (elsewhere axis does not know the recipient's id: ``receiverDocId`` stays ``""`` and ``receiveStatus`` follows
    its statuses)."""
    refusals = [s for s in statuses if s.get("reason")]
    rows = []
    for recipient in doc["recipients"]:
        mine = [s for s in statuses if s["from"] == recipient]
        arrived = next((s for s in mine if s["code"] == "01"), None)
        refused = next((s for s in refusals if s["from"] in (recipient, "axis")), None)
        rid, state = received.get(recipient, ("", ""))
        if not state:
            state = "new" if arrived is not None else ""
        last = mine[-1] if mine else None
        rows.append({
            "serviceType": SERVICE_TYPE, "messageType": _kind(int(doc["doc_type"])), "senderDocId": doc["id"],
            "receiverDocId": rid, "fromCode": doc.get("sender", ""), "toCode": recipient, "title": doc["subject"],
            "notation": notation, "sentTime": iso_seconds(float(doc["created_at"])),
            "receivedTime": arrived["received_at"] if arrived is not None else "",
            "sendStatus": "FAIL" if refused is not None else "OK",
            "sendStatusDesc": str(refused["reason"]) + (f": {refused['description']}" if refused["description"] else "")
            if refused is not None else "",
            "receiveStatus": state,
            "receiveStatusDesc": f"{last['code']} {last['description']}".strip() if last is not None else "",
        })
    return rows


def _kind(doc_type: int) -> str:
    return next((k for k, t in DOC_TYPES.items() if t == doc_type), "edoc")


def notation_of(head: envelope.DocumentMessage) -> str:
    return "/".join(p for p in (head.code_number, head.code_notation) if p)


def agency_entries(listing: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """getAgenciesList's ``data`` from ``GET /v1/directory``'s agencies: the active ones. ``id`` = the code (the
    SDK's own register call sends ids as strings), ``pid`` empty (axis's directory is flat), ``oldCode`` = the
    agency's former codes, comma-separated."""
    return [{"code": a["code"], "id": a["code"], "mail": "", "name": a["name"], "pid": "",
             "oldCode": ",".join(a.get("aliases") or ())} for a in listing if a.get("active", True)]


def qd20_entries(listing: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"code": a["code"], "id": a["id"], "mail": a["mail"], "name": a["name"], "code102": a["code"]}
            for a in agency_entries(listing)]


def synchronize_entries(listing: Sequence[Mapping[str, Any]], version: int, server_of: Callable[[str], str]
                        ) -> list[dict[str, Any]]:
    """getSynchronizeUnit's ``data``: every agency of the directory (retired ones ``deleted``), ``version`` the
    directory's version (``GET /v1/directory``), ``centerCode`` the server it is reached through."""
    return [{"code": a["code"], "id": a["code"], "mail": "", "name": a["name"], "pid": "", "version": version,
             "centerCode": server_of(str(a["code"])), "deleted": not a.get("active", True), "modifyDate": "",
             "isAgency": True} for a in listing]


def submit_check(messagetype: str | None, to: str | None) -> Callable[[envelope.DocumentMessage], None]:
    """The check ``POST /v1/documents`` runs on the checked document (:data:`endpoints.vxp.internal.SUBMIT_CHECK`):
    the messagetype header agrees with BussinessDocType, and ``to``, when given, names the document's recipients."""
    wanted: set[str] | None = None
    if to:
        try:
            parsed = orjson.loads(to)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, str):
            parsed = [parsed]
        if not isinstance(parsed, list) or not all(isinstance(c, str) for c in parsed):
            raise Refusal(Reason.SCHEMA_INVALID, 'XroadVnpt-to must be a JSON list of agency codes (["000.00.00.H41"])')
        wanted = set(parsed)

    def check(msg: envelope.DocumentMessage) -> None:
        kind = envelope.message_kind(msg)
        if messagetype is not None and kind != messagetype:
            raise Refusal(Reason.SCHEMA_INVALID, f"messagetype {messagetype} does not match the document's "
                                                 f"BussinessDocType {msg.business.doc_type} ({kind})")
        if wanted is not None and wanted != {r.organ_id for r in msg.recipients}:
            raise Refusal(Reason.SCHEMA_INVALID, "XroadVnpt-to does not name the document's recipients "
                                                 "(MessageHeader/To)")

    return check


def render_status(row: Mapping[str, Any], caller: str, head: envelope.DocumentMessage | None) -> bytes:
    """The status edXML of a status item: From = the reporter, ResponseFor = the caller's document (its code and
    promulgation date from ``head`` when known), StatusCode, Description, Timestamp as stored. Unsigned: axis
    renders it from what it stored (an agency's signed status never travels to the sender as such)."""
    if head is not None:
        response_for = envelope.ResponseFor(caller, str(row["document_id"]), notation_of(head), head.promulgation_date)
    else:
        response_for = envelope.ResponseFor(caller, str(row["document_id"]))
    message = envelope.StatusMessage(sender=envelope.Organization(organ_id=str(row["from"])),
                                     response_for=response_for, status_code=str(row["code"]),
                                     description=str(row["description"] or ""), timestamp=str(row["timestamp"]))
    return envelope.build(message)
