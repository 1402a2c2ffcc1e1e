"""Read ``connections.json`` (contract section 3): how to reach a running axis and act as any of its agencies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

DEFAULT_PATH = Path("axis-work") / "connections.json"


class ConnectionsError(ValueError):
    """connections.json missing or not in the contract's shape."""


@dataclass(frozen=True, slots=True)
class AgencyConn:
    code: str
    name: str
    server: str
    kind: str
    endpoint: str
    token: str
    key: str | None
    cert: str | None
    #: the agency's TLS client certificate (contract section 6), and whether its server asks for it
    tls_cert: str | None = None
    tls_key: str | None = None
    client_auth: str = "off"


@dataclass(frozen=True, slots=True)
class Connections:
    ca: str | None
    crl: str | None
    admin_url: str
    admin_token: str | None
    agencies: dict[str, AgencyConn]
    path: Path | None = None

    @property
    def servers(self) -> dict[str, tuple[str, str]]:
        """server id → (kind, endpoint URL)."""
        return {a.server: (a.kind, a.endpoint) for a in self.agencies.values()}


def from_dict(raw: Any, *, path: Path | None = None) -> Connections:
    where = str(path or "connections")
    if not isinstance(raw, dict) or not isinstance(raw.get("agencies"), list):
        raise ConnectionsError(f"{where}: expected an object with an 'agencies' list")
    admin = raw.get("admin") or {}
    if not isinstance(admin, dict) or not admin.get("url"):
        raise ConnectionsError(f"{where}: admin.url missing")
    agencies: dict[str, AgencyConn] = {}
    for i, a in enumerate(raw["agencies"]):
        try:
            conn = AgencyConn(
                code=str(a["code"]),
                name=str(a.get("name") or ""),
                server=str(a["server"]),
                kind=str(a.get("kind") or "dedicated"),
                endpoint=str(a["endpoint"]).rstrip("/"),
                token=str(a["token"]) if a.get("token") else "",
                key=str(a["key"]) if a.get("key") else None,
                cert=str(a["cert"]) if a.get("cert") else None,
                tls_cert=str(a["tls_cert"]) if a.get("tls_cert") else None,
                tls_key=str(a["tls_key"]) if a.get("tls_key") else None,
                client_auth=str(a.get("client_auth") or "off"),
            )
        except (KeyError, TypeError) as exc:
            raise ConnectionsError(f"{where}: agencies[{i}] lacks {exc}") from exc
        if not conn.token:
            raise ConnectionsError(f"{where}: agency {conn.code} has no token")
        agencies[conn.code] = conn
    return Connections(
        ca=raw.get("ca"),
        crl=raw.get("crl"),
        admin_url=str(admin["url"]).rstrip("/"),
        admin_token=admin.get("token"),
        agencies=agencies,
        path=path,
    )


def load(path: str | Path = DEFAULT_PATH) -> Connections:
    p = Path(path)
    if not p.is_file():
        raise ConnectionsError(f"{p}: not found — is the axis running? (`axis up` or `axis demo` writes it)")
    try:
        raw = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConnectionsError(f"{p}: not JSON: {exc}") from exc
    return from_dict(raw, path=p)
