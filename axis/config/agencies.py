"""Edits of ``config.yaml`` (and ``agencies_file``) for the agency lifecycle (``axis agency add|retire``,
:mod:`axis.ops.agencies`): add an agency (and its server when new), retire one. Written atomically, only if the
result validates, and the directory's version journal advanced (agency software syncing with ``?since=`` sees the
change); a code change is :func:`axis.config.renames.rename_agency`, a new certificate changes no configuration
(same paths).

A national directory keeps its agencies in ``agencies_file`` (a CSV, above ``CSV_AGENCIES_ABOVE``): a new agency is
added to the YAML ``agencies:`` list (the loader reads both), a retirement rewrites the agency's CSV row with
``active`` false. :class:`Snapshot` keeps both files' bytes so that a failed step puts them back.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axis.config.directory_journal import sync_journal
from axis.config.loader import load_config
from axis.config.model import Config, ConfigError
from axis.config.moves import YamlMap, _ensure_server, _load_raw, _write_validated


def _csv_path(raw: YamlMap, path: Path) -> Path | None:
    name = raw.get("agencies_file")
    if not name:
        return None
    p = Path(str(name)).expanduser()
    return p if p.is_absolute() else path.parent / p


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The bytes of ``config.yaml`` and of its ``agencies_file`` (if any) before a change: :meth:`restore` puts
    them back."""

    path: Path
    config: bytes
    csv_path: Path | None = None
    csv: bytes | None = None

    @classmethod
    def take(cls, config_path: str | Path) -> Snapshot:
        path = Path(config_path).expanduser().resolve()
        csv_path = _csv_path(_load_raw(path), path)
        data = csv_path.read_bytes() if csv_path is not None and csv_path.is_file() else None
        return cls(path, path.read_bytes(), csv_path if data is not None else None, data)

    def restore(self) -> None:
        _atomic(self.path, self.config)
        if self.csv_path is not None and self.csv is not None:
            _atomic(self.csv_path, self.csv)


def add_agency(config_path: str | Path, code: str, name: str, server_id: str, *, token_sha256: str,
               key: str | Path | None, cert: str | Path | None, holds_key: bool = True, kind: str = "dedicated",
               port: int | None = None) -> Config:
    """Write the configuration with agency ``code`` added on server ``server_id`` (added with ``kind`` and
    ``port`` — default one above the highest — when it is new; host and inbox as the first server's), its token
    digest and signing key/certificate paths (relative to the file's directory when inside it); with
    ``holds_key`` the server keeps its key (``servers[].keys``). Raises :class:`ConfigError` when the code is
    taken (an agency's, or a former code) or the result does not validate (e.g. a dedicated server that already
    serves an agency); nothing is written then."""
    path = Path(config_path).expanduser().resolve()
    raw = _load_raw(path)
    agencies: list[YamlMap] = raw.setdefault("agencies", []) or []
    raw["agencies"] = agencies
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
    try:
        config = _write_validated(raw, path, None)  # a taken code: "duplicate agency code", nothing written
    except ConfigError as exc:
        if "duplicate agency code" in str(exc) or "alias" in str(exc):
            raise ConfigError(f"the code {code} is taken: {exc}") from None
        raise
    sync_journal(config)  # the directory's next version lists it (axis.config.directory_journal)
    return config


def retire_agency(config_path: str | Path, code: str) -> Config:
    """Write the configuration with agency ``code`` retired (``active: false``; in its ``agencies_file`` row when
    it is listed there): it stays in the directory (agency software sees it inactive), its token still reads its
    inbox, the router refuses documents from and to it. Validated after writing; put back when it does not load."""
    path = Path(config_path).expanduser().resolve()
    raw = _load_raw(path)
    entry = next((a for a in raw.get("agencies") or [] if isinstance(a, dict) and str(a.get("code")) == code), None)
    if entry is not None:
        entry["active"] = False
        config = _write_validated(raw, path, None)
    else:
        csv_path = _csv_path(raw, path)
        if csv_path is None or not csv_path.is_file():
            raise ConfigError(f"agency {code} is not in the agencies of {path}")
        before = Snapshot.take(path)
        _atomic(csv_path, _retired_csv(csv_path.read_text(encoding="utf-8"), code, csv_path))
        try:
            config = load_config(path)
        except ConfigError:
            before.restore()
            raise
    sync_journal(config)  # the directory's next version shows it inactive
    return config


def _retired_csv(text: str, code: str, where: Path) -> bytes:
    """The CSV ``text`` with ``active`` false in the row of ``code`` (the column added when missing)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = list(reader.fieldnames or [])
    rows = list(reader)
    row = next((r for r in rows if r.get("code") == code), None)
    if row is None:
        raise ConfigError(f"agency {code} is not in {where}")
    if "active" not in fields:
        fields.append("active")
    row["active"] = "false"
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
