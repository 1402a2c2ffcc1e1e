"""A ready work directory for a new axis (config, PKI, tokens) and ``connections.json`` for its users."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from axis.config.model import (
    BROKER_AUTH_USERS,
    DEFAULT_STH_INTERVAL_SECONDS,
    Config,
    base_url,
    hash_token,
    new_token,
)
from axis.core.directory import Directory
from axis.core.tlsconfig import CLIENT_AUTH_MODES, CLIENT_AUTH_OFF
from axis.core.xmlsafe import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from axis.core.pki import Algorithm

CSV_AGENCIES_ABOVE = 5000


def generate_workdir(
    work_dir: str | Path,
    agencies: list[tuple[str, str, str]],
    servers: list[tuple[str, str]],
    base_port: int = 8701,
    algorithm: Algorithm = "ec",
    *,
    amqp_url: str | None = None,
    stats_url: str | None = None,
    inbox_url: str | None = None,
    admin_port: int | None = None,
    routers: int = 1,  # one router batches more (bigger bundles) than two on a 2-core machine: measured faster
    host: str = "127.0.0.1",
    server_signs: bool = True,
    broker_auth: str = BROKER_AUTH_USERS,
    evidence_url: str | None = None,
    sth_interval_seconds: float = DEFAULT_STH_INTERVAL_SECONDS,
    tls: bool = True,
    client_auth: str = CLIENT_AUTH_OFF,
    client_certs: bool = True,
    server_names: Sequence[str] = (),
) -> tuple[Path, dict[str, Any]]:
    """Write a complete work directory: PKI, tokens, ``config.yaml``; return ``(config_path, connections)``.

    ``connections`` is the ``connections.json`` object of contract section 3 (with cleartext tokens); it is
    written by :func:`write_connections` once the servers answer. Servers get ports ``base_port + i``, the admin
    app ``admin_port`` (default ``base_port - 1``). With ``server_signs`` every server holds its agencies' keys
    (so agency software may submit unsigned documents). ``broker_auth`` is the config's ``broker.auth``:
    ``users`` (default: one least-privilege broker user per component, provisioned when the axis starts) or
    ``shared`` (development: every component uses ``amqp_url``). The evidence log's signing key and certificate
    are issued by the same CA (``pki/log/key.pem``, ``pki/log/cert.pem``); its store is ``evidence_url``
    (default ``<work dir>/evidence.sqlite3``).

    Transport (contract section 6): with ``tls`` (default) every server serves HTTPS with one server certificate
    from the CA (``pki/tls/server/``; names 127.0.0.1, localhost, ``host`` and ``server_names``) and the URLs are
    ``https://``; ``tls=False`` writes ``tls: off`` (plain HTTP, development only). Every server gets
    ``client_auth`` (``off``, ``optional``, ``required``). With ``client_certs`` (default) every agency also gets a
    TLS client certificate (``pki/tls/clients/<CODE>/``, subject UID = its code), listed in connections.json as
    ``tls_cert``/``tls_key`` — needed where ``client_auth`` is not ``off`` (so always issued then; such agencies'
    entries also say ``client_auth``).
    """
    from axis.core.pki import (
        CertificateAuthority,
        issue_client_certificates,
        issue_log_certificate,
        issue_server_certificate,
    )

    if client_auth not in CLIENT_AUTH_MODES:
        raise ValueError(f"client_auth must be one of {CLIENT_AUTH_MODES}, not {client_auth!r}")
    if client_auth != CLIENT_AUTH_OFF and not tls:
        raise ValueError("client_auth needs tls")

    wd = Path(work_dir).expanduser().resolve()
    wd.mkdir(parents=True, exist_ok=True)
    # Validate before issuing anything.
    Directory.from_records(servers, agencies)
    pki_dir = wd / "pki"
    ca = CertificateAuthority.init(pki_dir, algorithm=algorithm)
    admin_token = new_token()
    ports = {sid: base_port + i for i, (sid, _kind) in enumerate(servers)}
    kinds = dict(servers)
    holds: dict[str, list[str]] = {sid: [] for sid, _ in servers}
    agency_entries: list[dict[str, Any]] = []
    conn_agencies: list[dict[str, Any]] = []
    # one index write for all of them (issuing one by one rewrites the CA's index each time: quadratic)
    every = ca.issue_many([(code, name) for code, name, _ in agencies], algorithm=algorithm)
    log_cert = issue_log_certificate(pki_dir, algorithm=algorithm)
    server_cert = issue_server_certificate(pki_dir, [host, *server_names]) if tls else None
    clients: dict[str, tuple[str, str]] = {}
    if tls and (client_certs or client_auth != CLIENT_AUTH_OFF):
        clients = {c.code: (str(c.cert_path), str(c.key_path))
                   for c in issue_client_certificates(pki_dir, [(code, name) for code, name, _ in agencies])}
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
                "endpoint": base_url(host, ports[sid], tls),
                "token": token,
                "key": str(issued.key_path),
                "cert": str(issued.cert_path),
                **({"tls_cert": clients[code][0], "tls_key": clients[code][1]} if code in clients else {}),
                **({"client_auth": client_auth} if client_auth != CLIENT_AUTH_OFF else {}),
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
        "tls": ({"cert": str(server_cert.cert_path.relative_to(wd)), "key": str(server_cert.key_path.relative_to(wd))}
                if server_cert is not None else False),
        "limits": {"max_envelope_bytes": DEFAULT_MAX_BYTES},
        "routers": routers,
        "hosts": 2,  # one per core of the 2-core reference machine: fewer, fuller hosts re-check less
        "broker": {"auth": broker_auth},
        "evidence": {
            "url": evidence_url or "sqlite:///evidence.sqlite3",
            "key": str(log_cert.key_path.relative_to(wd)),
            "cert": str(log_cert.cert_path.relative_to(wd)),
            "sth_interval_seconds": sth_interval_seconds,
        },
        "servers": [
            {
                "id": sid,
                "kind": kind,
                "host": host,
                "port": ports[sid],
                "inbox_url": inbox_url or f"sqlite+aiosqlite:///inbox-{sid}.db",
                "keys": holds[sid],
                "client_auth": client_auth,
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
        "admin": {"url": base_url(host, admin_port_v, tls), "token": admin_token},
        "agencies": conn_agencies,
    }
    return config_path, connections



def connections_for(config: Config, known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The connections.json object for ``config``; tokens come from ``known`` (an earlier connections object)
    when available, else are ``null`` (the config only stores their hashes). An agency's TLS client certificate
    (``tls_cert``/``tls_key``) comes from ``known`` too, else from the PKI layout beside ``pki.ca``
    (``tls/clients/<CODE>/``) when it is there."""
    from axis.core.pki import client_dir

    earlier = {a.get("code"): a for a in (known or {}).get("agencies", []) if isinstance(a, Mapping)}
    tokens = {code: a.get("token") for code, a in earlier.items()}
    kinds = {s.id: s for s in config.servers}
    clients = config.pki.ca.parent if config.pki.ca is not None and config.tls.enabled else None

    def tls_files(code: str) -> dict[str, str]:
        old = earlier.get(code) or {}
        if old.get("tls_cert") and old.get("tls_key"):
            return {"tls_cert": str(old["tls_cert"]), "tls_key": str(old["tls_key"])}
        if clients is not None:
            d = client_dir(clients, code)
            if (d / "cert.pem").is_file():
                return {"tls_cert": str(d / "cert.pem"), "tls_key": str(d / "key.pem")}
        return {}

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
                **tls_files(a.code),
                # where the server asks for client certificates, say so (the simulator presents them only then)
                **({"client_auth": kinds[a.server].client_auth} if kinds[a.server].client_auth != CLIENT_AUTH_OFF
                   else {}),
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


#: where shared memory is (Linux); :func:`check_records_dir` falls back to the work directory without it
SHM = Path("/dev/shm")
CHECK_RECORDS_PREFIX = "axis-checked-"


def check_records_dir(work_dir: Path, shm: Path = SHM) -> Path:
    """Where the endpoint host processes of ``work_dir`` record the documents they checked in full
    (``endpoints.checked``): ``<shm>/axis-checked-<uid>-<hash of the work directory>`` in shared memory, else
    ``<work dir>/checked``. ``axis up`` removes it when it stops."""
    if shm.is_dir() and os.access(shm, os.W_OK):
        name = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:16]
        return shm / f"{CHECK_RECORDS_PREFIX}{os.getuid()}-{name}"
    return work_dir / "checked"

