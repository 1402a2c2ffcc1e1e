"""RabbitMQ users with least privilege, one per axis component, provisioned through the management HTTP API.

Who may do what on the axis vhost (RabbitMQ permission regexes: configure / write / read):

============================  ==========  ===========================================  ==========================
user                          configure   write (publish to exchange)                  read (consume from queue)
============================  ==========  ===========================================  ==========================
``axis-router``               nothing     ``axis.deliver``, ``axis.dlx``, ``axis.submit``  ``axis.submissions``
``axis-server-<id>``          nothing     ``axis.submit``                              ``axis.server.<id>``
``axis-admin`` (monitoring)   nothing     nothing                                      nothing (management API)
============================  ==========  ===========================================  ==========================

Nobody but the provisioning account (the broker administrator) declares or deletes queues and exchanges: the
topology is declared once with that account (``axis.transport.declare_topology``), components only use it.
An endpoint server can therefore publish submissions and consume its own queue — and nothing else: not another
server's queue, not the delivery exchange (it cannot deliver to anyone directly, every document passes the
router), not the dead letters.

Origin of submissions: every endpoint server publishes with AMQP ``user_id`` = its broker user; RabbitMQ refuses
(``PRECONDITION_FAILED``) a ``user_id`` other than the connection's user, so the router can trust
``message.user_id`` — not a header the publisher wrote — to know which server a status came from
(:func:`server_of_user`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

import httpx

NOTHING = "^$"
ROUTER_USER = "axis-router"
ADMIN_USER = "axis-admin"
SERVER_USER_PREFIX = "axis-server-"


@dataclass(frozen=True, slots=True)
class Permissions:
    """RabbitMQ permission regexes on one vhost (nothing allowed by default)."""

    configure: str = NOTHING
    write: str = NOTHING
    read: str = NOTHING

    def as_json(self) -> dict[str, str]:
        return {"configure": self.configure, "write": self.write, "read": self.read}


@dataclass(frozen=True, slots=True)
class BrokerUser:
    name: str
    password: str
    tags: str
    permissions: Permissions

    def amqp_url(self, host: str, port: int, vhost: str) -> str:
        user, password = quote(self.name, safe=""), quote(self.password, safe="")
        return f"amqp://{user}:{password}@{host}:{port}/{quote(vhost, safe='')}"


def _exact(*names: str) -> str:
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def server_user(server_id: str) -> str:
    return f"{SERVER_USER_PREFIX}{server_id}"


def server_of_user(user_id: str | None, *, prefix: str = "") -> str | None:
    """The endpoint server id a (broker-validated) AMQP ``user_id`` belongs to, or None."""
    head = prefix + SERVER_USER_PREFIX
    if user_id and user_id.startswith(head):
        return user_id[len(head):]
    return None


def router_permissions() -> Permissions:
    return Permissions(write=_exact("axis.deliver", "axis.dlx", "axis.submit"), read=_exact("axis.submissions"))


def server_permissions(server_id: str) -> Permissions:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", server_id):
        raise ValueError(f"server id {server_id!r} must be letters, digits, '_', '.', '-'")
    return Permissions(write=_exact("axis.submit"), read=_exact(f"axis.server.{server_id}"))


def admin_permissions() -> Permissions:
    return Permissions()


def plan(server_ids: Iterable[str], *, password: str | None = None) -> list[BrokerUser]:
    """The users of an axis with these endpoint servers (fresh random passwords unless ``password`` is given)."""

    def pw() -> str:
        return password or secrets.token_urlsafe(24)

    users = [BrokerUser(ROUTER_USER, pw(), "", router_permissions()),
             BrokerUser(ADMIN_USER, pw(), "monitoring", admin_permissions())]
    users += [BrokerUser(server_user(s), pw(), "", server_permissions(s)) for s in server_ids]
    return users


class BrokerAdmin:
    """The few management API calls provisioning needs (synchronous; run once at set-up)."""

    def __init__(self, mgmt_url: str, auth: tuple[str, str], *, timeout: float = 30) -> None:
        self._http = httpx.Client(base_url=mgmt_url.rstrip("/"), auth=auth, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrokerAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put_user(self, user: BrokerUser) -> None:
        self._http.put(f"/api/users/{quote(user.name, safe='')}",
                       json={"password": user.password, "tags": user.tags}).raise_for_status()

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        self._http.put(f"/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                       json=permissions.as_json()).raise_for_status()

    def delete_user(self, name: str) -> None:
        r = self._http.delete(f"/api/users/{quote(name, safe='')}")
        if r.status_code not in (204, 404):
            r.raise_for_status()

    def provision(self, vhost: str, users: Iterable[BrokerUser]) -> list[BrokerUser]:
        """Create (or update) each user and set its permissions on ``vhost``; idempotent."""
        done = []
        for u in users:
            self.put_user(u)
            self.set_permissions(vhost, u.name, u.permissions)
            done.append(u)
        return done


def provision(mgmt_url: str, auth: tuple[str, str], vhost: str, server_ids: Iterable[str], *,
              prefix: str = "") -> list[BrokerUser]:
    """Create the router, admin and per-server users on ``vhost``; ``prefix`` keeps several axes apart."""
    users = [BrokerUser(prefix + u.name, u.password, u.tags, u.permissions) for u in plan(server_ids)]
    with BrokerAdmin(mgmt_url, auth) as admin:
        return admin.provision(vhost, users)
