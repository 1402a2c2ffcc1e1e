"""Edits of ``config.yaml`` for the agency lifecycle (``axis agency add|retire``, :mod:`axis.ops.agencies`): add an
agency (and its server when new), retire one. Written atomically, only if the result validates, and the
directory's version journal advanced (agency software syncing with ``?since=`` sees the change); a code change is
:func:`axis.config.renames.rename_agency`, a new certificate changes no configuration (same paths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from axis.config.directory_journal import sync_journal
from axis.config.model import Config, ConfigError
from axis.config.moves import YamlMap, _agency_entry, _ensure_server, _load_raw, _write_validated


def _yaml_agencies(raw: YamlMap, path: Path) -> list[YamlMap]:
    if raw.get("agencies_file"):
        raise ConfigError(f"{path}: the agencies are in agencies_file (a CSV): edit it and reload instead")
    agencies: list[YamlMap] = raw.setdefault("agencies", [])
    return agencies


def add_agency(config_path: str | Path, code: str, name: str, server_id: str, *, token_sha256: str,
               key: str | Path | None, cert: str | Path | None, holds_key: bool = True, kind: str = "dedicated",
               port: int | None = None) -> Config:
    """Write the configuration with agency ``code`` added on server ``server_id`` (added with ``kind`` and
    ``port`` — default one above the highest — when it is new; host and inbox as the first server's), its token
    digest and signing key/certificate paths (relative to the file's directory when inside it); with
    ``holds_key`` the server keeps its key (``servers[].keys``). Raises :class:`ConfigError` when the code is
    taken or the result does not validate (e.g. a dedicated server that already serves an agency)."""
    path = Path(config_path).expanduser().resolve()
    raw = _load_raw(path)
    agencies = _yaml_agencies(raw, path)
    for other in agencies:
        if isinstance(other, dict) and (str(other.get("code")) == code
                                        or code in [str(c) for c in other.get("aliases") or ()]):
            raise ConfigError(f"the code {code} is already agency {other.get('code')}'s")
    servers = raw.get("servers") or []
    near: YamlMap = servers[0] if servers and isinstance(servers[0], dict) else {}
    server = _ensure_server(raw, server_id, near, kind=kind, host=None, port=port, inbox_url=None)

    def rel(p: str | Path | None) -> str | None:
        if p is None:
            return None
        p = Path(p)
        try:
            return str(p.resolve().relative_to(path.parent))
        except ValueError:
            return str(p)

    entry: dict[str, Any] = {"code": code, "name": name, "server": server_id, "token_sha256": token_sha256}
    if key is not None and cert is not None:
        entry |= {"key": rel(key), "cert": rel(cert)}
    agencies.append(entry)
    if holds_key and key is not None:
        server["keys"] = [*(k for k in server.get("keys") or [] if k != code), code]
    config = _write_validated(raw, path, None)
    sync_journal(config)  # the directory's next version lists it (axis.config.directory_journal)
    return config


def retire_agency(config_path: str | Path, code: str) -> Config:
    """Write the configuration with agency ``code`` retired (``active: false``): it stays in the directory (agency
    software sees it inactive), its token still reads its inbox, the router refuses documents from and to it."""
    path = Path(config_path).expanduser().resolve()
    raw = _load_raw(path)
    _yaml_agencies(raw, path)
    entry = _agency_entry(raw, code, path)
    entry["active"] = False
    config = _write_validated(raw, path, None)
    sync_journal(config)  # the directory's next version shows it inactive
    return config


def restore(config_path: str | Path, original: bytes) -> None:
    """Put back the file's earlier bytes (a failed step before anything was routed with the new file)."""
    path = Path(config_path)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(original)
    tmp.replace(path)
