"""Where a delivery goes on an endpoint server, decided without a broker or a store (endpoints.decide)."""

from __future__ import annotations

from axis.core.directory import Agency, Directory, Server
from endpoints.decide import LocalView, decide_delivery, status_refusal

G22, H53, G01, G03, G99 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01", "000.00.00.G03", "000.00.00.G99"
DIRECTORY = Directory([Server("d1", "dedicated"), Server("d2", "dedicated"), Server("sh", "shared")],
                      [Agency(G22, "a", "d1"), Agency(H53, "b", "d2"), Agency(G01, "c", "sh", ("d2",)),
                       Agency(G03, "d", "sh")])
SH = LocalView("sh", frozenset({G01, G03}), DIRECTORY, 1_000_000)
D2 = LocalView("d2", frozenset({H53}), DIRECTORY, 1_000_000)


def test_local_agencies_are_stored_moved_ones_forwarded() -> None:
    d = decide_delivery(SH, [G01, G03, G01])
    assert (d.store, d.forward, d.refusal) == ((G01, G03), (), None)
    # d2 still receives a delivery for G01, which moved to sh: handed back to the router, nothing stored, no refusal
    d = decide_delivery(D2, [G01])
    assert (d.store, d.forward, d.refusal) == ((), (G01,), None)
    d = decide_delivery(D2, [H53, G01])
    assert (d.store, d.forward) == ((H53,), (G01,))


def test_only_agencies_the_signed_document_names_are_stored() -> None:
    d = decide_delivery(SH, [G01, G03], addressed={G03})
    assert d.store == (G03,) and d.refusal is None
    d = decide_delivery(SH, [G01], addressed={G22})
    assert d.store == () and d.refusal is not None and d.refusal.reason == "UNKNOWN_RECIPIENT"


def test_nothing_here_and_nowhere_else_is_refused() -> None:
    for codes in ([G99], []):  # an agency in no directory; no agency at all
        d = decide_delivery(SH, codes)
        assert d.store == d.forward == () and d.refusal is not None and d.refusal.reason == "UNKNOWN_RECIPIENT"
    d = decide_delivery(SH, [H53])  # H53 lives on d2: forwarded, not refused
    assert d.forward == (H53,) and d.refusal is None


def test_a_status_only_from_a_recipient() -> None:
    assert status_refusal(SH, H53, G03, "doc", [H53, G22]) is None
    refused = status_refusal(SH, G22, G03, "doc", [H53])
    assert refused is not None and refused.reason == "FORBIDDEN"
    # no row of the document: refused, unless the agency has moved (its rows may be on the way)
    assert status_refusal(SH, H53, G03, "doc", None) is not None
    assert status_refusal(SH, H53, G01, "doc", None) is None
    assert status_refusal(SH, G22, G01, "doc", [H53]) is not None  # moved, but the row says otherwise
