"""Where a delivery goes on an endpoint server, decided without I/O (the consumer, :mod:`endpoints.delivery`, does
what the decision says): stored here for this server's agencies, handed back to the router for agencies that
moved to another server, or refused — and whether a status or a refusal notice may touch an agency's documents.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from axis.core.directory import Directory
from axis.core.reasons import Reason, Refusal


@dataclass(frozen=True, slots=True)
class LocalView:
    """What one endpoint server knows when it decides: its id, its agencies, the directory, the size limit.
    Replaced as a whole on a hot reload."""

    server_id: str
    agencies: frozenset[str]
    directory: Directory
    max_bytes: int

    def moved(self, code: str) -> bool:
        """The agency has moved between servers at least once (its rows may be on their way here)."""
        agency = self.directory.agency(code)
        return agency is not None and bool(agency.moved_from)


@dataclass(frozen=True, slots=True)
class Decision:
    store: tuple[str, ...] = ()  # agencies of this server it is stored for
    forward: tuple[str, ...] = ()  # agencies now on another server: handed back to the router (axis.router.forward)
    refusal: Refusal | None = None  # neither: dead-lettered with this reason


def decide_delivery(view: LocalView, codes: Sequence[str], addressed: Collection[str] | None = None) -> Decision:
    """The agencies ``codes`` of a delivery: stored here when they are this server's (and, when ``addressed`` is
    given, named by the signed document, by the current code or a former one), forwarded when the directory places
    them on another server; refused (UNKNOWN_RECIPIENT) when nothing is left to store or forward."""
    store: list[str] = []
    forward: list[str] = []
    # a delivery queued before a code change, or a document naming a former code: the agency's current code
    current = view.directory.current_code
    if addressed is not None:
        addressed = {current(code) for code in addressed}
    for code in dict.fromkeys(current(code) for code in codes):
        if code in view.agencies:
            if addressed is None or code in addressed:
                store.append(code)
            continue
        server = view.directory.server_of(code)
        if server is not None and server.id != view.server_id:
            forward.append(code)
    refusal = None
    if not store and not forward:
        refusal = Refusal(Reason.UNKNOWN_RECIPIENT, f"no agency of this delivery ({', '.join(codes)[:200]}) is on "
                                                    f"server {view.server_id}")
    return Decision(tuple(store), tuple(forward), refusal)


def status_refusal(view: LocalView, reporter: str, owner: str, document_id: str,
                   recipients: Sequence[str] | None) -> Refusal | None:
    """Why a status from ``reporter`` about ``owner``'s document may not be stored (None: it may). Only an agency
    the document was sent to reports on it (``recipients``: of the document ``owner`` sent with that DocumentId,
    None when this server has no row of it); a server's leaked credential could otherwise report on any document
    of any agency. An agency that moved servers may have sent it from its old server, whose rows move after the
    switch (:mod:`axis.ops.livemove`): without the row there is nothing to check against."""
    if recipients is None and view.moved(owner):
        return None
    if reporter in (recipients or ()):
        return None
    return Refusal(Reason.FORBIDDEN, f"{reporter} is not a recipient of {owner}'s document {document_id!r}")
