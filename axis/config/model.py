"""The configuration's model: frozen dataclasses (the format is in :mod:`axis.config`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from axis.core.directory import Directory
from axis.core.xmlsafe import DEFAULT_MAX_BYTES

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
    """A new token (an agency's or the admin's): 72 URL-safe characters. An agency's token is also the VPCP SDK's
    secret, the HMAC key of its /vxp requests (endpoints.vxp): longer than HMAC's 64-byte block, so the facade can
    check it from the SHA-256 digest stored at rest (HMAC hashes such a key)."""
    return secrets.token_urlsafe(54)


def base_url(host: str, port: int, tls: bool) -> str:
    """``https://host:port`` (``http://`` with ``tls: off``); an IPv6 address in brackets."""
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


@dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_ADMIN_PORT
    token_sha256: str = ""
    tls: bool = True  # the configuration's top-level tls (set by the loader)

    @property
    def url(self) -> str:
        return base_url(self.host, self.port, self.tls)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Transport security of every endpoint and admin server (contract section 6): HTTPS with ``cert``/``key``
    (the server certificate from the axis CA, ``axis pki issue-server``; default ``<pki dir>/tls/server/``), or
    plain HTTP when ``enabled`` is False (``tls: off``: development only, announced by every server)."""

    enabled: bool = True
    cert: Path | None = None
    key: Path | None = None

    def missing(self) -> str | None:
        """Why the servers cannot serve HTTPS with this configuration (None when they can, or when TLS is off)."""
        if not self.enabled:
            return None
        if self.cert is None or self.key is None:
            return ("tls is on (the default) but no server certificate is configured: set tls: {cert: …, key: …} "
                    "(axis pki issue-server), or tls: off for development")
        for what, path in (("certificate", self.cert), ("key", self.key)):
            if not path.is_file():
                return (f"tls is on (the default) but the server {what} {path} does not exist: issue it with "
                        "`axis pki issue-server --dir PKI_DIR` (it writes PKI_DIR/tls/server/cert.pem and key.pem) "
                        "or set tls: {cert, key}; tls: off for development")
        return None


@dataclass(frozen=True, slots=True)
class PkiConfig:
    """The axis CA (``ca``) every signature and TLS peer is checked against, its CRL (``crl``), and how old a CRL
    may be (``crl_max_age_hours``, since its thisUpdate) before the axis stops trusting it: a signed document is
    then refused CERT_UNTRUSTED and a TLS client certificate UNAUTHORIZED until a newer CRL is in place. A CRL past
    its own nextUpdate is stale in any case; None: the nextUpdate alone."""

    ca: Path | None = None
    crl: Path | None = None
    crl_max_age_hours: float | None = None

    @property
    def crl_max_age(self) -> dt.timedelta | None:
        return None if self.crl_max_age_hours is None else dt.timedelta(hours=self.crl_max_age_hours)


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
    #: (``axis.core.wire.HEADER_LIST_ITEMS``).
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
    #: Big documents (axis.core.blobref): a document over ``inline_max_bytes`` (at most ``max_envelope_bytes``) is
    #: streamed to the blob store at the door and travels by reference, up to ``max_document_bytes``. 0 (the
    #: default) means ``max_envelope_bytes`` for both: no document travels by reference until the operator sets
    #: ``max_document_bytes`` (e.g. 209715200 for 200 MiB) and gives the blob store its disk.
    max_document_bytes: int = 0
    inline_max_bytes: int = 0

    @property
    def document_limit(self) -> int:
        """The largest document accepted (TOO_LARGE above)."""
        return max(self.max_document_bytes, self.max_envelope_bytes)

    @property
    def inline_limit(self) -> int:
        """The largest document that travels inline (its bytes in the messages); larger ones by reference."""
        return min(self.inline_max_bytes or self.max_envelope_bytes, self.max_envelope_bytes)

    @property
    def big_documents(self) -> bool:
        """Whether documents may travel by reference at all."""
        return self.document_limit > self.inline_limit


BROKER_AUTH_USERS = "users"
BROKER_AUTH_SHARED = "shared"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How components authenticate to RabbitMQ (see :mod:`axis.broker.users`).

    ``tls`` (contract section 6): every component, the provisioning account included, connects over AMQPS
    (``amqps://`` in ``amqp_url``) with its own client certificate from the axis CA (``certs_dir/<user>/``,
    CN = its broker user) and is authenticated by the broker from that certificate (SASL EXTERNAL) — no
    password travels or is kept for it (only ``axis-admin`` keeps one, for the management HTTP API). The broker
    and its certificate are trusted through ``ca`` (default: ``pki.ca``). Implies ``auth: users``."""

    auth: str = BROKER_AUTH_SHARED
    users_file: Path = Path("broker-users.json")
    management_url: str = "http://127.0.0.1:15672"
    user_prefix: str = ""
    tls: bool = False
    ca: Path | None = None
    certs_dir: Path | None = None

    @property
    def per_component(self) -> bool:
        return self.auth == BROKER_AUTH_USERS


DEFAULT_STH_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """The evidence log (contract section 5; :mod:`axis.evidence`): where its leaves and tree heads are stored
    (``url``: SQLite or PostgreSQL), the log's signing key and certificate (issued by the axis CA), and how often
    the log writer signs a new tree head while the log grows."""

    url: str = "sqlite:///evidence.sqlite3"
    key: Path | None = None
    cert: Path | None = None
    sth_interval_seconds: float = DEFAULT_STH_INTERVAL_SECONDS


@dataclass(frozen=True, slots=True)
class BlobConfig:
    """The blob store of big documents (axis.blobs): a directory shared by the endpoint hosts and the routers
    (``dir``, relative to the work directory), and how long a blob is kept at least (``retention_days``: the
    evidence log names its digest, and the sender may fetch it back) — deleted after that once every recipient
    acked it. ``gc_interval_seconds``: how often each endpoint host looks for blobs to delete. ``url``
    (``postgresql://…``, or ``AXIS_BLOBS_URL``): the blobs in that PostgreSQL database's large objects instead
    (axis.blobs.postgres), for processes on machines that share no filesystem; uploads still spool in ``dir``."""

    dir: Path = Path("blobs")
    retention_days: float = 30.0
    gc_interval_seconds: float = 600.0
    url: str = ""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    id: str
    kind: str
    host: str = "127.0.0.1"
    port: int = 0
    inbox_url: str = ""
    keys: tuple[str, ...] = ()
    #: Mutual TLS for agency software (contract section 6; axis.core.tlsconfig): ``required`` — every agency
    #: request presents a TLS client certificate from the axis CA whose subject UID is the bearer token's agency;
    #: ``optional`` — checked when presented; ``off`` (default) — not asked for.
    client_auth: str = "off"
    tls: bool = True  # the configuration's top-level tls (set by the loader)

    @property
    def url(self) -> str:
        return base_url(self.host, self.port, self.tls)


@dataclass(frozen=True, slots=True)
class AgencyConfig:
    code: str
    name: str
    server: str
    token_sha256: str = ""
    key: Path | None = None
    cert: Path | None = None
    moved_from: tuple[str, ...] = ()  # servers that hosted it before (axis.config.move_agency)
    aliases: tuple[str, ...] = ()  # former codes (axis.config.renames.rename_agency): still route to it
    active: bool = True  # False: retired, still listed in the directory for agency software


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
    directory: Directory = field(repr=False, compare=False)
    routers: int = 1
    hosts: int = 2  # endpoint-host processes: a host process checks a document once for all its servers
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    blobs: BlobConfig = field(default_factory=BlobConfig)
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

    @property
    def blob_dir(self) -> Path:
        """The blob store's directory (``blobs.dir``, relative to the work directory)."""
        return self.blobs.dir if self.blobs.dir.is_absolute() else self.work_dir / self.blobs.dir

    def client_ssl(self) -> ssl.SSLContext | bool:
        """How the axis's own clients (``axis up``'s health checks, the admin's probes, live moves) verify its
        servers: an SSLContext trusting the axis CA (``pki.ca``); True (the system's trust store) without one."""
        from axis.core.tlsconfig import client_context

        if self.pki.ca is not None and self.pki.ca.is_file():
            return client_context(self.pki.ca)
        return True


# -- loading ---------------------------------------------------------------------------------------------------
