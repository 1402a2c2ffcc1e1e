"""axis.core.directory_versions: the directory's versions for agency software (pure), and aliases in routing."""

from __future__ import annotations

import pytest

from axis.core.directory import Agency, Directory, DirectoryError, Server
from axis.core.directory_versions import DirectoryJournal, JournalError, Listing, advance, changes_since, listings
from axis.core.reasons import Reason, Refusal
from axis.core.routing import route_document, route_status

G01, G02, G03, H05 = "000.00.00.G01", "000.00.00.G02", "000.00.00.G03", "000.00.00.H05"
NEW = "G22.15"


def directory(*agencies: Agency) -> Directory:
    return Directory([Server("d1", "dedicated"), Server("sh", "shared")], agencies)


def test_first_advance_lists_everything_at_version_1() -> None:
    d = directory(Agency(G01, "A", "d1"), Agency(G02, "B", "sh"))
    j = advance(DirectoryJournal(), listings(d))
    assert j.version == 1
    out = changes_since(j)
    assert out == {"version": 1, "deleted": [], "full": True, "agencies": [
        {"code": G01, "name": "A", "kind": "dedicated", "active": True, "aliases": []},
        {"code": G02, "name": "B", "kind": "shared", "active": True, "aliases": []}]}
    assert changes_since(j, 1) == {"version": 1, "agencies": [], "deleted": [], "full": False}


def test_same_listings_same_journal() -> None:
    d = directory(Agency(G01, "A", "d1"))
    j = advance(DirectoryJournal(), listings(d))
    assert advance(j, listings(d)) is j  # idempotent: any process may advance it
    assert advance(j, listings(directory(Agency(G01, "A", "d1")))) is j


def test_each_change_is_one_version_with_only_what_changed() -> None:
    j1 = advance(DirectoryJournal(), listings(directory(Agency(G01, "A", "d1"), Agency(G02, "B", "sh"))))
    # G02 renamed (name), G03 added
    j2 = advance(j1, listings(directory(Agency(G01, "A", "d1"), Agency(G02, "B2", "sh"), Agency(G03, "C", "sh"))))
    assert j2.version == 2
    assert [a["code"] for a in changes_since(j2, 1)["agencies"]] == [G02, G03]
    # G03 retired (active false), G01 deleted
    j3 = advance(j2, listings(directory(Agency(G02, "B2", "sh"), Agency(G03, "C", "sh", active=False))))
    assert j3.version == 3
    since2 = changes_since(j3, 2)
    assert since2["deleted"] == [G01] and [(a["code"], a["active"]) for a in since2["agencies"]] == [(G03, False)]
    since1 = changes_since(j3, 1)
    assert since1["deleted"] == [G01] and [a["code"] for a in since1["agencies"]] == [G02, G03]
    assert changes_since(j3, 3) == {"version": 3, "agencies": [], "deleted": [], "full": False}
    # G01 comes back: no longer deleted
    j4 = advance(j3, listings(directory(Agency(G01, "A", "d1"), Agency(G02, "B2", "sh"),
                                        Agency(G03, "C", "sh", active=False))))
    assert j4.version == 4 and G01 not in j4.deleted and changes_since(j4, 3)["deleted"] == []


def test_a_kind_change_is_a_change() -> None:
    j1 = advance(DirectoryJournal(), listings(directory(Agency(G01, "A", "sh"))))
    j2 = advance(j1, listings(directory(Agency(G01, "A", "d1"))))  # moved to a dedicated server
    assert j2.version == 2 and changes_since(j2, 1)["agencies"][0]["kind"] == "dedicated"


def test_a_code_change_is_a_new_code_with_an_alias_and_the_old_code_deleted() -> None:
    j1 = advance(DirectoryJournal(), listings(directory(Agency(G01, "A", "d1"), Agency(G02, "B", "sh"))))
    j2 = advance(j1, listings(directory(Agency(NEW, "A", "d1", aliases=(G01,)), Agency(G02, "B", "sh"))))
    out = changes_since(j2, 1)
    assert out["deleted"] == [G01]
    assert out["agencies"] == [{"code": NEW, "name": "A", "kind": "dedicated", "active": True, "aliases": [G01]}]


def test_since_beyond_the_version_answers_everything() -> None:
    j = advance(DirectoryJournal(), listings(directory(Agency(G01, "A", "d1"))))
    out = changes_since(j, 99)
    assert out["full"] is True and [a["code"] for a in out["agencies"]] == [G01]


def test_journal_round_trip_and_malformed() -> None:
    j1 = advance(DirectoryJournal(), listings(directory(Agency(G01, "A", "d1"), Agency(G02, "B", "sh"))))
    j2 = advance(j1, listings(directory(Agency(NEW, "A", "d1", aliases=(G01,)))))
    back = DirectoryJournal.from_json(j2.to_json())
    assert back == j2 and back.listing(NEW) == Listing(NEW, "A", "dedicated", True, (G01,))
    for bad in (b"", b"[]", b'{"format": 1}', b'{"format": 2, "version": 1, "agencies": [], "deleted": {}}',
                b'{"format": 1, "version": 1, "agencies": [], "deleted": {"x": 5}}',
                b'{"format": 1, "version": -1, "agencies": [], "deleted": {}}'):
        with pytest.raises(JournalError):
            DirectoryJournal.from_json(bad)


def test_aliases_are_checked() -> None:
    with pytest.raises(DirectoryError, match="is the code of"):
        directory(Agency(G01, "A", "d1", aliases=(G02,)), Agency(G02, "B", "sh"))
    with pytest.raises(DirectoryError, match="already an alias"):
        directory(Agency(G01, "A", "d1", aliases=(H05,)), Agency(G02, "B", "sh", aliases=(H05,)))
    with pytest.raises(DirectoryError, match="not an agency code"):
        directory(Agency(G01, "A", "d1", aliases=("nope",)))
    d = directory(Agency(NEW, "A", "d1", aliases=(G01,)))
    assert d.resolve(G01) is d.agency(NEW) and d.resolve(NEW) is d.agency(NEW) and d.resolve(G02) is None
    assert d.current_code(G01) == NEW and d.current_code(G02) == G02
    assert G01 not in d  # an alias is not an agency of its own


def test_routing_reaches_an_agency_by_its_former_code() -> None:
    d = directory(Agency(NEW, "A", "d1", aliases=(G01,)), Agency(G02, "B", "sh"))
    route = route_document(d, G02, [G01, NEW, H05])  # former code and current code: one delivery
    assert [(x.server.id, x.recipients) for x in route.deliveries] == [("d1", (NEW,))]
    assert route.unknown == (H05,)
    # a status about a document the agency sent under its former code goes to it
    assert route_status(d, G02, G01, "sh").to.code == NEW
    with pytest.raises(Refusal) as exc:  # a sender must use its current code
        route_document(d, G01, [G02])
    assert exc.value.reason is Reason.UNKNOWN_SENDER
