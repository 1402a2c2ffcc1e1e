"""The axis configuration: one YAML file, read once into frozen dataclasses.

```yaml
amqp_url: amqp://guest:guest@127.0.0.1/      # else env AXIS_AMQP_URL, else this default
stats_url: sqlite+aiosqlite:///stats.db       # else env AXIS_STATS_URL, else <work dir>/stats.db
pki: {ca: pki/ca.pem, crl: pki/crl.pem}
admin: {host: 127.0.0.1, port: 8700, token_sha256: <hex>}
limits: {max_envelope_bytes: 26214400,        # refused with TOO_LARGE above this
         auth_failures: 20, auth_window_seconds: 60}  # failed token checks per client address → 429
routers: 2                                    # router processes started by `axis up`
hosts: 2                                      # endpoint-host processes `axis up` spreads the servers over
broker:                                       # who connects to RabbitMQ as whom (docs/core.md, "Broker users")
  auth: users                                 # users: one least-privilege user per component (provisioned by
                                              #   `axis up` with the amqp_url account); shared: everyone uses
                                              #   amqp_url (development only). Default: shared when absent.
  users_file: broker-users.json               # passwords written by `axis up` (mode 0600, never in git)
  management_url: http://127.0.0.1:15672      # default: the amqp_url host, port 15672
  user_prefix: ""                             # default: "" on vhost "/", else "<vhost>." (users are per broker)
servers:
  - {id: s1, kind: dedicated, host: 127.0.0.1, port: 8701, inbox_url: sqlite+aiosqlite:///inbox-s1.db,
     keys: [000.00.00.G22]}                    # agencies whose signing key this server holds
agencies:
  - {code: 000.00.00.G22, name: Government Office, server: s1, token_sha256: <hex>,
     key: pki/agencies/000.00.00.G22/key.pem, cert: pki/agencies/000.00.00.G22/cert.pem}
agencies_file: agencies.csv                   # optional, for very large directories (same columns)
```

Relative paths (and relative SQLite paths in URLs) are resolved against the config file's directory. Tokens are
stored only as SHA-256 hex digests; cleartext tokens exist only in ``connections.json``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from axis.directory import Agency, Directory, DirectoryError, Server
from axis.xmlsafe import DEFAULT_MAX_BYTES

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1/"
DEFAULT_ADMIN_PORT = 8700
AGENCY_COLUMNS = ("code", "name", "server", "token_sha256", "key", "cert")

try:  # libyaml when available: ~10x faster for large directories
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or inconsistent."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_ADMIN_PORT
    token_sha256: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PkiConfig:
    ca: Path | None = None
    crl: Path | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_envelope_bytes: int = DEFAULT_MAX_BYTES
    #: After ``auth_failures`` failed token checks from one client address within ``auth_window_seconds``, the
    #: endpoint servers answer 429 (reason UNAUTHORIZED, Retry-After) without checking tokens from that address
    #: until the window ends. ``auth_clients`` bounds how many addresses are tracked (oldest evicted).
    auth_failures: int = 20
    auth_window_seconds: float = 60.0
    auth_clients: int = 100_000
    #: Recipients (``To``) one document may name: refused with TOO_LARGE above it, at the endpoint server's door
    #: and again at the router. At most 1,000, so that a delivery's recipient list always fits an AMQP header
    #: (``axis.transport.HEADER_LIST_ITEMS``).
    max_recipients: int = 500
    #: Slow and idle HTTP clients of the endpoint servers (endpoints/host.py, where the choices are explained):
    #: the request line and headers must arrive within ``header_timeout_seconds`` of the connection opening (or
    #: of the request's first byte on a kept-alive connection); a body gets ``body_timeout_seconds`` plus one
    #: second per ``body_min_rate`` bytes received (Apache mod_reqtimeout's rule), else 408 and the connection
    #: is closed; an idle kept-alive connection is closed after ``keep_alive_seconds``; one host process serves
    #: at most ``max_connections`` connections over all its logical servers (the next ones get 503 and close).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 20.0
    body_min_rate: int = 4096
    keep_alive_seconds: float = 5.0
    max_connections: int = 1000


BROKER_AUTH_USERS = "users"
BROKER_AUTH_SHARED = "shared"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How components authenticate to RabbitMQ (see :mod:`axis.brokerauth`)."""

    auth: str = BROKER_AUTH_SHARED
    users_file: Path = Path("broker-users.json")
    management_url: str = "http://127.0.0.1:15672"
    user_prefix: str = ""

    @property
    def per_component(self) -> bool:
        return self.auth == BROKER_AUTH_USERS


@dataclass(frozen=True, slots=True)
class ServerConfig:
    id: str
    kind: str
    host: str = "127.0.0.1"
    port: int = 0
    inbox_url: str = ""
    keys: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AgencyConfig:
    code: str
    name: str
    server: str
    token_sha256: str = ""
    key: Path | None = None
    cert: Path | None = None
    moved_from: tuple[str, ...] = ()  # servers that hosted it before (axis.config.move_agency)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    work_dir: Path
    amqp_url: str
    stats_url: str
    pki: PkiConfig
    admin: AdminConfig
    limits: Limits
    servers: tuple[ServerConfig, ...]
    agencies: tuple[AgencyConfig, ...]
    routers: int = 1
    hosts: int = 2  # endpoint-host processes: a host process checks a document once for all its servers
    directory: Directory = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    _by_code: dict[str, AgencyConfig] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_code.update((a.code, a) for a in self.agencies)  # agency(): O(1) at 120,000 agencies

    def server(self, server_id: str) -> ServerConfig:
        for s in self.servers:
            if s.id == server_id:
                return s
        raise ConfigError(f"no server {server_id!r} in the configuration")

    def agencies_on(self, server_id: str) -> tuple[AgencyConfig, ...]:
        return tuple(a for a in self.agencies if a.server == server_id)

    def agency(self, code: str) -> AgencyConfig | None:
        return self._by_code.get(code)


# -- loading ---------------------------------------------------------------------------------------------------


def _resolve(base: Path, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else (base / p)


def resolve_db_url(base: Path, url: str) -> str:
    """Make a relative SQLite path in ``url`` absolute against ``base`` (other URLs unchanged)."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if rest and not rest.startswith("/") and rest != ":memory:":
                return prefix + str((base / rest).resolve())
    return url


def _require(entry: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in entry or entry[key] in (None, ""):
        raise ConfigError(f"{what}: missing '{key}'")
    return entry[key]


def _agency(entry: Mapping[str, Any], base: Path) -> AgencyConfig:
    what = f"agency {entry.get('code', '?')!r}"
    return AgencyConfig(
        code=str(_require(entry, "code", what)),
        name=str(entry.get("name") or entry["code"]),
        server=str(_require(entry, "server", what)),
        token_sha256=str(entry.get("token_sha256") or ""),
        key=_resolve(base, entry.get("key")),
        cert=_resolve(base, entry.get("cert")),
        moved_from=tuple(str(s) for s in entry.get("moved_from") or ()),
    )


def _broker(raw: Any, base: Path, amqp_url: str) -> BrokerConfig:
    from urllib.parse import unquote, urlsplit

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("broker: must be a mapping")
    auth = str(raw.get("auth") or BROKER_AUTH_SHARED)
    if auth not in (BROKER_AUTH_USERS, BROKER_AUTH_SHARED):
        raise ConfigError(f"broker.auth must be '{BROKER_AUTH_USERS}' or '{BROKER_AUTH_SHARED}', not {auth!r}")
    parts = urlsplit(amqp_url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    prefix = raw.get("user_prefix")
    users_file = _resolve(base, raw.get("users_file") or "broker-users.json")
    assert users_file is not None
    return BrokerConfig(
        auth=auth,
        users_file=users_file,
        management_url=str(raw.get("management_url") or f"http://{parts.hostname or '127.0.0.1'}:15672"),
        user_prefix=str(prefix) if prefix is not None else ("" if vhost == "/" else f"{vhost}."),
    )


def _read_agencies_csv(path: Path) -> Iterable[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file (raises :class:`ConfigError` with a clear message)."""
    env = os.environ if env is None else env
    path = Path(path).expanduser().resolve()
    try:
        raw = yaml.load(path.read_bytes(), Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return config_from_dict(raw, base=path.parent, path=path, env=env)


def config_from_dict(
    raw: Mapping[str, Any], *, base: Path, path: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    env = os.environ if env is None else env
    base = base.resolve()
    amqp_url = str(raw.get("amqp_url") or env.get("AXIS_AMQP_URL") or DEFAULT_AMQP_URL)
    stats_url = str(raw.get("stats_url") or env.get("AXIS_STATS_URL") or "sqlite+aiosqlite:///stats.db")
    pki_raw = raw.get("pki") or {}
    admin_raw = raw.get("admin") or {}
    limits_raw = raw.get("limits") or {}
    try:
        admin = AdminConfig(
            host=str(admin_raw.get("host", "127.0.0.1")),
            port=int(admin_raw.get("port", DEFAULT_ADMIN_PORT)),
            token_sha256=str(admin_raw.get("token_sha256") or ""),
        )
        limits = Limits(
            max_envelope_bytes=int(limits_raw.get("max_envelope_bytes", DEFAULT_MAX_BYTES)),
            auth_failures=int(limits_raw.get("auth_failures", 20)),
            auth_window_seconds=float(limits_raw.get("auth_window_seconds", 60.0)),
            auth_clients=int(limits_raw.get("auth_clients", 100_000)),
            max_recipients=int(limits_raw.get("max_recipients", 500)),
            header_timeout_seconds=float(limits_raw.get("header_timeout_seconds", 10.0)),
            body_timeout_seconds=float(limits_raw.get("body_timeout_seconds", 20.0)),
            body_min_rate=int(limits_raw.get("body_min_rate", 4096)),
            keep_alive_seconds=float(limits_raw.get("keep_alive_seconds", 5.0)),
            max_connections=int(limits_raw.get("max_connections", 1000)),
        )
        routers = int(raw.get("routers", 1))
        hosts = int(raw.get("hosts", 2))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad number in admin/limits/routers/hosts: {exc}") from None
    if limits.max_envelope_bytes <= 0 or routers < 1 or hosts < 1:
        raise ConfigError("limits.max_envelope_bytes, routers and hosts must be positive")
    if limits.auth_failures < 1 or limits.auth_window_seconds <= 0 or limits.auth_clients < 1:
        raise ConfigError("limits.auth_failures, auth_window_seconds and auth_clients must be positive")
    if min(limits.header_timeout_seconds, limits.body_timeout_seconds, limits.body_min_rate,
           limits.keep_alive_seconds, limits.max_connections) <= 0:
        raise ConfigError("limits.header_timeout_seconds, body_timeout_seconds, body_min_rate, keep_alive_seconds "
                          "and max_connections must be positive")
    if not 1 <= limits.max_recipients <= 1000:
        raise ConfigError("limits.max_recipients must be between 1 and 1000")

    servers: list[ServerConfig] = []
    for entry in raw.get("servers") or []:
        if not isinstance(entry, Mapping):
            raise ConfigError(f"server entry {entry!r} is not a mapping")
        sid = str(_require(entry, "id", "server"))
        try:
            port = int(entry.get("port", 0))
        except (TypeError, ValueError):
            raise ConfigError(f"server {sid}: port {entry.get('port')!r} is not a number") from None
        inbox = str(entry.get("inbox_url") or env.get("AXIS_INBOX_URL") or f"sqlite+aiosqlite:///inbox-{sid}.db")
        servers.append(
            ServerConfig(
                id=sid,
                kind=str(_require(entry, "kind", f"server {sid}")),
                host=str(entry.get("host", "127.0.0.1")),
                port=port,
                inbox_url=resolve_db_url(base, inbox),
                keys=tuple(str(k) for k in entry.get("keys") or ()),
            )
        )

    agencies: list[AgencyConfig] = []
    for entry in raw.get("agencies") or []:
        if not isinstance(entry, Mapping):
            raise ConfigError(f"agency entry {entry!r} is not a mapping")
        agencies.append(_agency(entry, base))
    if raw.get("agencies_file"):
        csv_path = _resolve(base, raw["agencies_file"])
        assert csv_path is not None
        if not csv_path.is_file():
            raise ConfigError(f"agencies_file {csv_path} not found")
        agencies.extend(_agency(row, base) for row in _read_agencies_csv(csv_path))

    try:
        directory = Directory(
            (Server(s.id, s.kind, s.host, s.port) for s in servers),  # type: ignore[arg-type]
            (Agency(a.code, a.name, a.server, a.moved_from) for a in agencies),
        )
    except DirectoryError as exc:
        raise ConfigError(str(exc)) from None
    for s in servers:
        for code in s.keys:
            if directory.agency(code) is None or directory.agency(code).server != s.id:  # type: ignore[union-attr]
                raise ConfigError(f"server {s.id}: holds the key of {code}, which is not one of its agencies")

    return Config(
        path=path,
        work_dir=base,
        amqp_url=amqp_url,
        stats_url=resolve_db_url(base, stats_url),
        pki=PkiConfig(ca=_resolve(base, pki_raw.get("ca")), crl=_resolve(base, pki_raw.get("crl"))),
        admin=admin,
        limits=limits,
        servers=tuple(servers),
        agencies=tuple(agencies),
        routers=routers,
        hosts=hosts,
        directory=directory,
        broker=_broker(raw.get("broker"), base, amqp_url),
    )


# -- generating a ready work directory ------------------------------------------------------------------------


#: generated configurations list more agencies than this in ``agencies.csv`` (``agencies_file``), not in YAML
CSV_AGENCIES_ABOVE = 5000


def generate_workdir(
    work_dir: str | Path,
    agencies: list[tuple[str, str, str]],
    servers: list[tuple[str, str]],
    base_port: int = 8701,
    algorithm: str = "ec",
    *,
    amqp_url: str | None = None,
    stats_url: str | None = None,
    inbox_url: str | None = None,
    admin_port: int | None = None,
    routers: int = 1,  # one router batches more (bigger bundles) than two on a 2-core machine: measured faster
    host: str = "127.0.0.1",
    server_signs: bool = True,
    broker_auth: str = BROKER_AUTH_USERS,
) -> tuple[Path, dict[str, Any]]:
    """Write a complete work directory: PKI, tokens, ``config.yaml``; return ``(config_path, connections)``.

    ``connections`` is the ``connections.json`` object of contract section 3 (with cleartext tokens); it is
    written by :func:`write_connections` once the servers answer. Servers get ports ``base_port + i``, the admin
    app ``admin_port`` (default ``base_port - 1``). With ``server_signs`` every server holds its agencies' keys
    (so agency software may submit unsigned documents). ``broker_auth`` is the config's ``broker.auth``:
    ``users`` (default: one least-privilege broker user per component, provisioned when the axis starts) or
    ``shared`` (development: every component uses ``amqp_url``).
    """
    from axis.pki import CertificateAuthority

    wd = Path(work_dir).expanduser().resolve()
    wd.mkdir(parents=True, exist_ok=True)
    # Validate before issuing anything.
    Directory.from_records(servers, agencies)
    pki_dir = wd / "pki"
    ca = CertificateAuthority.init(pki_dir, algorithm=algorithm)  # type: ignore[arg-type]
    admin_token = new_token()
    ports = {sid: base_port + i for i, (sid, _kind) in enumerate(servers)}
    kinds = dict(servers)
    holds: dict[str, list[str]] = {sid: [] for sid, _ in servers}
    agency_entries: list[dict[str, Any]] = []
    conn_agencies: list[dict[str, Any]] = []
    # one index write for all of them (issuing one by one rewrites the CA's index each time: quadratic)
    every = ca.issue_many([(code, name) for code, name, _ in agencies], algorithm=algorithm)  # type: ignore[arg-type]
    for (code, name, sid), issued in zip(agencies, every, strict=True):
        token = new_token()
        key, cert = str(issued.key_path.relative_to(wd)), str(issued.cert_path.relative_to(wd))
        entry: dict[str, Any] = {"code": code, "name": name, "server": sid, "token_sha256": hash_token(token)}
        if server_signs:
            entry |= {"key": key, "cert": cert}
            holds[sid].append(code)
        agency_entries.append(entry)
        conn_agencies.append(
            {
                "code": code,
                "name": name,
                "server": sid,
                "kind": kinds[sid],
                "endpoint": f"http://{host}:{ports[sid]}",
                "token": token,
                "key": str(issued.key_path),
                "cert": str(issued.cert_path),
            }
        )
    raw: dict[str, Any] = {
        "stats_url": stats_url or "sqlite+aiosqlite:///stats.db",
        "pki": {"ca": str(ca.ca_path.relative_to(wd)), "crl": str(ca.crl_path.relative_to(wd))},
        "admin": {
            "host": host,
            "port": admin_port if admin_port is not None else base_port - 1,
            "token_sha256": hash_token(admin_token),
        },
        "limits": {"max_envelope_bytes": DEFAULT_MAX_BYTES},
        "routers": routers,
        "hosts": 2,  # one per core of the 2-core reference machine: fewer, fuller hosts re-check less
        "broker": {"auth": broker_auth},
        "servers": [
            {
                "id": sid,
                "kind": kind,
                "host": host,
                "port": ports[sid],
                "inbox_url": inbox_url or f"sqlite+aiosqlite:///inbox-{sid}.db",
                "keys": holds[sid],
            }
            for sid, kind in servers
        ],
        "agencies": agency_entries,
    }
    if len(agency_entries) > CSV_AGENCIES_ABOVE:  # YAML takes ~20 s per process for 120,000 agencies, CSV ~1 s
        fields = ["code", "name", "server", "token_sha256", "key", "cert"]
        with (wd / "agencies.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(agency_entries)
        raw["agencies"] = []
        raw["agencies_file"] = "agencies.csv"
    if amqp_url:
        raw = {"amqp_url": amqp_url, **raw}
    config_path = wd / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    admin_port_v = raw["admin"]["port"]
    connections = {
        "ca": str(ca.ca_path),
        "crl": str(ca.crl_path),
        "admin": {"url": f"http://{host}:{admin_port_v}", "token": admin_token},
        "agencies": conn_agencies,
    }
    return config_path, connections


def _load_raw(path: Path) -> dict[str, Any]:
    raw = yaml.load(path.read_bytes(), Loader=_Loader)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return raw


def _agency_entry(raw: Mapping[str, Any], code: str, path: Path) -> dict[str, Any]:
    entry = next((a for a in raw.get("agencies") or [] if isinstance(a, dict) and str(a.get("code")) == code), None)
    if entry is None:
        raise ConfigError(f"agency {code} is not in the agencies of {path} (agencies_file: edit the CSV)")
    return entry


def _ensure_server(raw: dict[str, Any], server_id: str, near: Mapping[str, Any], *, kind: str, host: str | None,
                   port: int | None, inbox_url: str | None) -> dict[str, Any]:
    """The entry of server ``server_id``, added (host of ``near``, port one above the highest) when missing."""
    servers = raw.setdefault("servers", [])
    found = next((s for s in servers if str(s.get("id")) == server_id), None)
    if found is not None:
        return found  # type: ignore[no-any-return]
    entry = {
        "id": server_id, "kind": kind, "host": host or near.get("host", "127.0.0.1"),
        "port": port if port is not None else max([int(s.get("port", 0)) for s in servers] or [8700]) + 1,
        "inbox_url": inbox_url or f"sqlite+aiosqlite:///inbox-{server_id}.db", "keys": [],
    }
    servers.append(entry)
    return entry


def _write_validated(raw: dict[str, Any], path: Path, out: str | Path | None) -> Config:
    target = Path(out).expanduser().resolve() if out else path
    config = config_from_dict(raw, base=target.parent, path=target)  # validate before writing
    tmp = target.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(target)
    return config


def announce_move(
    config_path: str | Path,
    code: str,
    server_id: str,
    *,
    kind: str = "dedicated",
    host: str | None = None,
    port: int | None = None,
    inbox_url: str | None = None,
) -> Config:
    """First half of a live move (axis.livemove): add server ``server_id`` if it is new (as
    :func:`move_agency` would) and list it in the agency's ``moved_from`` while the agency stays where it is.
    Routers reloaded with this file already accept the agency's statuses from its future server, so a router
    that has not yet reloaded the final file never refuses them. Written atomically, only if it validates."""
    path = Path(config_path).expanduser().resolve()
    raw = _load_raw(path)
    entry = _agency_entry(raw, code, path)
    old_id = str(entry["server"])
    old = next((s for s in raw.get("servers") or [] if str(s.get("id")) == old_id), {})
    _ensure_server(raw, server_id, old, kind=kind, host=host, port=port, inbox_url=inbox_url)
    if server_id != old_id and server_id not in (entry.get("moved_from") or []):
        entry["moved_from"] = [*(entry.get("moved_from") or []), server_id]
    return _write_validated(raw, path, None)


def move_agency(
    config_path: str | Path,
    code: str,
    server_id: str,
    *,
    kind: str = "dedicated",
    host: str | None = None,
    port: int | None = None,
    inbox_url: str | None = None,
    out: str | Path | None = None,
) -> Config:
    """Write the configuration with agency ``code`` moved to server ``server_id`` (added with ``kind``, ``host``,
    ``port`` and ``inbox_url`` when it is not in the file yet; the port defaults to one above the highest) and
    return it. The old server's key of the agency, if any, moves with it. Written atomically to ``out``
    (default: over ``config_path``) only if the result validates. See docs/core.md, "Moving an agency".
    """
    path = Path(config_path).expanduser().resolve()
    raw = _load_raw(path)
    entry = _agency_entry(raw, code, path)
    servers = raw.setdefault("servers", [])
    old_id = str(entry["server"])
    old = next((s for s in servers if str(s.get("id")) == old_id), {})
    new = _ensure_server(raw, server_id, old, kind=kind, host=host, port=port, inbox_url=inbox_url)
    entry["server"] = server_id
    if old_id != server_id:
        entry["moved_from"] = [*(s for s in entry.get("moved_from") or () if s != server_id and s != old_id), old_id]
    if code in (old.get("keys") or []):
        old["keys"] = [k for k in old["keys"] if k != code]
        new["keys"] = [*(new.get("keys") or []), code]
    return _write_validated(raw, path, out)


def connections_for(config: Config, known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The connections.json object for ``config``; tokens come from ``known`` (an earlier connections object)
    when available, else are ``null`` (the config only stores their hashes)."""
    tokens = {a.get("code"): a.get("token") for a in (known or {}).get("agencies", [])}
    kinds = {s.id: s for s in config.servers}
    return {
        "ca": str(config.pki.ca) if config.pki.ca else None,
        "crl": str(config.pki.crl) if config.pki.crl else None,
        "admin": {"url": config.admin.url, "token": (known or {}).get("admin", {}).get("token")},
        "agencies": [
            {
                "code": a.code,
                "name": a.name,
                "server": a.server,
                "kind": kinds[a.server].kind,
                "endpoint": kinds[a.server].url,
                "token": tokens.get(a.code),
                "key": str(a.key) if a.key else None,
                "cert": str(a.cert) if a.cert else None,
            }
            for a in config.agencies
        ],
    }


def write_connections(work_dir: str | Path, connections: Mapping[str, Any]) -> Path:
    """Write ``connections.json`` (mode 0600: it holds tokens) atomically; returns its path."""
    path = Path(work_dir) / "connections.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(connections, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    return path
