"""Every AMQP header the axis writes stays bounded, whatever the largest legal input (finding 1 of the outside
review: one unbounded header value over RabbitMQ's 131,072-byte frame closed the router's connection).

Each message the router core, the router's forwards and the endpoint servers publish is built from the largest
input the axis accepts — a DocumentId as long as the envelope limit allows, the most recipients
``limits.max_recipients`` allows, every one of them unknown, 35-character codes, a long refusal detail — and
its content-header frame is encoded exactly as it goes on the wire (pamqp) and measured.
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from pamqp import frame
from pamqp.header import ContentHeader

from axis.broker.transport import make_message
from axis.core import envelope
from axis.core.directory import Agency, Directory, Server
from axis.core.wire import (
    H_BOUNCES,
    H_FORWARD_KIND,
    H_KIND,
    H_RECIPIENTS,
    H_SERVER,
    HEADER_LIST_ITEMS,
    HEADER_TEXT_BYTES,
    KIND_DOCUMENT,
    KIND_FORWARD,
    KIND_REFUSAL,
    KIND_STATUS,
    Outgoing,
    bounded,
    submission,
)
from axis.router.core import RouterCore
from axis.router.forward import forward
from tests.support.testing import TestPKI, make_pki

G22, H53, G01 = "000.00.00.G22", "000.00.00.H53", "000.00.00.G01"
FRAME_MAX = 131_072  # RabbitMQ's default frame_max: a content header frame must fit in it
LIMIT = 64 * 1024  # what we allow ourselves: half of it
LONG_ID = "Đ" * 200_000  # a legal DocumentId (any non-empty string), 400 KB of UTF-8
MAX_RECIPIENTS = 1000  # the highest limits.max_recipients the configuration accepts
CODES = [f"{i:035d}" for i in range(MAX_RECIPIENTS)]  # 35 characters: OrganId's maximum


def wire_size(out: Outgoing) -> int:
    """Bytes of the content-header frame carrying this message's properties (headers included)."""
    props = make_message(out, user_id="axis-endpoint-d1").properties
    return len(frame.marshal(ContentHeader(0, len(out.body), props), 1))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [G22, H53, G01], algorithm="ec")


@pytest.fixture(scope="module")
def directory() -> Directory:
    # G01 has just moved from d2 to sh: d2 may forward its deliveries
    return Directory([Server("d1", "dedicated"), Server("d2", "dedicated"), Server("sh", "shared")],
                     [Agency(G22, "a", "d1"), Agency(H53, "b", "d2"), Agency(G01, "c", "sh", ("d2",))])


def biggest_document(pki: TestPKI, recipients: list[str], **kw) -> bytes:  # type: ignore[no-untyped-def]
    msg = envelope.new_document(G22, recipients, "S" * 10_000, **kw)
    return pki.sign(envelope.build(dataclasses.replace(msg, document_id=LONG_ID)), G22)


def all_outgoing(pki: TestPKI, directory: Directory) -> list[Outgoing]:
    core = RouterCore(directory, pki.verifier(), max_bytes=25 * 2**20, max_recipients=MAX_RECIPIENTS)
    out: list[Outgoing] = []
    # a document: one known recipient on a server and every other recipient unknown (delivery + refusal notice)
    out += core.process(biggest_document(pki, [H53, *CODES[1:]]), {H_KIND: KIND_DOCUMENT, H_SERVER: "d1"},
                        "m1").outgoing
    # too many recipients: refused (dead letter + notice to the proven sender)
    out += core.process(biggest_document(pki, [H53, *CODES]), {H_KIND: KIND_DOCUMENT, H_SERVER: "d1"},
                        "m2").outgoing
    # an unverified document re-using the long DocumentId: dead letter + notice to the publishing server
    unsigned = envelope.build(dataclasses.replace(envelope.new_document(G22, CODES[:5], "x"), document_id=LONG_ID))
    out += core.process(unsigned, {H_KIND: KIND_DOCUMENT, H_SERVER: "sh"}, "m3").outgoing
    # a status about the long DocumentId (routed), and one from the wrong server (dead letter)
    status = envelope.build(envelope.new_status(H53, envelope.ResponseFor(G22, LONG_ID), "03", "D" * 50_000))
    out += core.process(status, {H_KIND: KIND_STATUS, H_SERVER: "d2"}, "m4").outgoing
    out += core.process(status, {H_KIND: KIND_STATUS, H_SERVER: "sh"}, "m5").outgoing
    # forwards (a live move hands deliveries back): every recipient named, a long refusal notice forwarded
    notice = orjson.dumps({"sender": G01, "document_id": LONG_ID, "reason": "UNKNOWN_RECIPIENT", "detail": "x" * 9999})
    answer = envelope.build(envelope.new_status(H53, envelope.ResponseFor(G01, LONG_ID), "03", "D" * 50_000))
    for kind, body in ((KIND_DOCUMENT, biggest_document(pki, [G01])), (KIND_REFUSAL, notice), (KIND_STATUS, answer)):
        headers = {H_KIND: KIND_FORWARD, H_FORWARD_KIND: kind, H_SERVER: "d2", H_RECIPIENTS: [G01], H_BOUNCES: "0"}
        out += forward(directory, pki.verifier(), 25 * 2**20, body, headers)
    # what endpoint servers publish: a forward naming the most recipients there can be
    out.append(submission(b"x", "d1", KIND_FORWARD, **{H_FORWARD_KIND: KIND_DOCUMENT, H_RECIPIENTS: CODES,
                                                        H_BOUNCES: "9" * 5000}))
    return out


def test_every_header_the_axis_writes_fits_a_frame(pki: TestPKI, directory: Directory) -> None:
    outgoing = all_outgoing(pki, directory)
    assert len(outgoing) >= 10
    kinds = {o.headers.get(H_KIND) for o in outgoing}
    assert {KIND_DOCUMENT, KIND_REFUSAL, KIND_STATUS, KIND_FORWARD} <= kinds
    for o in outgoing:
        size = wire_size(o)
        assert size < LIMIT < FRAME_MAX, (o.exchange, o.routing_key, dict(o.headers).keys(), size)
        for key, value in make_message(o).headers.items():
            if isinstance(value, str):
                assert len(value.encode()) <= HEADER_TEXT_BYTES, key
            elif isinstance(value, list):
                assert len(value) <= HEADER_LIST_ITEMS, key


def test_recipients_are_never_cut() -> None:
    """A delivery's recipient list is complete at the configuration's highest limit (a cut list would lose
    deliveries): bounding only shortens what no reader needs whole."""
    assert bounded(CODES) == CODES
    assert bounded("x" * 5000) == "x" * HEADER_TEXT_BYTES
    cut = bounded("Đ" * 1000)  # 2 bytes each: cut on a character boundary
    assert len(cut.encode()) <= HEADER_TEXT_BYTES and set(cut) == {"Đ"}
    assert bounded(b"\xff" * 3) == "\ufffd" * 3 and bounded(7) == 7
