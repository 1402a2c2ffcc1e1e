"""Publisher.publish builds AMQP properties directly (make_properties): the same properties an aio_pika.Message of
the same outgoing message carries, message id apart (each call draws a fresh one)."""

from __future__ import annotations

from axis.broker.transport import make_message, make_properties
from axis.core.wire import HEADER_TEXT_BYTES, KIND_DOCUMENT, Outgoing, submission


def _fields(props: object) -> dict[str, object]:
    return {k: getattr(props, k) for k in ("app_id", "content_encoding", "content_type", "correlation_id",
                                           "delivery_mode", "expiration", "headers", "message_type", "priority",
                                           "reply_to", "timestamp", "user_id")}


def test_same_properties_as_an_aio_pika_message() -> None:
    outs = [
        submission(b"<edXML/>", "s01", KIND_DOCUMENT, **{"x-axis-submitted-at": 1_700_000_000_000}),
        Outgoing("axis.deliver", "s02", b"{}", {"x-axis-recipients": ["000.00.00.G22", "000.00.00.H53"],
                                                "x-axis-detail": "é" * HEADER_TEXT_BYTES},
                 content_type="application/json"),
        Outgoing("axis.evidence", "", b"[]", {}, message_id="fixed-id"),
    ]
    for out in outs:
        for user in (None, "axis-server-s01"):
            direct, via_message = make_properties(out, user), make_message(out, user).properties
            assert _fields(direct) == _fields(via_message)
            assert int(direct.delivery_mode) == 2 and direct.priority == 0
            if out.message_id:
                assert direct.message_id == via_message.message_id == out.message_id


def test_bounded_headers_and_fresh_ids() -> None:
    out = Outgoing("axis.deliver", "s02", b"x", {"x-axis-detail": "x" * (HEADER_TEXT_BYTES * 3)})
    a, b = make_properties(out), make_properties(out)
    assert a.message_id != b.message_id and a.message_id and b.message_id
    assert len(a.headers["x-axis-detail"].encode()) <= HEADER_TEXT_BYTES
