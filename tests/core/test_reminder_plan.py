"""axis.core.reminders (pure): who gets which reminder, once per document, channel and period."""

from __future__ import annotations

import email
import email.policy

import orjson
import pytest

from axis.core.reminders import (
    Contact,
    ReminderPolicy,
    Waiting,
    due_keys,
    email_message,
    period_of,
    plan,
    retry_delays,
    sign_webhook,
    verify_webhook,
    webhook_body,
)

A, B, C, S = "000.00.00.H01", "000.00.00.H02", "000.00.00.H03", "000.00.00.G22"
H, DAY = 3600.0, 86400.0
NOW = 1_800_000_000.0
POLICY = ReminderPolicy()  # 24 h, then every 24 h
CONTACTS = {A: Contact(("a@h01.example",), "https://h01.example/hook"), B: Contact(("b@h02.example",))}


def w(n: int, recipient: str, age: float, server: str = "s1") -> Waiting:
    return Waiting(f"id{n}", f"doc-{n}", S, recipient, NOW - age, server)


def test_period_of() -> None:
    assert period_of(NOW - 23 * H, NOW, POLICY) is None
    assert period_of(NOW - DAY, NOW, POLICY) == 0
    assert period_of(NOW - 47 * H, NOW, POLICY) == 0
    assert period_of(NOW - 48 * H, NOW, POLICY) == 1
    assert period_of(NOW - 10 * DAY, NOW, ReminderPolicy(after_seconds=H, period_seconds=12 * H)) == 19
    with pytest.raises(ValueError):
        ReminderPolicy(period_seconds=0)


def test_plan_per_agency_and_channel() -> None:
    waiting = [w(1, A, 30 * H), w(2, A, 25 * H), w(3, B, 50 * H), w(4, C, 90 * H), w(5, A, 2 * H)]
    digests = plan(waiting, NOW, POLICY, CONTACTS, set())
    assert [(d.agency, d.channel, [i.id for i in d.items]) for d in digests] == [
        (A, "email", ["id1", "id2"]), (A, "webhook", ["id1", "id2"]), (B, "email", ["id3"])]  # C: no contact
    assert digests[0].total == 2 and len(digests[0].keys) == 2


def test_no_reminder_twice_in_a_period_and_again_in_the_next() -> None:
    waiting = [w(1, A, 30 * H), w(2, B, 25 * H)]
    first = plan(waiting, NOW, POLICY, CONTACTS, set())
    sent = {k for d in first for k in d.keys}
    assert sorted(sent) == sorted(due_keys(waiting, NOW, POLICY, CONTACTS))
    assert plan(waiting, NOW + 10 * H, POLICY, CONTACTS, sent) == []  # same period: nothing
    # the e-mail went out, the webhook failed: only the webhook is due again
    partly = {k for d in first if d.channel == "email" for k in d.keys}
    assert [(d.agency, d.channel) for d in plan(waiting, NOW + H, POLICY, CONTACTS, partly)] == [(A, "webhook")]
    later = plan(waiting, NOW + 20 * H, POLICY, CONTACTS, sent)  # A's document entered period 1, B's not yet
    assert [(d.agency, d.channel, [i.id for i in d.items]) for d in later] == [(A, "email", ["id1"]),
                                                                               (A, "webhook", ["id1"])]
    # the same inbox id on another server is another delivery
    assert plan([w(1, A, 30 * H, server="s2")], NOW, POLICY, CONTACTS, sent) != []


def test_truncated_digest_settles_every_listed_and_counted_document() -> None:
    waiting = [w(n, B, DAY + n) for n in range(7)]
    (d,) = plan(waiting, NOW, ReminderPolicy(max_items=3), CONTACTS, set())
    assert [i.id for i in d.items] == ["id6", "id5", "id4"] and d.total == 7 and len(d.keys) == 7


def test_email_message() -> None:
    (d,) = plan([w(1, B, 50 * H), w(2, B, 26 * H)], NOW, POLICY, CONTACTS, set())
    msg = email_message(d, NOW, sender="axis@example.gov.vn", to=["b@h02.example"], name="UBND tỉnh Hà Giang")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == f"[axis] 2 văn bản chưa nhận / 2 documents waiting to be collected by {B}"
    assert parsed["To"] == "b@h02.example" and parsed["From"] == "axis@example.gov.vn"
    text = parsed.get_content()
    assert "Kính gửi UBND tỉnh Hà Giang" in text and "Có 2 văn bản" in text
    assert "doc-1  from 000.00.00.G22" in text and "(waiting 2 d 2 h)" in text
    assert text.index("doc-1") < text.index("doc-2")


def test_webhook_body_and_signature() -> None:
    (_, d) = plan([w(1, A, 30 * H)], NOW, POLICY, CONTACTS, set())
    body = webhook_body(d, NOW, POLICY)
    data = orjson.loads(body)
    assert data["event"] == "axis.uncollected" and data["agency"] == A and data["count"] == 1
    assert data["items"] == [{"id": "id1", "document_id": "doc-1", "sender": S, "received_at": data["items"][0][
        "received_at"], "waiting_seconds": 30 * 3600}]
    sig = sign_webhook(b"k", 1000, body)
    assert sig.startswith("sha256=") and len(sig) == 71
    assert verify_webhook(b"k", "1000", body, sig, now=1100)
    assert not verify_webhook(b"other", "1000", body, sig, now=1100)
    assert not verify_webhook(b"k", "1000", body + b" ", sig, now=1100)
    assert not verify_webhook(b"k", "1000", body, sig, now=5000)  # too old: a replay
    assert not verify_webhook(b"k", "x", body, sig, now=1100)


def test_retry_delays() -> None:
    assert retry_delays(5, 1.0, 10.0) == (1.0, 2.0, 4.0, 8.0, 10.0)
    assert retry_delays(0) == ()
