"""The router's decisions without a broker: what it publishes and counts for each kind of message."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

import orjson
import pytest

from axis.core import envelope
from axis.core.directory import Directory
from axis.core.wire import (
    EX_DELIVER,
    EX_DLX,
    H_DOC_TYPE,
    H_KIND,
    H_REASON,
    H_RECIPIENTS,
    H_SERVER,
    H_SHA256,
    H_STATUS,
    H_SUBMITTED_AT,
    StatusFields,
    status_fields,
)
from axis.router.core import RouterCore
from tests.support.testing import TestPKI, make_pki

G22, H53, G01, G03, G99 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01", "000.00.00.G03", "000.00.00.G99"
NOW = datetime(2019, 5, 10, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [G22, H53, G01, G03, G99], algorithm="ec")


@pytest.fixture(scope="module")
def core(pki: TestPKI) -> RouterCore:
    d = Directory.from_records([("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared")],
                               [(G22, "a", "d1"), (H53, "b", "d2"), (G01, "c", "sh"), (G03, "d", "sh")])
    return RouterCore(d, pki.verifier(), max_bytes=1_000_000, clock=lambda: NOW)


def doc(pki: TestPKI, sender: str, to: list[str], **kw) -> bytes:  # type: ignore[no-untyped-def]
    return pki.sign(envelope.build(envelope.new_document(sender, to, "Subject", **kw)), sender)


def test_document_goes_once_per_server_with_original_bytes(pki: TestPKI, core: RouterCore) -> None:
    data = doc(pki, G22, [G01, H53, G03])
    out = core.process(data, {H_KIND: "document", H_SERVER: "d1"}, "m1")
    assert out.reason is None and out.refused == []
    assert [(o.exchange, o.routing_key, o.headers[H_RECIPIENTS]) for o in out.outgoing] == [
        (EX_DELIVER, "sh", [G01, G03]), (EX_DELIVER, "d2", [H53])]
    assert all(o.body is data for o in out.outgoing)  # never re-serialized
    [acc] = out.accepted
    msg = envelope.parse(data)
    assert acc.key == f"{G22}|{msg.document_id}|0" and acc.sender_kind == "dedicated" and acc.size == len(data)
    assert acc.recipients == ((G01, "shared"), (G03, "shared"), (H53, "dedicated")) and acc.at == NOW


def test_unknown_recipient_named_back_to_sender(pki: TestPKI, core: RouterCore) -> None:
    out = core.process(doc(pki, G22, [H53, G99]), {H_KIND: "document"}, "m2")
    deliveries = [o for o in out.outgoing if o.headers[H_KIND] == "document"]
    [refusal] = [o for o in out.outgoing if o.headers[H_KIND] == "refusal"]
    assert [o.routing_key for o in deliveries] == ["d2"]
    assert refusal.routing_key == "d1" and refusal.headers[H_REASON] == "UNKNOWN_RECIPIENT"
    body = orjson.loads(refusal.body)
    assert body["unknown"] == [G99] and body["sender"] == G22 and body["code"] == "02"
    assert len(out.accepted) == 1 and out.refused == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.replace(b"Subject", b"Subjekt"), "SIGNATURE_INVALID"),
        (lambda d: d[:-40], "XML_MALFORMED"),
        (lambda d: b"<!DOCTYPE x>" + d, "XML_FORBIDDEN"),
    ],
)
def test_refused_documents(pki: TestPKI, core: RouterCore, mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    bad = mutate(doc(pki, G22, [H53]))
    out = core.process(bad, {H_KIND: "document", H_SERVER: "d1"}, "m3")
    assert out.reason == reason and out.accepted == []
    dead = out.outgoing[0]
    assert (dead.exchange, dead.headers[H_REASON], dead.body, dead.message_id) == (EX_DLX, reason, bad, "m3")
    back = [o for o in out.outgoing if o.exchange == EX_DELIVER]
    # nobody proved who sent it: the notice goes to the server that published it, marked unverified
    assert [(o.routing_key, o.headers[H_REASON]) for o in back] == [("d1", reason)]
    notice = orjson.loads(back[0].body)
    assert notice["verified"] is False and notice["sha256"] == hashlib.sha256(bad).hexdigest()
    [r] = out.refused
    assert (r.message_id, r.reason, r.size, r.sender, r.server) == ("m3", reason, len(bad), None, "d1")


def test_unverified_document_is_never_told_to_the_claimed_sender(pki: TestPKI, core: RouterCore) -> None:
    """Finding 4: an unsigned document claiming to be G22's, re-using a real DocumentId of G22, published by the
    shared server: the refusal goes to the shared server (unverified), is counted against it, and G22's server
    (d1) hears nothing."""
    real = envelope.new_document(G22, [H53], "the real one")
    fake = envelope.build(dataclasses.replace(real, subject="x"))  # same DocumentId, never signed by G22
    for forged in (fake, pki.sign(fake, G01)):  # unsigned, and signed by another agency
        out = core.process(forged, {H_KIND: "document", H_SERVER: "sh"}, "spoof")
        assert out.reason in ("SIGNATURE_MISSING", "SIGNER_MISMATCH")
        back = [o for o in out.outgoing if o.exchange == EX_DELIVER]
        assert [o.routing_key for o in back] == ["sh"]
        notice = orjson.loads(back[0].body)
        assert notice["verified"] is False and notice["sender"] == G22  # what it claims, marked as a claim
        [r] = out.refused
        assert (r.sender, r.server) == (None, "sh")
    # without an authenticated publishing server there is nobody to tell: dead letter only
    out = core.process(fake, {H_KIND: "document"}, "spoof2")
    assert [o.exchange for o in out.outgoing] == [EX_DLX] and out.refused[0].sender is None


def test_too_many_recipients_refused_to_the_proven_sender(pki: TestPKI) -> None:
    """Finding 1: recipients per document are limited (TOO_LARGE) at the router too; the refusal of a document
    whose signature verified goes to its sender's server, counted against the sender."""
    d = Directory.from_records([("d1", "dedicated"), ("d2", "dedicated")], [(G22, "a", "d1"), (H53, "b", "d2")])
    small = RouterCore(d, pki.verifier(), max_bytes=1_000_000, max_recipients=3, clock=lambda: NOW)
    unknown = [f"000.00.{i:02d}.G99" for i in range(3)]
    out = small.process(doc(pki, G22, [H53, *unknown]), {H_KIND: "document", H_SERVER: "d1"}, "many")
    assert out.reason == "TOO_LARGE" and out.accepted == []
    [back] = [o for o in out.outgoing if o.exchange == EX_DELIVER]
    assert back.routing_key == "d1" and orjson.loads(back.body)["verified"] is True
    assert (out.refused[0].sender, out.refused[0].server) == (G22, None)
    assert small.process(doc(pki, G22, [H53, *unknown[:2]]), {H_KIND: "document"}, "ok").accepted


def test_forged_submission_time_does_not_poison_latency(pki: TestPKI, core: RouterCore) -> None:
    """Finding 8: x-axis-submitted-at is believed only within a plausible window of the router's clock."""
    now_ms = NOW.timestamp() * 1000
    for forged, expected in ((1, 0.0), (now_ms - 1.8e12, 0.0), (now_ms + 3.6e6, 0.0), ("nan", 0.0),
                             ("x", 0.0), (now_ms - 250, 250.0), (now_ms + 100, 0.0)):
        out = core.process(doc(pki, G22, [H53]), {H_KIND: "document", H_SUBMITTED_AT: forged}, "lat")
        assert out.accepted[0].latency_ms == expected, forged


def test_unknown_sender_and_signer_checks(pki: TestPKI, core: RouterCore) -> None:
    out = core.process(doc(pki, G99, [H53]), {H_KIND: "document"}, "m4")
    assert out.reason == "UNKNOWN_SENDER" and [o.exchange for o in out.outgoing] == [EX_DLX]
    unsigned = envelope.build(envelope.new_document(G22, [H53], "x"))
    assert core.process(unsigned, {}, "m5").reason == "SIGNATURE_MISSING"
    forged = pki.sign(envelope.build(envelope.new_document(G22, [H53], "x")), G01)  # G01 signs as G22
    assert core.process(forged, {}, "m6").reason == "SIGNER_MISMATCH"


def test_status_routes_back_and_01_counts_a_delivery(pki: TestPKI, core: RouterCore) -> None:
    original = envelope.parse(doc(pki, G22, [G01], doc_type=1, related_document_id="x,2019/01/01,1"))
    st = envelope.build(envelope.new_status(G01, original, "01", "arrived"))
    out = core.process(st, {H_KIND: "status", H_SERVER: "sh", H_DOC_TYPE: 1}, "s1")
    assert [(o.exchange, o.routing_key, o.body) for o in out.outgoing] == [(EX_DELIVER, "d1", st)]
    [d] = out.delivered
    assert (d.key, d.recipient, d.recipient_kind, d.sender_kind) == (
        f"{G22}|{original.document_id}|1", G01, "shared", "dedicated")
    st3 = envelope.build(envelope.new_status(G01, original, "03"))
    assert core.process(st3, {H_KIND: "status", H_SERVER: "sh"}, "s2").delivered == []
    wrong = core.process(st, {H_KIND: "status", H_SERVER: "d2"}, "s3")
    assert wrong.reason == "FORBIDDEN" and [o.exchange for o in wrong.outgoing] == [EX_DLX]  # no status about a status


def test_unknown_kind(core: RouterCore) -> None:
    assert core.process(b"<x/>", {H_KIND: "bogus"}, "k").reason == "SCHEMA_INVALID"


def test_forward_goes_back_while_a_reload_is_in_progress(pki: TestPKI, core: RouterCore) -> None:
    """A live move reloads routers and hosts one after the other: a server may forward for an agency this router
    still places on that very server. The forward goes back to it (bounces + 1), and is refused only when the
    disagreement lasts MAX_BOUNCES rounds — never dropped, and never a refusal in the normal window."""
    from axis.core.directory import Agency, Server
    from axis.core.wire import H_BOUNCES, H_FORWARD_KIND
    from axis.router.forward import MAX_BOUNCES

    # G01 is moving from sh to d2 (announced): this router still places it on sh, sh has reloaded already
    servers = [Server("d1", "dedicated"), Server("d2", "dedicated"), Server("sh", "shared")]
    moving = RouterCore(Directory(servers, [Agency(G22, "a", "d1"), Agency(H53, "b", "d2"),
                                            Agency(G01, "c", "sh", ("d2",)), Agency(G03, "d", "sh")]),
                        pki.verifier(), max_bytes=1_000_000, clock=lambda: NOW)
    original = envelope.parse(doc(pki, G01, [G22]))
    st = envelope.build(envelope.new_status(G22, original, "03"))
    fwd = {H_KIND: "forward", H_FORWARD_KIND: "status", H_RECIPIENTS: [G01], H_SERVER: "sh"}
    # a server forwarding for an agency it hosts that never moved: refused
    assert core.process(st, fwd, "f0").reason == "FORBIDDEN"
    core = moving
    out = core.process(st, fwd, "f1")  # sh and this router disagree for a moment
    assert out.reason is None and [(o.routing_key, o.headers[H_BOUNCES]) for o in out.outgoing] == [("sh", 1)]
    data = doc(pki, G22, [G01, G03])
    out = core.process(data, {**fwd, H_FORWARD_KIND: "document", H_RECIPIENTS: [G01], H_BOUNCES: "7"}, "f2")
    assert [(o.routing_key, o.headers[H_BOUNCES]) for o in out.outgoing] == [("sh", 8)] and out.accepted == []
    stale = core.process(st, {**fwd, H_BOUNCES: str(MAX_BOUNCES)}, "f3")
    assert stale.reason == "FORBIDDEN" and [o.exchange for o in stale.outgoing] == [EX_DLX]
    # a server that never hosted the agency may not forward its statuses
    assert core.process(st, {**fwd, H_SERVER: "d1"}, "f4").reason == "FORBIDDEN"


def test_status_bundle_items_are_checked_counted_and_refused_alone(pki: TestPKI, core: RouterCore) -> None:
    from axis.core.bundle import Item, pack, unpack
    from axis.core.wire import H_SENDER
    from axis.router.core import coalesce

    original = envelope.parse(doc(pki, G22, [G01, G03, H53]))
    ok1 = envelope.build(envelope.new_status(G01, original, "01", "arrived"))
    ok2 = envelope.build(envelope.new_status(G03, original, "01", "arrived"))
    forged = envelope.build(envelope.new_status(H53, original, "01", "arrived"))  # H53 is on d2, not sh
    body = pack([Item(ok1, {H_DOC_TYPE: 0}), Item(b"<broken"), Item(ok2, {H_DOC_TYPE: 0}),
                 Item(forged, {H_DOC_TYPE: 0}), Item(forged, {H_SERVER: "d2", H_DOC_TYPE: 0})])
    out = core.process(body, {H_KIND: "status-bundle", H_SERVER: "sh"}, "b1")
    assert out.reason is None and out.items == 5
    assert sorted(d.recipient for d in out.delivered) == sorted([G01, G03])
    # an item cannot name another publishing server than the bundle's
    assert {r.message_id: r.reason for r in out.refused} == {"b1#1": "XML_MALFORMED", "b1#3": "FORBIDDEN",
                                                             "b1#4": "FORBIDDEN"}
    dead = [o for o in out.outgoing if o.exchange == EX_DLX]
    assert [(o.body, o.message_id, o.headers[H_REASON]) for o in dead] == [
        (b"<broken", "b1#1", "XML_MALFORMED"), (forged, "b1#3", "FORBIDDEN"),
        (forged, "b1#4", "FORBIDDEN")]  # each bad item alone, with its reason
    forwarded = [o for o in out.outgoing if o.exchange == EX_DELIVER]
    assert [(o.routing_key, o.body) for o in forwarded] == [("d1", ok1), ("d1", ok2)]
    assert all(o.headers[H_SENDER] for o in forwarded)
    # the router sends the statuses bound for one server as one bundle, everything else untouched
    [bundled] = coalesce(forwarded)
    assert bundled.routing_key == "d1" and bundled.headers[H_KIND] == "status-bundle"
    assert [i.body for i in unpack(bundled.body)] == [ok1, ok2]
    # each item keeps the fields the router read, for the sender's server to store without parsing again
    assert [status_fields(i.meta) for i in unpack(bundled.body)] == [
        StatusFields(G22, code, original.document_id, "01", "arrived", status.timestamp)
        for code, status in ((G01, envelope.parse(ok1)), (G03, envelope.parse(ok2)))]


def test_a_status_carries_the_fields_the_router_read_when_they_fit_a_header(pki: TestPKI, core: RouterCore) -> None:
    original = envelope.parse(doc(pki, G22, [G01]))
    st = envelope.build(envelope.new_status(G01, original, "03", "Đã giao cho chuyên viên xử lý"))
    [delivered] = core.process(st, {H_KIND: "status", H_SERVER: "sh"}, "s1").outgoing
    parsed = envelope.parse(st)
    assert isinstance(parsed, envelope.StatusMessage)
    assert status_fields(delivered.headers) == StatusFields(
        G22, G01, original.document_id, "03", "Đã giao cho chuyên viên xử lý", parsed.timestamp)
    # a description too long for a header: no fields, the server parses the status itself
    long = envelope.build(envelope.new_status(G01, original, "03", "x" * 2000))
    [plain] = core.process(long, {H_KIND: "status", H_SERVER: "sh"}, "s2").outgoing
    assert plain.body == long and H_STATUS not in plain.headers and status_fields(plain.headers) is None


def test_coalesce_per_server_and_lone_statuses_stay_plain(core: RouterCore) -> None:
    from axis.core.bundle import unpack
    from axis.core.wire import Outgoing
    from axis.router.core import coalesce

    doc_out = Outgoing(EX_DELIVER, "d2", b"<doc/>", {H_KIND: "document"})
    a = [Outgoing(EX_DELIVER, "d1", f"<s{i}/>".encode(), {H_KIND: "status"}) for i in range(3)]
    b = Outgoing(EX_DELIVER, "sh", b"<t/>", {H_KIND: "status"})
    dead = Outgoing(EX_DLX, "", b"<x/>", {H_KIND: "status"})
    out = coalesce([a[0], doc_out, b, a[1], dead, a[2]])
    assert out[0] == dead
    [bundle_d1, lone, lone_doc] = out[1:]
    assert bundle_d1.routing_key == "d1" and [i.body for i in unpack(bundle_d1.body)] == [o.body for o in a]
    assert lone is b and lone_doc is doc_out
    assert len(coalesce(a * 5, max_items=4)) == 4  # 15 statuses: 4 + 4 + 4 + 3


def test_coalesce_packs_documents_per_server_with_their_own_headers(core: RouterCore) -> None:
    from axis.core.bundle import unpack
    from axis.core.wire import H_BOUNCES, H_RECIPIENTS, Outgoing
    from axis.router.core import BUNDLE_BYTES, BUNDLE_DOCUMENT_BYTES, coalesce

    def doc(server: str, n: int, size: int = 100, **extra: object) -> Outgoing:
        return Outgoing(EX_DELIVER, server, bytes([65 + n % 26]) * size,
                        {H_KIND: "document", H_RECIPIENTS: [f"R{n}"], H_DOC_TYPE: 0, **extra})

    d1 = [doc("d1", i) for i in range(3)]
    big = doc("d1", 9, BUNDLE_DOCUMENT_BYTES + 1)  # too large to bundle: alone
    bounce = doc("d1", 8, **{H_BOUNCES: "1"})  # its header must travel: alone
    refusal = Outgoing(EX_DELIVER, "d1", b"{}", {H_KIND: "refusal"})
    out = coalesce([d1[0], big, d1[1], bounce, refusal, doc("sh", 5), d1[2]])
    assert out[:3] == [big, bounce, refusal]
    [packed, lone] = out[3:]
    assert lone.routing_key == "sh" and lone.headers[H_KIND] == "document"  # one document: a plain message
    assert packed.routing_key == "d1" and packed.headers == {H_KIND: "document-bundle"}
    items = unpack(packed.body)
    assert [i.body for i in items] == [o.body for o in d1]
    assert [i.meta[H_RECIPIENTS] for i in items] == [["R0"], ["R1"], ["R2"]]  # each its own delivery headers
    # at most BUNDLE_BYTES of documents a bundle
    many = [doc("d1", i, 200_000) for i in range(12)]
    bundles = coalesce(many)
    assert all(len(b.body) <= BUNDLE_BYTES + 12 * 200 for b in bundles)
    assert [len(unpack(b.body)) for b in bundles] == [5, 5, 2]


def test_bad_bundle_framing_refuses_the_whole_message(core: RouterCore) -> None:
    out = core.process(b"AXB1\x00\x00\x00\x02junk", {H_KIND: "status-bundle", H_SERVER: "sh"}, "b2")
    assert out.reason == "XML_MALFORMED" and [o.exchange for o in out.outgoing] == [EX_DLX]
    assert [r.message_id for r in out.refused] == ["b2"]


def test_an_overlong_document_id_is_refused_and_every_leaf_stays_loggable(pki: TestPKI, core: RouterCore) -> None:
    """A DocumentId over MAX_DOCUMENT_ID characters (legal in the schema) is refused, and the refusal's leaf still
    fits the log (one over-long id made the log writer dead-letter the whole batch's events, another agency's
    included); the longest legal one is routed."""
    from axis.core.evidence import MAX_LEAF_BYTES
    from axis.core.routing import MAX_DOCUMENT_ID

    def with_id(document_id: str) -> bytes:
        msg = envelope.new_document(G22, [H53], "x")
        return pki.sign(envelope.build(dataclasses.replace(msg, document_id=document_id)), G22)

    out = core.process(with_id("Đ" * (MAX_DOCUMENT_ID + 1)), {H_KIND: "document", H_SERVER: "d1"}, "long")
    assert out.reason == "SCHEMA_INVALID" and out.accepted == []
    assert [o.routing_key for o in out.outgoing if o.exchange == EX_DELIVER] == ["d1"]  # told to its sender
    assert all(len(e.leaf()) <= MAX_LEAF_BYTES for e in out.events) and out.events[0].document_id == ""
    longest = core.process(with_id("Đ" * MAX_DOCUMENT_ID), {H_KIND: "document", H_SERVER: "d1"}, "ok")
    assert longest.reason is None and all(len(e.leaf()) <= MAX_LEAF_BYTES for e in longest.events)
    # a status about such an id is refused too
    status = envelope.build(envelope.new_status(H53, envelope.ResponseFor(G22, "Đ" * 600), "03"))
    assert core.process(status, {H_KIND: "status", H_SERVER: "d2"}, "st").reason == "SCHEMA_INVALID"


def test_a_status_is_routed_from_its_servers_fields_as_from_its_xml(pki: TestPKI, core: RouterCore) -> None:
    """A server states the fields of the status it built (``x-axis-status``, beside the XML): the 01 of a delivery,
    or a status an agency sent through the REST API. The router routes, logs and counts it from them without
    parsing the XML — with the same checks as any status."""
    from axis.core.bundle import Item, pack

    original = envelope.parse(doc(pki, G22, [G01, G03]))
    assert isinstance(original, envelope.DocumentMessage)
    st = envelope.new_status(G01, original, "01", "arrived", timestamp="2019/05/10 08:00:00")
    xml = envelope.build(st)
    fields = StatusFields(G22, G01, original.document_id, "01", "arrived", "2019/05/10 08:00:00")
    meta = {H_DOC_TYPE: 0, H_SHA256: "ab" * 32}
    by_xml = core.process(pack([Item(xml, meta)]), {H_KIND: "status-bundle", H_SERVER: "sh"}, "b1")
    by_fields = core.process(pack([Item(b"<not parsed", {**meta, **fields.header()})]),
                             {H_KIND: "status-bundle", H_SERVER: "sh"}, "b2")
    assert by_fields.refused == [] and by_fields.events == by_xml.events  # stored + status leaves, same digest
    assert [(d.key, d.recipient) for d in by_fields.delivered] == [(d.key, d.recipient) for d in by_xml.delivered]
    [out] = by_fields.outgoing
    assert (out.routing_key, status_fields(out.headers)) == ("d1", fields)
    # an agency's status 05, sent alone: the same leaves and route from its fields as from its XML, never counted
    # as a delivery
    st05 = envelope.new_status(G01, original, "05", "Đang xử lý", timestamp="2019/05/10 09:00:00")
    f05 = StatusFields.of(st05)
    lone = {H_KIND: "status", H_SERVER: "sh", H_DOC_TYPE: "0", H_SHA256: "cd" * 32}
    xml05 = core.process(envelope.build(st05), lone, "s1")
    by_f05 = core.process(b"<not parsed", {**lone, **f05.header()}, "s2")
    assert by_f05.refused == [] and by_f05.delivered == [] and by_f05.events == xml05.events
    assert [e.code for e in by_f05.events] == ["05"]
    assert [(o.routing_key, status_fields(o.headers)) for o in by_f05.outgoing] == [("d1", f05)]
    # the same checks: the publishing server must host the reporter (G01 is on sh, not d2)
    forged = core.process(pack([Item(xml, {**meta, **fields.header()})]), {H_KIND: "status-bundle", H_SERVER: "d2"},
                          "b3")
    assert [r.reason for r in forged.refused] == ["FORBIDDEN"] and forged.delivered == []
    # a code outside the schema, a timestamp not of its form, a long description: read from the XML (here: broken,
    # so refused as such)
    for odd in (dataclasses.replace(fields, code="99"), dataclasses.replace(fields, timestamp="hôm nay"),
                dataclasses.replace(fields, description="x" * 500)):
        out_odd = core.process(pack([Item(b"<broken", {**meta, **odd.header()})]),
                               {H_KIND: "status-bundle", H_SERVER: "sh"}, "b4")
        assert [r.reason for r in out_odd.refused] == ["XML_MALFORMED"], odd
    unknown = dataclasses.replace(fields, owner="000.00.00.Z99")
    out_unknown = core.process(pack([Item(xml, {**meta, **unknown.header()})]),
                               {H_KIND: "status-bundle", H_SERVER: "sh"}, "b5")
    assert [r.reason for r in out_unknown.refused] == ["UNKNOWN_RECIPIENT"]


def test_a_document_bundle_from_a_door_is_decided_item_by_item(pki: TestPKI, core: RouterCore) -> None:
    """The documents a server's door submitted together: each verified, routed, counted or refused alone, exactly as
    if it had come as its own message; nothing in an item can change the publishing server."""
    from axis.core.bundle import Item, pack

    a, b = doc(pki, G22, [G01]), doc(pki, G03, [H53])
    forged = envelope.build(envelope.new_document(G01, [H53], "unsigned"))
    at = int(NOW.timestamp() * 1000) - 40
    body = pack([Item(a, {H_SUBMITTED_AT: at}), Item(forged, {H_SUBMITTED_AT: at, H_SERVER: "d2"}),
                 Item(b, {H_SUBMITTED_AT: at})])
    out = core.process(body, {H_KIND: "document-bundle", H_SERVER: "sh"}, "s1")
    assert out.items == 3 and out.reason is None
    assert [(acc.sender, acc.latency_ms) for acc in out.accepted] == [(G22, 40), (G03, 40)]
    assert [(o.routing_key, o.body) for o in out.outgoing if o.exchange == EX_DELIVER and o.body in (a, b)] == [
        ("sh", a), ("d2", b)]
    # the unsigned item alone is refused, under its own id; the refusal goes to the bundle's server, not to "d2"
    [refused] = out.refused
    assert refused.message_id == "s1#1" and refused.reason == "SIGNATURE_MISSING"
    [dead] = [o for o in out.outgoing if o.exchange == EX_DLX]
    assert dead.body == forged and dead.headers[H_SERVER] == "sh" and dead.message_id == "s1#1"
    assert sorted(e.type for e in out.events) == ["refused", "routed", "routed", "submitted", "submitted"]
    # a bundle whose framing is bad is refused whole
    bad = core.process(b"AXB1\x00\x00\x00\x02junk", {H_KIND: "document-bundle", H_SERVER: "sh"}, "s2")
    assert bad.reason == "XML_MALFORMED" and [r.message_id for r in bad.refused] == ["s2"]


def test_a_host_bundle_names_a_server_per_item_among_the_hosts_proven_servers(pki: TestPKI, core: RouterCore) -> None:
    """A host process's bundle (endpoints.link): no server of its own, each item names one; the service passes the
    host's servers (x-axis-host-servers) only when the host's broker user proved them. An item naming a server
    outside them is refused alone (FORBIDDEN); without a proven list an item's server is nobody's."""
    from axis.core.bundle import Item, pack
    from axis.core.wire import H_HOST_SERVERS

    original = envelope.parse(doc(pki, G22, [G01, H53]))
    from_sh = envelope.build(envelope.new_status(G01, original, "01", "arrived"))  # G01 is on sh
    from_d2 = envelope.build(envelope.new_status(H53, original, "01", "arrived"))  # H53 is on d2
    body = pack([Item(from_sh, {H_SERVER: "sh", H_DOC_TYPE: 0}), Item(from_d2, {H_SERVER: "d2", H_DOC_TYPE: 0}),
                 Item(from_d2, {H_SERVER: "d1", H_DOC_TYPE: 0}), Item(from_sh, {H_DOC_TYPE: 0})])
    out = core.process(body, {H_KIND: "status-bundle", H_HOST_SERVERS: frozenset({"sh", "d2"})}, "h1")
    assert out.items == 4
    assert sorted(d.recipient for d in out.delivered) == sorted([G01, H53])  # each from its own server
    assert {r.message_id: (r.reason, r.server) for r in out.refused} == {"h1#2": ("FORBIDDEN", None),
                                                                         "h1#3": ("FORBIDDEN", None)}
    # documents alike: an item is decided as a submission of the server it names
    a, b = doc(pki, G01, [G22]), doc(pki, H53, [G22])
    docs = core.process(pack([Item(a, {H_SERVER: "sh"}), Item(b, {H_SERVER: "d2"}), Item(b, {H_SERVER: "d1"})]),
                        {H_KIND: "document-bundle", H_HOST_SERVERS: frozenset({"sh", "d2"})}, "h2")
    assert [e.server for e in docs.events if e.type == "submitted"] == ["sh", "d2"]
    assert [(r.message_id, r.reason) for r in docs.refused] == [("h2#2", "FORBIDDEN")]
    # no proven list (a server's own bundle, or a list the service did not believe): the items' names count for
    # nothing, the bundle's own server decides
    plain = core.process(body, {H_KIND: "status-bundle", H_SERVER: "sh"}, "p1")
    assert [d.recipient for d in plain.delivered] == [G01, G01]
    anonymous = core.process(body, {H_KIND: "status-bundle"}, "p2")
    assert anonymous.delivered == [] and {r.reason for r in anonymous.refused} == {"FORBIDDEN"}
