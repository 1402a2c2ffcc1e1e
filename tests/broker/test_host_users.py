"""Host users (axis.broker.users.host_user): one broker user per host process of several servers, whose name commits to
exactly that set — what the router believes of a host's messages, without a broker (pure logic)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from axis.broker import users as brokerauth
from axis.config import Config, generate_workdir, load_config
from axis.config.model import BROKER_AUTH_SHARED, BROKER_AUTH_USERS


def _config(tmp_path: Path, auth: str = BROKER_AUTH_USERS, hosts: int = 2) -> Config:
    agencies = [("000.00.00.G22", "A", "d1"), ("000.00.00.H53", "B", "d2"), ("000.00.00.G01", "C", "sh"),
                ("000.00.00.G03", "D", "d3")]
    servers = [("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared"), ("d3", "dedicated")]
    path, _ = generate_workdir(tmp_path, agencies, servers, base_port=18901, broker_auth=auth)
    config = load_config(path)
    return dataclasses.replace(config, hosts=hosts, broker=dataclasses.replace(config.broker, user_prefix="v."))


def test_the_name_commits_to_the_set_not_its_order() -> None:
    a = brokerauth.host_user(["s1", "s2", "s3"])
    assert a == brokerauth.host_user(["s3", "s1", "s2", "s1"])
    assert re.fullmatch(r"axis-host-[0-9a-f]{32}", a)
    others = {brokerauth.host_user(ids) for ids in (["s1", "s2"], ["s1", "s2", "s3", "s4"], ["s1", "s2", "s30"],
                                                    ["s1\ns2", "s3"])}
    assert a not in others and len(others) == 4  # a subset, a superset, a look-alike, a joined id


def test_host_servers_believes_only_the_exact_list_of_its_user() -> None:
    ids = ["sh", "d2"]
    user = "v." + brokerauth.host_user(ids)
    assert brokerauth.host_servers(user, ["d2", "sh"], prefix="v.") == frozenset(ids)
    assert brokerauth.host_servers(user, [b"sh", b"d2"], prefix="v.") == frozenset(ids)  # AMQP may give bytes
    for listed in (["sh"], ["sh", "d2", "d1"], ["d1", "d2"], [], None, "sh,d2", [1, 2], ["sh", 7]):
        assert brokerauth.host_servers(user, listed, prefix="v.") is None, listed
    for other in (None, "", "v." + brokerauth.server_user("sh"), brokerauth.host_user(ids),  # no prefix
                  "v." + brokerauth.host_user(["sh", "d2", "d1"])):
        assert brokerauth.host_servers(other, ids, prefix="v.") is None, other


def test_host_permissions_are_what_its_servers_may_do_together() -> None:
    p = brokerauth.host_permissions(["sh", "d2"])
    assert p.configure == "^$"
    for queue in ("axis.server.sh", "axis.server.d2"):
        assert re.fullmatch(p.read, queue)
    for other in ("axis.server.d1", "axis.server.sh2", "axis.submissions", "axis.dead", "axis.evidence"):
        assert not re.fullmatch(p.read, other), other
    assert p.write == brokerauth.server_permissions("sh").write  # axis.submit and axis.evidence, nothing more


def test_plan_and_users_of_include_the_host_users_of_several_servers(tmp_path: Path) -> None:
    config = _config(tmp_path)
    groups = brokerauth.default_host_groups(config)
    assert groups == [("sh", "d2"), ("d1", "d3")]  # shared first, then round-robin
    assert brokerauth.default_host_groups(config, servers_per_host=1) == [("sh",), ("d1",), ("d2",), ("d3",)]
    names = {u.name for u in brokerauth.users_of(config)}
    assert {"v." + brokerauth.host_user(g) for g in groups} <= names
    single = {u.name for u in brokerauth.users_of(config, [("sh",), ("d1", "d2", "d3")])}
    assert "v." + brokerauth.host_user(["d1", "d2", "d3"]) in single
    assert not any(n.startswith("v." + brokerauth.HOST_USER_PREFIX) and n.endswith(brokerauth.host_user(["sh"])[10:])
                   for n in single)  # a group of one server has no host user: it is that server's user
    assert sum(n.startswith("v." + brokerauth.HOST_USER_PREFIX) for n in single) == 1


def test_authenticated_origin_of_a_host_user(tmp_path: Path) -> None:
    config = _config(tmp_path)
    ids = ["sh", "d2"]
    host = "v." + brokerauth.host_user(ids)
    assert brokerauth.authenticated_origin(config, host, "sh", ids).server == "sh"
    assert brokerauth.authenticated_origin(config, host, "d1", ids).server is None  # not one of its servers
    # a list its name does not commit to
    assert brokerauth.authenticated_origin(config, host, "d1", [*ids, "d1"]).server is None
    assert brokerauth.authenticated_origin(config, host, "sh", None).server is None
    # a server's own user cannot borrow a host's list
    assert brokerauth.authenticated_origin(config, "v.axis-server-d1", "sh", ids).server == "d1"
    assert brokerauth.authenticated_origin(config, "v.axis-server-d1", None, ids).host is None
    assert brokerauth.authenticated_origin(config, host, None, ids).host == frozenset(ids)
    # a resend by the admin app carries the list it authenticated (axis.admin.deadletters)
    assert brokerauth.authenticated_origin(config, "v.axis-admin", None, ids).host == frozenset(ids)
    # development mode (shared users): the headers as written, as for x-axis-server
    shared = _config(tmp_path / "shared", BROKER_AUTH_SHARED)
    assert brokerauth.authenticated_origin(shared, None, None, ids).host == frozenset(ids)
    assert brokerauth.authenticated_origin(shared, None, None, None).host is None


@pytest.mark.rabbitmq
def test_axis_up_prunes_the_host_users_of_earlier_server_sets_and_removed_servers(tmp_path: Path, vhost_url: str,
                                                               rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    """Against the real broker: the host users of an earlier set of servers, and the user of a server since removed
    from the configuration, stay until ``axis up`` starts again (``prune``), which deletes them — they could still
    read those queues, or publish as the removed server; the current users stay, and a stale name that also has
    rights on another vhost (a broker shared by axes without prefixes) only loses this vhost's."""
    agencies = [("000.00.00.G22", "A", "d1"), ("000.00.00.H53", "B", "d2"), ("000.00.00.G01", "C", "sh")]
    path, _ = generate_workdir(tmp_path, agencies, [("d1", "dedicated"), ("d2", "dedicated"), ("sh", "shared")],
                               base_port=18911, amqp_url=vhost_url)
    config = load_config(path)
    prefix = config.broker.user_prefix
    assert prefix  # a test vhost: its users are apart from every other axis's
    base, auth, _ = rabbit_mgmt
    earlier, now = [("d1", "d2"), ("sh",)], [("d1", "sh"), ("d2",)]
    brokerauth.provision_config(config, earlier)
    brokerauth.provision_config(config, now)  # a live move's provisioning: nothing deleted

    def hosts() -> set[str]:
        with brokerauth.BrokerAdmin(base, auth) as admin:
            return set(admin.user_names(prefix + brokerauth.HOST_USER_PREFIX))

    both = {prefix + brokerauth.host_user(["d1", "d2"]), prefix + brokerauth.host_user(["d1", "sh"])}
    assert hosts() == both
    vhost = brokerauth.provisioning_auth(config.amqp_url)[0]
    removed, shared = prefix + "axis-server-gone", prefix + "axis-server-elsewhere"
    other_vhost = vhost + "-other"
    mgmt = httpx.Client(base_url=base, auth=auth, timeout=30)
    mgmt.put(f"/api/vhosts/{quote(other_vhost, safe='')}").raise_for_status()
    with brokerauth.BrokerAdmin(base, auth) as admin:  # a removed server's user, and one another vhost uses too
        for name in (removed, shared):
            admin.provision(vhost, [brokerauth.BrokerUser(name, "pw", "", brokerauth.server_permissions("gone"))])
        admin.set_permissions(other_vhost, shared, brokerauth.server_permissions("gone"))
    try:
        brokerauth.provision_config(config, now, prune=True)
        assert hosts() == {prefix + brokerauth.host_user(["d1", "sh"])}
        with brokerauth.BrokerAdmin(base, auth) as admin:
            names = set(admin.user_names(prefix))
            assert {prefix + "axis-server-d2", prefix + "axis-router"} <= names  # the current users are left alone
            assert removed not in names
            assert shared in names
        rights = mgmt.get(f"/api/users/{quote(shared, safe='')}/permissions").json()
        assert [p["vhost"] for p in rights] == [other_vhost]
    finally:
        mgmt.delete(f"/api/users/{quote(shared, safe='')}")
        mgmt.delete(f"/api/vhosts/{quote(other_vhost, safe='')}")
        mgmt.close()
