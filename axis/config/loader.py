"""Reading ``config.yaml`` (and ``agencies_file``) into the model: :func:`load_config`, :func:`config_from_dict`."""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from axis.config.model import (
    BROKER_AUTH_SHARED,
    BROKER_AUTH_USERS,
    DEFAULT_ADMIN_PORT,
    DEFAULT_AMQP_URL,
    DEFAULT_STH_INTERVAL_SECONDS,
    AdminConfig,
    AgencyConfig,
    BlobConfig,
    BrokerConfig,
    Config,
    ConfigError,
    EvidenceConfig,
    Limits,
    PkiConfig,
    ServerConfig,
    TlsConfig,
    _Loader,
)
from axis.core.directory import Agency, Directory, DirectoryError, Server, ServerKind
from axis.core.tlsconfig import CLIENT_AUTH_MODES, CLIENT_AUTH_OFF
from axis.core.xmlsafe import DEFAULT_MAX_BYTES


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
        aliases=_codes(entry.get("aliases"), what),
        active=_flag(entry.get("active", True), f"{what}: active"),
    )


def _codes(value: Any, what: str) -> tuple[str, ...]:
    """A list of codes: a YAML list, or ``a;b`` in a CSV cell (empty: none)."""
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        return tuple(c.strip() for c in value.split(";") if c.strip())
    if isinstance(value, (list, tuple)):
        return tuple(str(c) for c in value)
    raise ConfigError(f"{what}: aliases must be a list of agency codes")


def _flag(value: Any, what: str) -> bool:
    """A boolean: YAML true/false, or a CSV cell (true/false, yes/no, 1/0; empty: true)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{what} must be true or false, not {value!r}")


def _broker(raw: Any, base: Path, amqp_url: str, ca: Path | None) -> BrokerConfig:
    from urllib.parse import unquote, urlsplit

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("broker: must be a mapping")
    tls = raw.get("tls", False)
    if not isinstance(tls, bool):
        raise ConfigError(f"broker.tls must be true or false, not {tls!r}")
    parts = urlsplit(amqp_url)
    auth = str(raw.get("auth") or (BROKER_AUTH_USERS if tls else BROKER_AUTH_SHARED))
    if auth not in (BROKER_AUTH_USERS, BROKER_AUTH_SHARED):
        raise ConfigError(f"broker.auth must be '{BROKER_AUTH_USERS}' or '{BROKER_AUTH_SHARED}', not {auth!r}")
    if tls and parts.scheme != "amqps":
        raise ConfigError(f"broker.tls: true needs an amqps:// amqp_url (port 5671), not {parts.scheme}://")
    if tls and auth != BROKER_AUTH_USERS:
        raise ConfigError("broker.tls: true authenticates each component by its own certificate: it needs "
                          f"broker.auth: {BROKER_AUTH_USERS}")
    broker_ca = _resolve(base, raw.get("ca")) or ca
    if tls and broker_ca is None:
        raise ConfigError("broker.tls: true needs the CA that issued the broker's certificate: set pki.ca or broker.ca")
    certs_dir = _resolve(base, raw.get("certs_dir")) or (broker_ca.parent / "tls" / "broker" if broker_ca else None)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    prefix = raw.get("user_prefix")
    users_file = _resolve(base, raw.get("users_file") or "broker-users.json")
    assert users_file is not None
    return BrokerConfig(
        auth=auth,
        users_file=users_file,
        management_url=str(raw.get("management_url") or f"http://{parts.hostname or '127.0.0.1'}:15672"),
        user_prefix=str(prefix) if prefix is not None else ("" if vhost == "/" else f"{vhost}."),
        tls=tls,
        ca=broker_ca,
        certs_dir=certs_dir,
    )


DEFAULT_EVIDENCE_URL = "sqlite:///evidence.sqlite3"


def _evidence(raw: Any, base: Path, env: Mapping[str, str]) -> EvidenceConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("evidence: must be a mapping")
    url = str(raw.get("url") or env.get("AXIS_EVIDENCE_URL") or DEFAULT_EVIDENCE_URL)
    try:
        interval = float(raw.get("sth_interval_seconds", DEFAULT_STH_INTERVAL_SECONDS))
    except (TypeError, ValueError):
        raise ConfigError(f"evidence.sth_interval_seconds {raw.get('sth_interval_seconds')!r} is not a number"
                          ) from None
    if not 0 < interval <= 3600:  # the contract: a new tree head at least every 10 s while the log grows
        raise ConfigError("evidence.sth_interval_seconds must be positive (at most 3600)")
    return EvidenceConfig(url=resolve_db_url(base, url), key=_resolve(base, raw.get("key")),
                          cert=_resolve(base, raw.get("cert")), sth_interval_seconds=interval)


#: Where ``axis pki issue-server`` writes the server certificate, under the PKI directory (beside pki.ca).
SERVER_CERT, SERVER_KEY = "tls/server/cert.pem", "tls/server/key.pem"
_OFF = ("off", "false", "no")
_ON = ("on", "true", "yes")


def _tls(raw: Any, base: Path, ca: Path | None) -> TlsConfig:
    """``tls: off`` (development), ``tls: on``/absent (HTTPS with the server certificate beside the CA:
    ``<pki dir>/tls/server/``) or ``tls: {cert, key}``."""
    if isinstance(raw, str) and raw.strip().lower() in (*_OFF, *_ON):
        raw = raw.strip().lower() in _ON
    if raw is False:
        return TlsConfig(enabled=False)
    if raw is None or raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("tls: must be off, on, or a mapping {cert: PATH, key: PATH}")
    enabled = raw.get("enabled", True)
    if isinstance(enabled, str):
        enabled = enabled.strip().lower() not in _OFF
    pki_dir = ca.parent if ca is not None else None
    cert = _resolve(base, raw.get("cert")) or (pki_dir / SERVER_CERT if pki_dir else None)
    key = _resolve(base, raw.get("key")) or (pki_dir / SERVER_KEY if pki_dir else None)
    return TlsConfig(enabled=bool(enabled), cert=cert, key=key)


def _client_auth(value: Any, sid: str) -> str:
    if value is None or value is False:  # YAML 1.1 reads an unquoted `off` as false
        return CLIENT_AUTH_OFF
    mode = str(value).strip().lower()
    if mode not in CLIENT_AUTH_MODES:
        raise ConfigError(f"server {sid}: client_auth must be required, optional or off, not {value!r}")
    return mode


def tls_enabled(path: str | Path) -> bool:
    """Whether the configuration file turns TLS on (the default), read cheaply before anything starts — so that a
    command starting servers can say ``tls: off`` on its first line. An unreadable file counts as on (loading it
    properly reports the problem)."""
    try:
        raw = yaml.load(Path(path).expanduser().read_bytes(), Loader=_Loader)
    except (OSError, yaml.YAMLError):
        return True
    if not isinstance(raw, Mapping):
        return True
    try:
        return _tls(raw.get("tls"), Path(path).parent, None).enabled
    except ConfigError:
        return True


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


def _blobs(raw: Any, base: Path, env: Mapping[str, str]) -> BlobConfig:
    """``blobs: {dir, retention_days, gc_interval_seconds, url}`` (axis.config.model.BlobConfig)."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("blobs must be a mapping")
    url = str(raw.get("url") or env.get("AXIS_BLOBS_URL") or "")
    if url and not re.match(r"^postgres(?:ql)?(?:\+[a-z0-9_]+)?://", url):
        raise ConfigError("blobs.url must be a PostgreSQL URL (postgresql://user@host/database); leave it out "
                          "for the blobs directory (blobs.dir)")
    try:
        blobs = BlobConfig(dir=_resolve(base, raw.get("dir")) or base / "blobs",
                           retention_days=float(raw.get("retention_days", 30.0)),
                           gc_interval_seconds=float(raw.get("gc_interval_seconds", 600.0)), url=url)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad number in blobs: {exc}") from None
    if blobs.retention_days < 0 or blobs.gc_interval_seconds <= 0:
        raise ConfigError("blobs.retention_days must not be negative, blobs.gc_interval_seconds must be positive")
    return blobs


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
            max_document_bytes=int(limits_raw.get("max_document_bytes", 0)),
            inline_max_bytes=int(limits_raw.get("inline_max_bytes", 0)),
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
    if limits.max_document_bytes < 0 or limits.inline_max_bytes < 0:
        raise ConfigError("limits.max_document_bytes and inline_max_bytes must not be negative")
    if not 1 <= limits.max_recipients <= 1000:
        raise ConfigError("limits.max_recipients must be between 1 and 1000")

    max_age = pki_raw.get("crl_max_age_hours")
    try:
        crl_max_age_hours = None if max_age is None else float(max_age)
    except (TypeError, ValueError):
        raise ConfigError(f"pki.crl_max_age_hours {max_age!r} is not a number") from None
    if crl_max_age_hours is not None and not crl_max_age_hours > 0:
        raise ConfigError("pki.crl_max_age_hours must be positive")
    pki = PkiConfig(ca=_resolve(base, pki_raw.get("ca")), crl=_resolve(base, pki_raw.get("crl")),
                    crl_max_age_hours=crl_max_age_hours)
    tls = _tls(raw.get("tls"), base, pki.ca)
    admin = dataclasses.replace(admin, tls=tls.enabled)
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
        client_auth = _client_auth(entry.get("client_auth"), sid)
        if client_auth != CLIENT_AUTH_OFF and not tls.enabled:
            raise ConfigError(f"server {sid}: client_auth {client_auth} needs TLS (the configuration says tls: off)")
        if client_auth != CLIENT_AUTH_OFF and pki.ca is None:
            raise ConfigError(f"server {sid}: client_auth {client_auth} needs pki.ca (the CA of the client "
                              "certificates)")
        servers.append(
            ServerConfig(
                id=sid,
                kind=str(_require(entry, "kind", f"server {sid}")),
                host=str(entry.get("host", "127.0.0.1")),
                port=port,
                inbox_url=resolve_db_url(base, inbox),
                keys=tuple(str(k) for k in entry.get("keys") or ()),
                client_auth=client_auth,
                tls=tls.enabled,
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
            # the kind is a plain str here: cast, and checked by Directory (DirectoryError for any other kind)
            (Server(s.id, cast(ServerKind, s.kind), s.host, s.port, s.tls) for s in servers),
            (Agency(a.code, a.name, a.server, a.moved_from, a.aliases, a.active) for a in agencies),
        )
    except DirectoryError as exc:
        raise ConfigError(str(exc)) from None
    for s in servers:
        for code in s.keys:
            agency = directory.agency(code)
            if agency is None or agency.server != s.id:
                raise ConfigError(f"server {s.id}: holds the key of {code}, which is not one of its agencies")

    return Config(
        path=path,
        work_dir=base,
        amqp_url=amqp_url,
        stats_url=resolve_db_url(base, stats_url),
        pki=pki,
        admin=admin,
        limits=limits,
        servers=tuple(servers),
        agencies=tuple(agencies),
        routers=routers,
        hosts=hosts,
        directory=directory,
        broker=_broker(raw.get("broker"), base, amqp_url, pki.ca),
        evidence=_evidence(raw.get("evidence"), base, env),
        blobs=_blobs(raw.get("blobs"), base, env),
        tls=tls,
    )


# -- generating a ready work directory ------------------------------------------------------------------------


#: generated configurations list more agencies than this in ``agencies.csv`` (``agencies_file``), not in YAML
