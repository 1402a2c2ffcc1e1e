"""Routing decisions (pure): where a verified document or a status goes, given the directory.

No I/O here: the router shell (axis.router) feeds in codes read from verified bytes and publishes what these
functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from axis.core import envelope
from axis.core.directory import Agency, Directory, Server
from axis.core.reasons import Reason, Refusal


def document_key(sender: str, document_id: str, doc_type: int) -> str:
    """The idempotency key of a document: a re-submission with the same key is delivered and counted once."""
    return f"{sender}|{document_id}|{doc_type}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one endpoint server, for the listed recipient agencies it hosts."""

    server: Server
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DocumentRoute:
    sender: Agency
    sender_server: Server
    deliveries: tuple[Delivery, ...]
    unknown: tuple[str, ...]
    #: recipients that are retired agencies (``active: false``): in the directory, but no longer receiving
    retired: tuple[str, ...] = ()

    @property
    def known_recipients(self) -> tuple[tuple[str, str], ...]:
        """``(agency code, server kind)`` of every recipient that will get the document."""
        return tuple((code, d.server.kind) for d in self.deliveries for code in d.recipients)


@dataclass(frozen=True, slots=True)
class StatusRoute:
    """A status from ``reporter`` about a document that ``to`` sent; delivered to ``server``."""

    reporter: Agency
    to: Agency
    server: Server


def sender_of(directory: Directory, code: str) -> tuple[Agency, Server]:
    agency = directory.agency(code)
    if agency is None:
        raise Refusal(Reason.UNKNOWN_SENDER, f"sender {code!r} is not in the directory")
    return agency, directory.servers[agency.server]


def route_document(directory: Directory, sender: str, recipients: Iterable[str]) -> DocumentRoute:
    """Group the recipients by server (order kept, duplicates dropped; a former code of an agency counts as its
    current code) and list the unknown ones.

    Raises UNKNOWN_SENDER for a sender outside the directory, FORBIDDEN for a retired sender (``active: false``:
    axis agency retire), UNKNOWN_RECIPIENT when no recipient can receive it (nothing could be delivered). Some
    unknown or retired recipients do not block the others: they come back in ``unknown`` and ``retired``.
    """
    agency, server = sender_of(directory, sender)
    if not agency.active:
        raise Refusal(Reason.FORBIDDEN, f"agency {sender} is retired: it no longer sends documents")
    groups: dict[str, list[str]] = {}
    unknown: list[str] = []
    retired: list[str] = []
    seen: set[str] = set()
    for code in recipients:
        rec = directory.resolve(code)  # a former code (alias) reaches the agency under its current code
        if rec is None:
            if code not in seen:
                seen.add(code)
                unknown.append(code)
        elif rec.code not in seen:
            seen.add(rec.code)
            if rec.active:
                groups.setdefault(rec.server, []).append(rec.code)
            else:
                retired.append(rec.code)
    if not groups:
        raise Refusal(Reason.UNKNOWN_RECIPIENT, "no recipient can receive it: " + (
            missing_recipients(tuple(unknown), tuple(retired)) or "(none)"))
    deliveries = tuple(Delivery(directory.servers[sid], tuple(codes)) for sid, codes in groups.items())
    return DocumentRoute(agency, server, deliveries, tuple(unknown), tuple(retired))


def missing_recipients(unknown: tuple[str, ...], retired: tuple[str, ...]) -> str:
    """Who will not get a document, and why: ``not in the directory: A, B; retired: C`` ("" for nobody)."""
    parts = []
    if unknown:
        parts.append("not in the directory: " + ", ".join(unknown))
    if retired:
        parts.append("retired (no longer a recipient): " + ", ".join(retired))
    return "; ".join(parts)


def route_status(directory: Directory, reporter: str, original_sender: str, via_server: str | None) -> StatusRoute:
    """Route a status back to the server of the original sender (``ResponseFor/OrganId``).

    Statuses are authenticated by the server that publishes them: ``via_server`` must be the server hosting the
    reporting agency, or one that hosted it before a move (its status 01s for deliveries it consumed before the
    move are still in flight); FORBIDDEN otherwise. UNKNOWN_SENDER / UNKNOWN_RECIPIENT for codes outside the directory.
    """
    rep, rep_server = sender_of(directory, reporter)
    if via_server != rep_server.id and via_server not in rep.moved_from:
        raise Refusal(
            Reason.FORBIDDEN,
            f"a status from {reporter} must come from its server {rep_server.id}, not {via_server or '(none)'}",
        )
    to = directory.resolve(original_sender)  # the document may have been sent under a former code
    if to is None:
        raise Refusal(Reason.UNKNOWN_RECIPIENT, f"the original sender {original_sender!r} is not in the directory")
    return StatusRoute(rep, to, directory.servers[to.server])


#: ``limits.max_recipients`` when the configuration does not say: recipients (``To``) one document may name
DEFAULT_MAX_RECIPIENTS = 500


#: The longest DocumentId the axis takes — a document's own, those a revocation, update or replacement names, a
#: status's: the endpoint stores keep it in a column of this width, and every leaf of the evidence log names it
#: (a leaf is at most ``axis.core.evidence.MAX_LEAF_BYTES``: one over-long id must not make a batch unloggable).
MAX_DOCUMENT_ID = 512


def check_document_id(document_id: str, what: str = "DocumentId") -> None:
    """Refuse (SCHEMA_INVALID) a DocumentId longer than :data:`MAX_DOCUMENT_ID` characters."""
    if len(document_id) > MAX_DOCUMENT_ID:
        raise Refusal(Reason.SCHEMA_INVALID, f"{what} has {len(document_id)} characters: at most {MAX_DOCUMENT_ID}")


def check_limits(msg: envelope.DocumentMessage, max_recipients: int) -> None:
    """Refuse a document naming more than ``max_recipients`` recipients (TOO_LARGE) or an over-long DocumentId,
    its own or one it acts on (SCHEMA_INVALID): what one submission may make the axis do and store (deliveries,
    refusal notices, headers, inbox rows, log leaves) stays bounded. The endpoint server checks it at the door,
    the router again (a component credential may bypass the door)."""
    if len(msg.recipients) > max_recipients:
        raise Refusal(Reason.TOO_LARGE, f"{len(msg.recipients)} recipients: at most {max_recipients} per document "
                                        "(limits.max_recipients)")
    check_document_id(msg.document_id)
    check_document_id(msg.business.document_id, "Bussiness/DocumentId")
    for info in msg.business.replacement_info:
        check_document_id(info.document_id, "ReplacementInfo/DocumentId")
