"""Edits of ``config.yaml`` for moving an agency between servers: announce the move, then make it (validated before
the file is replaced)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from axis.config.loader import config_from_dict
from axis.config.model import Config, ConfigError, _Loader

#: A mapping of the YAML file as loaded (its values are whatever YAML holds: checked by config_from_dict).
YamlMap = dict[str, Any]


def _load_raw(path: Path) -> YamlMap:
    raw = yaml.load(path.read_bytes(), Loader=_Loader)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return raw


def _agency_entry(raw: Mapping[str, Any], code: str, path: Path) -> YamlMap:
    entry = next((a for a in raw.get("agencies") or [] if isinstance(a, dict) and str(a.get("code")) == code), None)
    if entry is None:
        raise ConfigError(f"agency {code} is not in the agencies of {path} (agencies_file: edit the CSV)")
    return entry


def _ensure_server(raw: YamlMap, server_id: str, near: Mapping[str, Any], *, kind: str, host: str | None,
                   port: int | None, inbox_url: str | None) -> YamlMap:
    """The entry of server ``server_id``, added (host of ``near``, port one above the highest) when missing."""
    servers: list[YamlMap] = raw.setdefault("servers", [])
    found = next((s for s in servers if str(s.get("id")) == server_id), None)
    if found is not None:
        return found
    entry: YamlMap = {
        "id": server_id, "kind": kind, "host": host or near.get("host", "127.0.0.1"),
        "port": port if port is not None else max([int(s.get("port", 0)) for s in servers] or [8700]) + 1,
        "inbox_url": inbox_url or f"sqlite+aiosqlite:///inbox-{server_id}.db", "keys": [],
    }
    servers.append(entry)
    return entry


def _write_validated(raw: YamlMap, path: Path, out: str | Path | None) -> Config:
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
    """First half of a live move (axis.ops.livemove): add server ``server_id`` if it is new (as
    :func:`move_agency` would) and list it in the agency's ``moved_from`` while the agency stays where it is.
    Routers reloaded with this file already accept the agency's statuses from its future server, so a router
    that has not yet reloaded the final file never refuses them. Written atomically, only if it validates."""
    path = Path(config_path).expanduser().resolve()
    raw = _load_raw(path)
    entry = _agency_entry(raw, code, path)
    old_id = str(entry["server"])
    old: YamlMap = next((s for s in raw.get("servers") or [] if str(s.get("id")) == old_id), {})
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
    servers: list[YamlMap] = raw.setdefault("servers", [])
    old_id = str(entry["server"])
    old: YamlMap = next((s for s in servers if str(s.get("id")) == old_id), {})
    new = _ensure_server(raw, server_id, old, kind=kind, host=host, port=port, inbox_url=inbox_url)
    entry["server"] = server_id
    if old_id != server_id:
        entry["moved_from"] = [*(s for s in entry.get("moved_from") or () if s != server_id and s != old_id), old_id]
    if code in (old.get("keys") or []):
        old["keys"] = [k for k in old["keys"] if k != code]
        new["keys"] = [*(new.get("keys") or []), code]
    return _write_validated(raw, path, out)
