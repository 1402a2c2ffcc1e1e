"""A retired agency (``active: false``, axis agency retire) in the router's decisions: it sends nothing more
(FORBIDDEN, told to it), receives nothing more (UNKNOWN_RECIPIENT naming the retirement, the other recipients
still served), and the statuses about what it sent or received before still flow."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from axis.core import envelope
from axis.core.directory import Agency, Directory, Server
from axis.core.reasons import Reason, Refusal
from axis.core.routing import route_document, route_status
from axis.core.wire import EX_DELIVER, EX_DLX, H_KIND, H_REASON, H_RECIPIENTS, H_SERVER
from axis.router.core import RouterCore
from tests.support.testing import TestPKI, make_pki

G22, H53, G01, G03 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01", "000.00.00.G03"
NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def directory() -> Directory:
    servers = [Server("d1", "dedicated"), Server("d2", "dedicated"), Server("sh", "shared")]
    return Directory(servers, [Agency(G22, "a", "d1"), Agency(H53, "b", "d2", active=False),
                               Agency(G01, "c", "sh"), Agency(G03, "d", "sh")])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [G22, H53, G01, G03], algorithm="ec")


@pytest.fixture(scope="module")
def core(pki: TestPKI) -> RouterCore:
    return RouterCore(directory(), pki.verifier(), max_bytes=1_000_000, clock=lambda: NOW)


def doc(pki: TestPKI, sender: str, to: list[str]) -> bytes:
    return pki.sign(envelope.build(envelope.new_document(sender, to, "Subject")), sender)


def test_routing_a_retired_sender_and_recipient() -> None:
    d = directory()
    with pytest.raises(Refusal) as e:
        route_document(d, H53, [G22])
    assert e.value.reason is Reason.FORBIDDEN and "retired" in e.value.detail
    r = route_document(d, G22, [H53, G01, "000.00.00.G99"])
    assert [(x.server.id, x.recipients) for x in r.deliveries] == [("sh", (G01,))]
    assert r.retired == (H53,) and r.unknown == ("000.00.00.G99",)
    with pytest.raises(Refusal) as e:
        route_document(d, G22, [H53])
    assert e.value.reason is Reason.UNKNOWN_RECIPIENT
    assert e.value.detail == f"no recipient can receive it: retired (no longer a recipient): {H53}"
    # statuses still flow both ways: the retired agency's status 01s for what it received, and to it
    assert route_status(d, H53, G22, "d2").server.id == "d1"
    assert route_status(d, G22, H53, "d1").server.id == "d2"


def test_router_refuses_a_retired_sender_to_its_server(pki: TestPKI, core: RouterCore) -> None:
    out = core.process(doc(pki, H53, [G22]), {H_KIND: "document", H_SERVER: "d2"}, "m1")
    assert out.reason is Reason.FORBIDDEN and out.accepted == []
    dead = [o for o in out.outgoing if o.exchange == EX_DLX]
    told = [o for o in out.outgoing if o.exchange == EX_DELIVER]
    assert len(dead) == 1 and dead[0].headers[H_REASON] == "FORBIDDEN"
    assert [(o.routing_key, o.headers[H_KIND]) for o in told] == [("d2", "refusal")]
    body = orjson.loads(told[0].body)
    assert body["reason"] == "FORBIDDEN" and "retired" in body["detail"] and body["verified"] is True
    assert [r.sender for r in out.refused] == [H53]  # counted against the proven sender


def test_router_names_a_retired_recipient_and_serves_the_others(pki: TestPKI, core: RouterCore) -> None:
    out = core.process(doc(pki, G22, [H53, G01, G03]), {H_KIND: "document", H_SERVER: "d1"}, "m2")
    assert out.reason is None and len(out.accepted) == 1
    assert out.accepted[0].recipients == ((G01, "shared"), (G03, "shared"))
    [delivery] = [o for o in out.outgoing if o.headers[H_KIND] == "document"]
    [refusal] = [o for o in out.outgoing if o.headers[H_KIND] == "refusal"]
    assert delivery.routing_key == "sh" and delivery.headers[H_RECIPIENTS] == [G01, G03]
    body = orjson.loads(refusal.body)
    assert refusal.routing_key == "d1" and body["reason"] == "UNKNOWN_RECIPIENT" and body["unknown"] == [H53]
    assert "retired" in body["detail"]
