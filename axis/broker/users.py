"""RabbitMQ users with least privilege, one per axis component, provisioned through the management HTTP API.

Who may do what on the axis vhost (RabbitMQ permission regexes: configure / write / read):

============================  ==========  ===================================================  =========================
user                          configure   write (publish to exchange)                          read (consume from queue)
============================  ==========  ===================================================  =========================
``axis-router``               nothing     ``axis.deliver``, ``axis.dlx``, ``axis.submit``,       ``axis.submissions``
                                          ``axis.evidence``
``axis-server-<id>``          nothing     ``axis.submit``, ``axis.evidence``                    ``axis.server.<id>``
``axis-host-<digest>``        nothing     ``axis.submit``, ``axis.evidence``                    its servers' queues
``axis-admin`` (monitoring)   nothing     ``axis.evidence`` (operators' actions are logged),    ``axis.dead``
                                          ``axis.dlx``, ``axis.submit``, ``axis.deliver``
                                          (dead letters kept, resent)
``axis-evidence`` (log)       nothing     nothing                                              ``axis.evidence``
============================  ==========  ===================================================  =========================

Nobody but the provisioning account (the broker administrator) declares or deletes queues and exchanges: the
topology is declared once with that account (``axis.broker.transport.declare_topology``), components only use it.
An endpoint server can therefore publish submissions and consume its own queue — and nothing else: not another
server's queue, not the delivery exchange (it cannot deliver to anyone directly, every document passes the
router), not the dead letters. Every component that sees a document's life publishes its events to
``axis.evidence`` (write only: nobody but the log writer reads them, and the log writer publishes nothing).

Origin of submissions: every endpoint server publishes with AMQP ``user_id`` = its broker user; RabbitMQ refuses
(``PRECONDITION_FAILED``) a ``user_id`` other than the connection's user, so the router can trust
``message.user_id`` — not a header the publisher wrote — to know which server a status came from
(:func:`server_of_user`).

Host users: one host process serving several endpoint servers holds every one of their credentials anyway. ``axis
up`` also gives it one user for the whole set, ``axis-host-<SHA-256 of the sorted server ids>`` (:func:`host_user`),
allowed exactly what its servers are allowed together. With it the host opens one connection instead of one per
server, and the submissions and statuses of all its servers travel together in one bundle
(:mod:`endpoints.link`): the doors' one message per submission was most of the replay's AMQP traffic. Every message
it publishes lists its servers (``x-axis-host-servers``); the router believes the list only when the
broker-validated ``user_id`` is the host user of exactly that list (:func:`host_servers`) — the name commits to the
set, so nothing needs to be shared with the router but the configuration — and then believes each item's (or the
message's) ``x-axis-server`` only if it is in the list. A host user speaks for no server outside its set: not one
added later, not another host's.

A configured axis (``config.yaml``, section ``broker``; :class:`axis.config.BrokerConfig`):

- ``auth: users`` — :func:`provision_config` (run by ``axis up`` with the account of ``amqp_url``, the
  provisioning account) creates the users above, named ``<user_prefix><user>``, with random passwords kept in
  ``users_file`` (JSON, mode 0600, reused on the next start, git-ignored); every component then connects with
  :func:`component_url` — its own user, never the provisioning account. A component whose password is not in
  the file fails to start with :class:`BrokerAuthError` naming the file. No silent fallback: when provisioning is
  impossible (no management API), ``axis up`` stops with a message that names the switch below.
- ``auth: shared`` — development only: every component uses ``amqp_url`` as it is, and the router trusts the
  ``x-axis-server`` header the publisher wrote (any component could forge it).

User names are global to a RabbitMQ broker, not per vhost; the prefix (default ``<vhost>.`` on any vhost other
than ``/``) keeps several axes on one broker apart.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import orjson

from axis.core.wire import EX_DELIVER, EX_DLX, EX_EVIDENCE, EX_SUBMIT, Q_DEAD, Q_EVIDENCE, Q_SUBMISSIONS, server_queue

if TYPE_CHECKING:
    from axis.config import Config

NOTHING = "^$"
ROUTER_USER = "axis-router"
ADMIN_USER = "axis-admin"
EVIDENCE_USER = "axis-evidence"
SERVER_USER_PREFIX = "axis-server-"
HOST_USER_PREFIX = "axis-host-"
#: hex digits of the server set's SHA-256 in a host user's name (128 bits: finding another set with the same name
#: is a second pre-image, not a birthday search)
HOST_DIGEST_HEX = 32


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


def host_user(server_ids: Iterable[str]) -> str:
    """The broker user of a host process serving exactly ``server_ids`` (order and repetition do not matter)."""
    return _host_user(tuple(sorted(set(server_ids))))


@functools.lru_cache(maxsize=256)  # the router asks for every message of a host: the same few sets
def _host_user(ids: tuple[str, ...]) -> str:
    digest = hashlib.sha256(orjson.dumps(ids)).hexdigest()[:HOST_DIGEST_HEX]  # JSON: no two lists encode alike
    return f"{HOST_USER_PREFIX}{digest}"


def host_servers(user_id: str | None, listed: object, *, prefix: str = "") -> frozenset[str] | None:
    """The endpoint servers a message may speak for when it lists ``listed`` (its ``x-axis-host-servers``) and was
    published by broker user ``user_id`` (broker-validated): the list, when ``user_id`` is the host user of exactly
    that list; else None."""
    if not user_id or not user_id.startswith(prefix + HOST_USER_PREFIX):
        return None  # before reading the list: only a host's user gets its list read and hashed
    ids = _listed(listed)
    return frozenset(ids) if ids and user_id == prefix + host_user(ids) else None


def _listed(value: object) -> list[str]:
    if not isinstance(value, (list, tuple)):
        return []
    ids = [v.decode() if isinstance(v, bytes) else v for v in value]
    return ids if all(isinstance(v, str) for v in ids) else []


def router_permissions() -> Permissions:
    return Permissions(write=_exact(EX_DELIVER, EX_DLX, EX_SUBMIT, EX_EVIDENCE), read=_exact(Q_SUBMISSIONS))


def server_permissions(server_id: str) -> Permissions:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", server_id):
        raise ValueError(f"server id {server_id!r} must be letters, digits, '_', '.', '-'")
    return Permissions(write=_exact(EX_SUBMIT, EX_EVIDENCE), read=_exact(server_queue(server_id)))


def host_permissions(server_ids: Iterable[str]) -> Permissions:
    """What a host process's user may do: what its servers may do together, nothing more."""
    ids = sorted(set(server_ids))
    for sid in ids:
        server_permissions(sid)  # the same check of each id
    return Permissions(write=_exact(EX_SUBMIT, EX_EVIDENCE), read=_exact(*(server_queue(s) for s in ids)))


def admin_permissions() -> Permissions:
    """The admin app: logs operators' actions; reads the dead letters and keeps them (publishing them back into
    ``axis.dead`` through ``axis.dlx``) or resends them where they came from (axis.admin.deadletters)."""
    return Permissions(write=_exact(EX_EVIDENCE, EX_DLX, EX_SUBMIT, EX_DELIVER), read=_exact(Q_DEAD))


def evidence_permissions() -> Permissions:
    """The log writer: reads the events, publishes nothing (a bad message is rejected to the queue's dead-letter
    exchange by the broker, which needs no write permission of the consumer)."""
    return Permissions(read=_exact(Q_EVIDENCE))


def plan(server_ids: Iterable[str], *, password: str | None = None,
         host_groups: Iterable[Sequence[str]] = ()) -> list[BrokerUser]:
    """The users of an axis with these endpoint servers (fresh random passwords unless ``password`` is given), and
    one host user for each of ``host_groups`` of more than one server (:func:`host_user`)."""

    def pw() -> str:
        return password or secrets.token_urlsafe(24)

    users = [BrokerUser(ROUTER_USER, pw(), "", router_permissions()),
             BrokerUser(ADMIN_USER, pw(), "monitoring", admin_permissions()),
             BrokerUser(EVIDENCE_USER, pw(), "", evidence_permissions())]
    users += [BrokerUser(server_user(s), pw(), "", server_permissions(s)) for s in server_ids]
    groups = {host_user(g): tuple(g) for g in host_groups if len(set(g)) > 1}
    users += [BrokerUser(name, pw(), "", host_permissions(ids)) for name, ids in groups.items()]
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
        """Create or update ``user``; one without a password (AMQPS: authenticated by its certificate) gets an empty
        password hash, so that no password logs it in."""
        body = {"password": user.password} if user.password else {"password_hash": ""}
        self._http.put(f"/api/users/{quote(user.name, safe='')}", json=body | {"tags": user.tags}).raise_for_status()

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        self._http.put(f"/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                       json=permissions.as_json()).raise_for_status()

    def delete_user(self, name: str) -> None:
        r = self._http.delete(f"/api/users/{quote(name, safe='')}")
        if r.status_code not in (204, 404):
            r.raise_for_status()

    def retire(self, vhost: str, name: str) -> None:
        """Take user ``name``'s rights on ``vhost`` away: the user is deleted when it has no rights elsewhere, and
        only loses this vhost's when it also serves another (a broker shared by several axes whose users are not
        told apart by a prefix: another axis's user of the same name keeps working)."""
        user = quote(name, safe="")
        r = self._http.get(f"/api/users/{user}/permissions")
        if r.status_code == 404:
            return
        r.raise_for_status()
        if any(p.get("vhost") != vhost for p in r.json()):
            gone = self._http.delete(f"/api/permissions/{quote(vhost, safe='')}/{user}")
            if gone.status_code not in (204, 404):
                gone.raise_for_status()
        else:
            self.delete_user(name)

    def recreate_vhost(self, vhost: str, user: str) -> None:
        """Delete ``vhost`` with everything in it (queues, messages, dead letters) and create it empty, with every
        permission for ``user`` (the provisioning account): a throw-away axis's fresh start."""
        r = self._http.delete(f"/api/vhosts/{quote(vhost, safe='')}")
        if r.status_code not in (204, 404):
            r.raise_for_status()
        self._http.put(f"/api/vhosts/{quote(vhost, safe='')}").raise_for_status()
        self.set_permissions(vhost, user, Permissions(configure=".*", write=".*", read=".*"))

    def user_names(self, prefix: str) -> list[str]:
        """The names of the broker's users that start with ``prefix``."""
        r = self._http.get("/api/users", params={"columns": "name"})
        r.raise_for_status()
        return [str(u["name"]) for u in r.json() if str(u.get("name", "")).startswith(prefix)]

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
    """Create the router, admin, log writer and per-server users on ``vhost``; ``prefix`` keeps several axes apart."""
    users = [BrokerUser(prefix + u.name, u.password, u.tags, u.permissions) for u in plan(server_ids)]
    with BrokerAdmin(mgmt_url, auth) as admin:
        return admin.provision(vhost, users)


def delete_users_with_prefix(mgmt_url: str, auth: tuple[str, str], prefix: str, *, attempts: int = 4) -> list[str]:
    """Delete every broker user whose name starts with ``prefix`` (test and demo clean-up); returns the names. A
    busy management API answers 500 now and then (its internal calls time out under load): each call is tried up to
    ``attempts`` times, with a growing pause, before the error is raised."""
    if not prefix:
        raise ValueError("refusing to delete users without a prefix")

    def call(http: httpx.Client, method: str, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        for attempt in range(attempts):
            try:
                r = http.request(method, path, params=params)
                if r.status_code < 500 or attempt == attempts - 1:
                    return r
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
            time.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")

    with httpx.Client(base_url=mgmt_url.rstrip("/"), auth=auth, timeout=30) as http:
        r = call(http, "GET", "/api/users", params={"columns": "name"})
        r.raise_for_status()
        names = [u["name"] for u in r.json() if str(u.get("name", "")).startswith(prefix)]
        for name in names:
            d = call(http, "DELETE", f"/api/users/{quote(name, safe='')}")
            if d.status_code not in (204, 404):
                d.raise_for_status()
    return names


# -- the users of a configured axis ---------------------------------------------------------------------------


class BrokerAuthError(RuntimeError):
    """Per-component broker users are configured but cannot be provisioned or found."""


def provisioning_auth(amqp_url: str) -> tuple[str, tuple[str, str]]:
    """(vhost, (user, password)) of an AMQP URL: the provisioning account and its vhost."""
    parts = urlsplit(amqp_url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return vhost, (unquote(parts.username or "guest"), unquote(parts.password or "guest"))


def with_credentials(amqp_url: str, user: str, password: str) -> str:
    """``amqp_url`` with its user and password replaced (host, port, vhost and query kept)."""
    parts = urlsplit(amqp_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def load_passwords(path: Path) -> dict[str, str]:
    """``{user name: password}`` from a users file, or empty when there is none."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except orjson.JSONDecodeError as exc:
        raise BrokerAuthError(f"{path}: not a broker users file ({exc})") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise BrokerAuthError(f"{path}: no 'users' mapping")
    return {str(k): str(v) for k, v in users.items()}


def save_passwords(path: Path, passwords: Mapping[str, str]) -> Path:
    """Write the users file atomically with mode 0600 (it holds passwords)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps({"users": dict(passwords)}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def users_of(config: Config, host_groups: Iterable[Sequence[str]] | None = None) -> list[BrokerUser]:
    """The users of this axis, prefixed, with the passwords of the users file (new random ones for new users);
    ``host_groups``: the server sets of the host processes to be started (default: :func:`default_host_groups`, what
    ``axis up`` starts). With ``broker.tls`` only ``axis-admin`` has a password (for the management HTTP API, which
    knows no certificates); every other user has none: its certificate is its only credential."""
    known = load_passwords(config.broker.users_file)
    prefix = config.broker.user_prefix
    users = []
    groups = default_host_groups(config) if host_groups is None else host_groups
    for u in plan((s.id for s in config.servers), host_groups=groups):
        name = prefix + u.name
        password = known.get(name) or u.password
        if config.broker.tls and u.name != ADMIN_USER:
            password = ""
        users.append(BrokerUser(name, password, u.tags, u.permissions))
    return users


def default_host_groups(config: Config, servers_per_host: int | None = None) -> list[tuple[str, ...]]:
    """The server sets of the host processes ``axis up`` starts: ``config.hosts`` processes (or as many as hold
    ``servers_per_host`` each), shared servers first, then dealt round-robin, so that the busiest servers (a
    shared one carries the traffic of many agencies) land in different host processes."""
    ids = [s.id for s in sorted(config.servers, key=lambda s: s.kind != "shared")]
    n = -(-len(ids) // servers_per_host) if servers_per_host else min(config.hosts, len(ids))
    return [tuple(ids[h::n]) for h in range(n)]


def provision_config(config: Config, host_groups: Iterable[Sequence[str]] | None = None, *,
                     prune: bool = False) -> list[BrokerUser]:
    """Create or update every component's user on the config's vhost (management API, provisioning account =
    the ``amqp_url`` user), the host users of ``host_groups`` included (:func:`users_of`), and write their
    passwords to ``broker.users_file``. Idempotent: passwords already in the file are kept. ``prune`` (``axis
    up`` as it starts, when no host of this axis runs): delete this axis's host and server users that are not
    among these — a host user of an earlier set of servers may read their queues, the user of a server removed
    from the configuration may still publish as it and read its queue, and nothing needs either any more (a
    removed server's queue and what it holds stay: only the credentials go; a user that also has rights on
    another vhost only loses this one's, :meth:`BrokerAdmin.retire`). Raises
    :class:`BrokerAuthError` with what to do when the broker refuses or is absent."""
    vhost, auth = provisioning_auth(config.amqp_url)
    users = users_of(config, host_groups)
    mgmt = config.broker.management_url
    try:
        with BrokerAdmin(mgmt, auth) as admin:
            admin.provision(vhost, users)
            if prune:
                keep = {u.name for u in users}
                for kind in (HOST_USER_PREFIX, SERVER_USER_PREFIX):
                    for name in admin.user_names(config.broker.user_prefix + kind):
                        if name not in keep:
                            admin.retire(vhost, name)
    except httpx.HTTPStatusError as exc:
        raise BrokerAuthError(
            f"the RabbitMQ management API at {mgmt} refused to create the broker users as {auth[0]!r} "
            f"(HTTP {exc.response.status_code}): the amqp_url account needs the 'administrator' tag; or set "
            "broker.auth: shared in the config (development only)") from None
    except httpx.HTTPError as exc:
        raise BrokerAuthError(
            f"cannot reach the RabbitMQ management API at {mgmt} to create the broker users ({exc}); enable it "
            "(rabbitmq-plugins enable rabbitmq_management), set broker.management_url, or set broker.auth: shared "
            "in the config (development only: every component then uses amqp_url)") from None
    config.broker.users_file.parent.mkdir(parents=True, exist_ok=True)
    save_passwords(config.broker.users_file, {u.name: u.password for u in users if u.password})
    return users


# -- AMQPS: components authenticated by their certificates (contract section 6) --------------------------------

#: ``axis up`` re-issues a component's broker certificate when it has fewer days than this left.
RENEW_WITHIN_DAYS = 30


def issue_component_certificates(config: Config, names: Iterable[str]) -> None:
    """Issue (or renew, under :data:`RENEW_WITHIN_DAYS` left) the AMQPS client certificates of ``names`` (full
    broker user names) and of the provisioning account, from the axis CA beside ``broker.ca``."""
    from axis.core.pki import PkiError, issue_broker_certificates

    assert config.broker.ca is not None and config.broker.certs_dir is not None  # the loader's rule for tls
    _, (provisioner, _) = provisioning_auth(config.amqp_url)
    try:
        issue_broker_certificates(config.broker.ca.parent, [provisioner, *names], certs_dir=config.broker.certs_dir,
                                  renew_within_days=RENEW_WITHIN_DAYS)
    except (PkiError, OSError) as exc:
        raise BrokerAuthError(f"cannot issue the components' broker certificates from the CA in "
                              f"{config.broker.ca.parent}: {exc}") from None


def tls_url(config: Config, name: str, password: str = "") -> str:
    """The ``amqps://`` URL with which broker user ``name`` (full name) connects: its certificate and key from
    ``broker.certs_dir/<name>/``, the broker verified against ``broker.ca``, SASL EXTERNAL (aiormq's URL
    parameters). ``password`` is carried only for the management HTTP API (axis-admin); EXTERNAL ignores it."""
    from urllib.parse import urlencode

    from axis.core.pki import broker_client_dir

    assert config.broker.ca is not None and config.broker.certs_dir is not None
    directory = broker_client_dir(config.broker.certs_dir, name)
    for path in (directory / "cert.pem", directory / "key.pem"):
        if not path.is_file():
            raise BrokerAuthError(f"no broker certificate for {name!r}: {path} is missing; start the axis with "
                                  "`axis up`: it issues one per component from the axis CA")
    parts = urlsplit(with_credentials(config.amqp_url, name, password))
    netloc = parts.netloc if password else parts.netloc.replace(":@", "@", 1)
    query = urlencode({"auth": "external", "cafile": str(config.broker.ca), "certfile": str(directory / "cert.pem"),
                       "keyfile": str(directory / "key.pem")})
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def provisioning_url(config: Config) -> str:
    """The URL of the provisioning account (``amqp_url``): as it is, or over AMQPS with its own certificate."""
    if not config.broker.tls:
        return config.amqp_url
    _, (provisioner, _) = provisioning_auth(config.amqp_url)
    return tls_url(config, provisioner)


def component_url(config: Config, user: str) -> str:
    """The AMQP URL a component connects with: its own user (``user`` without the prefix, e.g.
    ``axis-router``, ``axis-evidence`` or ``server_user(id)``) when ``broker.auth`` is ``users``, else ``amqp_url``."""
    if not config.broker.per_component:
        return config.amqp_url
    name = config.broker.user_prefix + user
    if config.broker.tls:
        secret = load_passwords(config.broker.users_file).get(name, "") if user == ADMIN_USER else ""
        return tls_url(config, name, secret)
    password = load_passwords(config.broker.users_file).get(name)
    if not password:
        raise BrokerAuthError(
            f"no broker password for {name!r} in {config.broker.users_file}: start the axis with `axis up` (it "
            "provisions one user per component) or run axis.broker.users.provision_config, or set broker.auth: shared "
            "in the config (development only)")
    return with_credentials(config.amqp_url, name, password)


def publisher_user_id(config: Config, user: str) -> str | None:
    """The AMQP ``user_id`` a component puts on what it publishes (None when users are shared)."""
    return config.broker.user_prefix + user if config.broker.per_component else None


@dataclass(frozen=True, slots=True)
class Origin:
    """Who published a message, as far as the broker proves it: the endpoint server it speaks for (None: not an
    endpoint server's, or a claim nothing proves) and, for a host process's message, the servers its items may
    name (None: not a host's)."""

    server: str | None
    host: frozenset[str] | None = None


def message_origin(user_id: str | None, header: str | None, listed: object, *, per_component: bool,
                   prefix: str = "") -> Origin:
    """The :class:`Origin` of a message published by broker user ``user_id`` (broker-validated) with ``header`` as
    its ``x-axis-server`` and ``listed`` as its ``x-axis-host-servers``. With per-component users the user decides:
    a server's own user is that server whatever the headers say; a host's user (:func:`host_user`) is believed for
    the list its name commits to (:func:`host_servers`) and for a ``header`` in that list; ``axis-admin`` (a resend
    of a dead letter, whose origin the admin app authenticated) and, in development mode (shared users), anyone
    are believed as written."""
    if not per_component or (user_id is not None and user_id == prefix + ADMIN_USER):
        return Origin(header, frozenset(_listed(listed)) or None)
    host = host_servers(user_id, listed, prefix=prefix)
    if host is not None:
        return Origin(header if header in host else None, host)
    return Origin(server_of_user(user_id, prefix=prefix))


def authenticated_origin(config: Config, user_id: str | None, header: str | None, listed: object) -> Origin:
    """:func:`message_origin` under the configuration's ``broker.auth`` and user prefix: what the router believes
    of a submission's publisher."""
    return message_origin(user_id, header, listed, per_component=config.broker.per_component,
                          prefix=config.broker.user_prefix)
