"""Whom a resent dead letter names (axis.admin.deadletters.resend_origin): a poison submission's server and a host
process's list of servers only as the publisher's broker user proves them (pure logic, no broker)."""

from __future__ import annotations

from typing import Any

from axis.admin.deadletters import resend_origin
from axis.broker.users import host_user
from axis.core import deadletters as dl
from axis.core.wire import EX_SUBMIT, H_HOST_SERVERS, H_SERVER

DEATH = [{"queue": "axis.submissions", "reason": "delivery_limit", "count": 5}]
HOST = ["d2", "sh"]


def _poison(user_id: str | None, **headers: Any) -> tuple[dl.DeadLetter, dict[str, Any]]:
    h = {"x-axis-kind": "status-bundle", "x-death": DEATH, **headers}
    return dl.read(b"AXB1", h, "m-1", user_id), h


def test_a_hosts_poison_bundle_is_resent_with_the_list_its_user_proves() -> None:
    letter, headers = _poison("v." + host_user(HOST), **{H_HOST_SERVERS: HOST})
    assert resend_origin(letter, headers, per_component=True, prefix="v.") == (None, HOST)
    out = dl.resend(letter, b"AXB1", headers, server=None, host=HOST, now_ms=1, message_id="n")
    assert out.exchange == EX_SUBMIT and out.headers[H_HOST_SERVERS] == HOST and H_SERVER not in out.headers
    # a single message of the host names one of its servers: believed; one outside the list: not
    letter, headers = _poison("v." + host_user(HOST), **{H_HOST_SERVERS: HOST, H_SERVER: "sh"})
    assert resend_origin(letter, headers, per_component=True, prefix="v.") == ("sh", HOST)
    letter, headers = _poison("v." + host_user(HOST), **{H_HOST_SERVERS: HOST, H_SERVER: "d1"})
    assert resend_origin(letter, headers, per_component=True, prefix="v.") == (None, HOST)


def test_a_list_its_publisher_does_not_prove_is_dropped() -> None:
    # a server's own user wrote a host's list: the resend names that server, and no list
    letter, headers = _poison("v.axis-server-d1", **{H_HOST_SERVERS: HOST, H_SERVER: "sh"})
    assert resend_origin(letter, headers, per_component=True, prefix="v.") == ("d1", None)
    # the host's user with a longer list than its name commits to
    letter, headers = _poison("v." + host_user(HOST), **{H_HOST_SERVERS: [*HOST, "d1"], H_SERVER: "d1"})
    assert resend_origin(letter, headers, per_component=True, prefix="v.") == (None, None)
    # development mode (shared users): the headers as written
    letter, headers = _poison(None, **{H_HOST_SERVERS: HOST, H_SERVER: "sh"})
    assert resend_origin(letter, headers, per_component=False) == ("sh", HOST)
