"""Routing decisions: per-server groups, unknown recipients, status back-routing and its authentication."""

from __future__ import annotations

import pytest

from axis.core.directory import Directory
from axis.core.reasons import Reason, Refusal
from axis.core.routing import document_key, route_document, route_status

G22, H53, G01, H55, G99 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01", "H55.242", "000.00.00.G99"


@pytest.fixture
def d() -> Directory:
    return Directory.from_records(
        [("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared")],
        [(G22, "Gov", "d1"), (H53, "Tay Ninh", "d2"), (G01, "MPS", "sh"), (H55, "Thai Nguyen", "sh")],
    )


def test_groups_by_server_in_order(d: Directory) -> None:
    r = route_document(d, G22, [G01, H53, H55, G01])
    assert [(x.server.id, x.recipients) for x in r.deliveries] == [("sh", (G01, H55)), ("d2", (H53,))]
    assert r.unknown == ()
    assert r.sender.code == G22 and r.sender_server.id == "d1"
    assert r.known_recipients == ((G01, "shared"), (H55, "shared"), (H53, "dedicated"))


def test_unknown_recipients_do_not_block_others(d: Directory) -> None:
    r = route_document(d, G22, [G99, H53, "H99.1"])
    assert [x.server.id for x in r.deliveries] == ["d2"]
    assert r.unknown == (G99, "H99.1")


def test_only_unknown_recipients_is_a_refusal(d: Directory) -> None:
    with pytest.raises(Refusal) as e:
        route_document(d, G22, [G99])
    assert e.value.reason is Reason.UNKNOWN_RECIPIENT and G99 in e.value.detail


def test_unknown_sender(d: Directory) -> None:
    with pytest.raises(Refusal) as e:
        route_document(d, G99, [G22])
    assert e.value.reason is Reason.UNKNOWN_SENDER


def test_status_goes_back_to_original_senders_server(d: Directory) -> None:
    r = route_status(d, G01, G22, via_server="sh")
    assert (r.reporter.code, r.to.code, r.server.id) == (G01, G22, "d1")


@pytest.mark.parametrize(
    ("reporter", "original", "via", "reason"),
    [
        (G01, G22, "d2", Reason.FORBIDDEN),  # another server speaks for G01
        (G01, G22, None, Reason.FORBIDDEN),
        (G99, G22, "sh", Reason.UNKNOWN_SENDER),
        (G01, G99, "sh", Reason.UNKNOWN_RECIPIENT),
    ],
)
def test_status_refusals(d: Directory, reporter: str, original: str, via: str | None, reason: Reason) -> None:
    with pytest.raises(Refusal) as e:
        route_status(d, reporter, original, via_server=via)
    assert e.value.reason is reason


def test_document_key() -> None:
    assert document_key(G22, "000.00.00.G22,2019/03/12,1/VPCP", 1) == "000.00.00.G22|000.00.00.G22,2019/03/12,1/VPCP|1"
    assert document_key(G22, "x", 0) != document_key(G22, "x", 1)


def test_status_from_a_former_server_is_accepted_after_a_move() -> None:
    """An agency moved from "sh" to "d-x": status 01s the old server sends for deliveries it consumed before the
    move are authentic; any other server is still refused."""
    from axis.core.directory import Agency, Directory, Server
    from axis.core.reasons import Reason, Refusal
    from axis.core.routing import route_status

    d = Directory(
        [Server("sh", "shared"), Server("d-x", "dedicated"), Server("d-s", "dedicated"), Server("o", "shared")],
        [Agency("000.00.00.G03", "X", "d-x", ("sh",)), Agency("000.00.00.G22", "S", "d-s")],
    )
    for via in ("d-x", "sh"):
        assert route_status(d, "000.00.00.G03", "000.00.00.G22", via).to.code == "000.00.00.G22"
    try:
        route_status(d, "000.00.00.G03", "000.00.00.G22", "o")
    except Refusal as exc:
        assert exc.reason is Reason.FORBIDDEN
    else:
        raise AssertionError("a status from an unrelated server was accepted")
