"""Dead letters without a broker (axis.core.deadletters): what a message of axis.dead is, ids, selection, resends,
log events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from axis.core import deadletters as dl
from axis.core.wire import EX_DELIVER, EX_EVIDENCE, EX_SUBMIT, H_SUBMITTED_AT

REFUSAL = {"x-axis-reason": "UNKNOWN_SENDER", "x-axis-detail": "not in the directory: X", "x-axis-server": "d1",
           "x-axis-kind": "document", "x-axis-sender": "000.00.00.X", "x-axis-document-id": "1/QĐ",
           dl.H_DEAD_AT: 1_700_000_000_123}


def test_a_refusal_reads_as_the_router_wrote_it() -> None:
    letter = dl.read(b"<x/>", REFUSAL, "m-1", content_type="application/octet-stream")
    assert (letter.reason, letter.sender, letter.document_id, letter.server, letter.source, letter.kind) == (
        "UNKNOWN_SENDER", "000.00.00.X", "1/QĐ", "d1", "router", "document")
    item = letter.item()
    assert item["at"] == "2023-11-14T22:13:20.123000Z" and item["size"] == 4
    assert set(item) >= {"id", "reason", "detail", "sender", "document_id", "server", "at"}


def test_a_poison_message_reads_from_rabbitmqs_x_death() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {"x-axis-server": "sh", "x-axis-kind": "status",
               "x-death": [{"queue": "axis.submissions", "reason": "delivery_limit", "count": 5, "time": when,
                            "exchange": "axis.submit"}]}
    letter = dl.read(b"<s/>", headers, "m-2", user_id="v.axis-server-sh")
    assert (letter.reason, letter.source, letter.kind, letter.user_id) == (
        "delivery_limit", "axis.submissions", "status", "v.axis-server-sh")
    assert letter.at == int(when.timestamp() * 1000) and "5 times" in letter.detail


def test_odd_headers_never_raise() -> None:
    letter = dl.read(b"", {"x-axis-doc-type": "nope", "x-death": "garbage", dl.H_DEAD_AT: b"x"}, None)
    assert (letter.reason, letter.at, letter.doc_type, letter.source) == ("unknown", None, 0, "?")


def test_the_id_is_stable_and_tells_bytes_and_messages_apart() -> None:
    a = dl.dead_letter_id("m-1", b"<x/>")
    assert a == dl.dead_letter_id("m-1", b"<x/>") and len(a) == 32
    assert a != dl.dead_letter_id("m-1", b"<y/>") and a != dl.dead_letter_id("m-2", b"<x/>")
    # keeping a letter (its headers stamped) does not change its id
    kept = dl.kept_headers(REFUSAL, "v.axis-admin", 5)
    assert dl.read(b"<x/>", kept, "m-1").id == a


def test_kept_headers_stamp_first_seen_and_publisher_once() -> None:
    first = dl.kept_headers({"x-axis-kind": "status"}, "v.axis-server-sh", 100)
    again = dl.kept_headers(first, "v.axis-admin", 200)  # republished by the admin app: the original stays
    assert again[dl.H_DEAD_AT] == 100 and again[dl.H_DEAD_USER] == "v.axis-server-sh"
    assert dl.kept_headers(REFUSAL, None, 999)[dl.H_DEAD_AT] == REFUSAL[dl.H_DEAD_AT]


def _letters() -> list[dl.DeadLetter]:
    out = []
    for i in range(5):
        h = dict(REFUSAL, **{"x-axis-sender": f"A{i % 2}", "x-axis-server": "d1" if i < 3 else "sh",
                             "x-axis-reason": "UNKNOWN_SENDER" if i % 2 else "CERT_REVOKED"})
        out.append(dl.read(f"<x{i}/>".encode(), h, f"m{i}"))
    return out


def test_selection_filters_and_pages_in_order() -> None:
    letters = _letters()
    page = dl.select(letters, dl.Selection(server="d1", limit=2))
    assert [i["sender"] for i in page["items"]] == ["A0", "A1"] and page["next_offset"] == 2 and page["total"] == 3
    last = dl.select(letters, dl.Selection(server="d1", limit=2, offset=2))
    assert [i["id"] for i in last["items"]] == [letters[2].id] and last["next_offset"] is None
    assert dl.select(letters, dl.Selection(reason="CERT_REVOKED", sender="A0"))["total"] == 3
    assert dl.select(letters, dl.Selection(sender="nobody")) == {"items": [], "next_offset": None, "total": 0}
    assert dl.counts_by_reason(letters) == {"CERT_REVOKED": 3, "UNKNOWN_SENDER": 2}


@pytest.mark.parametrize("kw", [{"limit": 0}, {"limit": 1001}, {"offset": -1}])
def test_bad_pages_are_refused(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        dl.Selection(**kw)


def test_unique_keeps_the_first_copy() -> None:
    a, b = _letters()[:2]
    assert dl.unique([a, b, a]) == [a, b]


def test_a_refusal_is_resent_to_the_router_as_if_just_submitted() -> None:
    letter = dl.read(b"<x/>", {**REFUSAL, "x-axis-doc-type": 7}, "m-1")
    out = dl.resend(letter, b"<x/>", {**REFUSAL, "x-axis-doc-type": 7}, server="d1", now_ms=42, message_id="new")
    assert (out.exchange, out.routing_key, out.body, out.message_id) == (EX_SUBMIT, "", b"<x/>", "new")
    assert out.headers == {"x-axis-kind": "document", "x-axis-doc-type": 7, "x-axis-server": "d1",
                           H_SUBMITTED_AT: 42}  # nothing of the refusal travels with it


def test_poison_deliveries_and_log_events_go_back_where_they_died() -> None:
    death = [{"queue": "axis.server.sh", "reason": "delivery_limit", "count": 5}]
    headers = {"x-axis-kind": "document", "x-axis-recipients": ["A"], "x-death": death}
    out = dl.resend(dl.read(b"<d/>", headers, "m"), b"<d/>", headers, server=None, now_ms=1, message_id="n")
    assert (out.exchange, out.routing_key) == (EX_DELIVER, "sh") and "x-death" not in out.headers
    assert out.headers["x-axis-recipients"] == ["A"]
    ev = {"x-death": [{"queue": "axis.evidence", "reason": "rejected"}]}
    out = dl.resend(dl.read(b"[]", ev, "m"), b"[]", ev, server=None, now_ms=1, message_id="n")
    assert out.exchange == EX_EVIDENCE


def test_the_admin_event_names_the_action_the_admin_and_the_document() -> None:
    letter = dl.read(b"<x/>", REFUSAL, "m-1")
    event = dl.admin_event(letter, "discard", "alice", 5, "ref-1")
    leaf = event.as_dict()
    assert (leaf["type"], leaf["action"], leaf["admin"], leaf["sender"], leaf["document_id"], leaf["reason"]) == (
        "admin", "discard", "alice", "000.00.00.X", "1/QĐ", "UNKNOWN_SENDER")
    assert "ref" not in leaf and event.key().endswith("ref|ref-1")
    with pytest.raises(ValueError):
        dl.admin_event(letter, "delete", "alice", 5, "r")


@pytest.mark.parametrize("name,expected", [(None, "admin"), ("", "admin"), ("Nguyễn Văn A", "Nguyễn Văn A"),
                                           ("ops@axis.gov.vn", "ops@axis.gov.vn")])
def test_admin_names(name: str | None, expected: str) -> None:
    assert dl.check_admin(name) == expected


@pytest.mark.parametrize("name", ["a|b", "x" * 65, "line\nbreak", "<script>"])
def test_bad_admin_names(name: str) -> None:
    with pytest.raises(ValueError):
        dl.check_admin(name)


def test_the_admin_event_leaves_out_claims_too_long_for_the_log() -> None:
    headers = {**REFUSAL, "x-axis-sender": "S" * 1000, "x-axis-document-id": "D" * 513}
    leaf = dl.admin_event(dl.read(b"<x/>", headers, "m"), "resend", "alice", 5, "r").as_dict()
    assert (leaf["sender"], leaf["document_id"]) == ("", "")


def test_a_big_document_is_resent_by_reference() -> None:
    headers = {**REFUSAL, "x-axis-blob": "sha256:" + "ab" * 32 + ":123456789"}
    out = dl.resend(dl.read(b"", headers, "m"), b"", headers, server="d1", now_ms=1, message_id="n")
    assert out.headers["x-axis-blob"] == headers["x-axis-blob"] and out.body == b""
