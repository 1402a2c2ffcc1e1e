"""Backups of an axis work directory and their restore (``axis backup``, ``axis restore``; contract section 7).

A backup is one file, encrypted and authenticated as a whole with a passphrase (:mod:`axis.core.backup_crypto`):
a tar stream of

- ``work/<path>`` — every file of the work directory: config.yaml, agencies.csv, the directory journal, the PKI
  (the CA, every key), connections.json, broker-users.json, secrets the configuration names — but not ``logs/``,
  lock, temporary, socket and SQLite journal (``-wal``, ``-shm``, ``-journal``) files. Every SQLite database in
  it (the statistics, the inbox stores, the evidence log, the reminders' log: any file that starts like one) is
  copied with SQLite's online backup API — a transactionally consistent snapshot of each, taken while the axis
  runs; inboxes first, the statistics next, the evidence log last (its stored leaves follow the inboxes' commits);
- ``external/<n>-<name>`` — SQLite databases the configuration keeps outside the work directory (same API);
- ``postgresql/<n>.dump`` — databases the configuration keeps in PostgreSQL: ``pg_dump --format=custom`` (one
  consistent snapshot per database);
- ``manifest.json`` (last) — every member's SHA-256 and size, the databases and where they were, and a summary
  (evidence log size and latest tree head, statistics totals, inbox rows) checked again after a restore.

A restore refuses a wrong passphrase or any altered, truncated or reordered byte before anything is written to
the target; it extracts into a temporary directory beside the target, checks the manifest (every member, its
hash, nothing more) and every SQLite snapshot (``PRAGMA integrity_check``), and only then moves the files into
place. Paths inside the old work directory are rewritten to the new one in config.yaml and connections.json;
external SQLite databases are restored into the new work directory. PostgreSQL dumps are restored into the URLs
the restored configuration names — over what is there, so only with ``overwrite_databases``.

Not in a backup: the messages queued in RabbitMQ at that moment (in flight between components: the broker's
own state), and logs.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from axis.config import ConfigError, load_config
from axis.core.backup_crypto import BackupCryptoError, OpeningReader, SealingWriter

FORMAT = "axis-backup"
VERSION = 1
PASSPHRASE_ENV = "AXIS_BACKUP_PASSPHRASE"
SQLITE_MAGIC = b"SQLite format 3\x00"
SKIP_DIRS = {"logs", "__pycache__"}
SKIP_SUFFIXES = (".lock", ".tmp", "-wal", "-shm", "-journal", ".sock", ".pid")


class BackupError(Exception):
    """A backup or restore refused: ``kind`` is ``usage`` (bad arguments, exit 2), ``wrong_passphrase`` or
    ``invalid`` (an altered or damaged backup; both exit 1)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def read_passphrase(passphrase_file: Path | None, env: Mapping[str, str] | None = None) -> str:
    """The passphrase: the first line of ``passphrase_file``, else ``$AXIS_BACKUP_PASSPHRASE``."""
    env = os.environ if env is None else env
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BackupError("usage", f"cannot read the passphrase file {passphrase_file}: {exc.strerror}") from None
        value = text[0] if text else ""
    else:
        value = env.get(PASSPHRASE_ENV, "")
    if len(value) < 8:
        raise BackupError("usage", f"a passphrase of at least 8 characters is needed: --passphrase-file FILE or "
                                   f"{PASSPHRASE_ENV}")
    return value


# -- databases ---------------------------------------------------------------------------------------------------
def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///…``, ``sqlite+aiosqlite:///…``); None for other databases."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            return None if rest in ("", ":memory:") else Path(rest)
    return None


def libpq_url(url: str) -> str:
    """``postgresql+asyncpg://…`` → ``postgresql://…`` (what pg_dump and pg_restore take)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, *parts[2:]))


def is_sqlite_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def snapshot_sqlite(src: Path, dst: Path) -> None:
    """A transactionally consistent copy of a live SQLite database (the online backup API; WAL readers and the
    writer keep going)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target, pages=4096, sleep=0.005)
        finally:
            target.close()
    finally:
        source.close()


def _order(rel: str, config_dbs: Mapping[Path, str]) -> int:
    """Snapshot order: inboxes, then the rest, the statistics, the evidence log last."""
    role = config_dbs.get(Path(rel), "")
    return {"inbox": 0, "": 1, "stats": 2, "evidence": 3}.get(role, 1)


def _summary_sqlite(files: Mapping[str, tuple[str, Path]]) -> dict[str, Any]:
    """What the snapshots hold (read back from them): log leaves and latest tree head, statistics, inbox rows."""
    out: dict[str, Any] = {"inbox_rows": 0}
    for role, path in files.values():
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if role == "evidence" and "axis_log_leaves" in tables:  # the log's size (archived leaves included)
                out["log_leaves"] = db.execute("SELECT coalesce(max(idx) + 1, 0) FROM axis_log_leaves").fetchone()[0]
                sth = db.execute("SELECT max(tree_size) FROM axis_log_sth").fetchone() if "axis_log_sth" in tables \
                    else (None,)
                out["sth_tree_size"] = sth[0]
            if role == "stats":
                for table in ("axis_accepted", "axis_delivered", "axis_refused"):
                    if table in tables:
                        out[table] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if role == "inbox" and "axis_received" in tables:
                out["inbox_rows"] += db.execute("SELECT count(*) FROM axis_received").fetchone()[0]
        finally:
            db.close()
    return out


# -- backup ------------------------------------------------------------------------------------------------------
def _referenced_files(config: Any) -> Iterator[Path]:
    """The files the configuration names (the PKI, keys and certificates, TLS, the evidence log's key)."""
    for p in (config.pki.ca, config.pki.crl, config.tls.cert if config.tls.enabled else None,
              config.tls.key if config.tls.enabled else None, config.evidence.key, config.evidence.cert):
        if p is not None:
            yield p
    for a in config.agencies:
        for p in (a.key, a.cert):
            if p is not None:
                yield p


@dataclass
class _Member:
    name: str
    path: Path
    kind: str  # file | sqlite | postgresql


def _walk(work_dir: Path, exclude: set[Path]) -> Iterator[Path]:
    for root, dirs, files in os.walk(work_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".restoring-"))
        for name in sorted(files):
            path = Path(root) / name
            if path in exclude or name.endswith(SKIP_SUFFIXES) or not path.is_file() or path.is_symlink():
                continue
            yield path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def take_backup(work_dir: Path, out: Path, passphrase: str, *, config_path: Path | None = None,
                pg_dump: str = "pg_dump") -> dict[str, Any]:
    """Write the backup of ``work_dir`` to ``out`` (atomically, mode 0600) and return its manifest."""
    work_dir = work_dir.expanduser().resolve()
    out = out.expanduser().resolve()
    config_path = (config_path or work_dir / "config.yaml").expanduser().resolve()
    if not config_path.is_file():
        raise BackupError("usage", f"{config_path} not found: --work-dir must hold the axis's config.yaml")
    if out.exists():
        raise BackupError("usage", f"{out} exists: choose another file")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise BackupError("usage", str(exc)) from None
    outside = sorted({str(p) for p in _referenced_files(config) if not p.resolve().is_relative_to(work_dir)})
    if not config_path.is_relative_to(work_dir):
        outside.insert(0, str(config_path))
    if outside:
        raise BackupError("usage", f"files the configuration needs are outside {work_dir}, so a backup of it would "
                                   f"not restore: {', '.join(outside[:5])}{' …' if len(outside) > 5 else ''}")
    roles: dict[str, str] = {config.stats_url: "stats", config.evidence.url: "evidence"}
    for server in config.servers:
        roles.setdefault(server.inbox_url, "inbox")
    by_file: dict[Path, str] = {}
    external: list[tuple[Path, str, str]] = []
    postgres: list[tuple[str, str]] = []
    for url, role in roles.items():
        path = sqlite_file(url)
        if path is None:
            postgres.append((url, role))
        elif path.resolve().is_relative_to(work_dir):
            by_file[path.resolve().relative_to(work_dir)] = role
        elif path.exists():
            external.append((path.resolve(), url, role))

    with tempfile.TemporaryDirectory(prefix="axis-backup-", dir=out.parent) as tmp_name:
        tmp = Path(tmp_name)
        members: list[_Member] = []
        snapshots: dict[str, tuple[str, Path]] = {}
        found = list(_walk(work_dir, {out}))
        plain = [p for p in found if not is_sqlite_file(p)]
        dbs = sorted((p for p in found if is_sqlite_file(p)),
                     key=lambda p: (_order(str(p.relative_to(work_dir)), by_file), str(p)))
        for path in plain:
            members.append(_Member(f"work/{path.relative_to(work_dir)}", path, "file"))
        databases: list[dict[str, Any]] = []
        for i, path in enumerate(dbs):
            rel = path.relative_to(work_dir)
            snap = tmp / f"db-{i}"
            snapshot_sqlite(path, snap)
            name = f"work/{rel}"
            members.append(_Member(name, snap, "sqlite"))
            snapshots[name] = (by_file.get(rel, ""), snap)
            databases.append({"kind": "sqlite", "member": name, "role": by_file.get(rel, "")})
        for i, (path, _url, role) in enumerate(external):
            snap = tmp / f"ext-{i}"
            snapshot_sqlite(path, snap)
            name = f"external/{i}-{path.name}"
            members.append(_Member(name, snap, "sqlite"))
            snapshots[name] = (role, snap)
            databases.append({"kind": "sqlite", "member": name, "role": role, "path": str(path)})
        for i, (url, role) in enumerate(postgres):
            dump = tmp / f"pg-{i}.dump"
            try:
                subprocess.run([pg_dump, "--format=custom", "--no-owner", f"--file={dump}", libpq_url(url)],
                               check=True, capture_output=True, timeout=3600)
            except FileNotFoundError:
                raise BackupError("usage", f"{pg_dump} not found: PostgreSQL databases ({role}) are dumped with "
                                           "pg_dump") from None
            except subprocess.CalledProcessError as exc:
                raise BackupError("usage", f"pg_dump of the {role} database {without_password(url)} failed: "
                                           f"{exc.stderr.decode(errors='replace').strip()[:500]}") from None
            name = f"postgresql/{i}.dump"
            members.append(_Member(name, dump, "postgresql"))
            databases.append({"kind": "postgresql", "member": name, "role": role, "url": without_password(url)})

        listed = [{"member": m.name, "kind": m.kind, "size": m.path.stat().st_size, "sha256": _sha256(m.path)}
                  for m in members]
        manifest = {"format": FORMAT, "version": VERSION, "created_at": int(time.time()), "work_dir": str(work_dir),
                    "config": str(config_path.relative_to(work_dir)) if config_path.is_relative_to(work_dir)
                    else None, "files": listed, "databases": databases, "summary": _summary_sqlite(snapshots)}
        partial = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                sealed = SealingWriter(raw, passphrase)
                with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    for m in members:
                        info = tarfile.TarInfo(m.name)
                        info.size = m.path.stat().st_size
                        info.mode = 0o600
                        with m.path.open("rb") as f:
                            tar.addfile(info, f)
                    body = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
                    info = tarfile.TarInfo("manifest.json")
                    info.size = len(body)
                    tar.addfile(info, io.BytesIO(body))
                sealed.close()
                raw.flush()
                os.fsync(raw.fileno())
            partial.replace(out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


# -- restore -----------------------------------------------------------------------------------------------------
def _safe_member(name: str) -> Path:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] not in ("work", "external", "postgresql",
                                                                               "manifest.json"):
        raise BackupError("invalid", f"the backup holds an unexpected member {name!r}")
    return p


def _extract(src: Path, tmp: Path, passphrase: str) -> dict[str, str]:
    """Decrypt and unpack into ``tmp``: member name → SHA-256 of what was written."""
    hashes: dict[str, str] = {}
    try:
        with src.open("rb") as raw:
            reader = OpeningReader(raw, passphrase)
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for info in tar:
                    rel = _safe_member(info.name)
                    if not info.isfile() or info.name in hashes:
                        raise BackupError("invalid", f"the backup holds an unexpected entry {info.name!r}")
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fileobj = tar.extractfile(info)
                    assert fileobj is not None
                    h = hashlib.sha256()
                    with target.open("wb") as f:
                        for block in iter(lambda: fileobj.read(1 << 20), b""):  # noqa: B023 (used at once)
                            h.update(block)
                            f.write(block)
                    os.chmod(target, 0o600)
                    hashes[info.name] = h.hexdigest()
            reader.read()  # to the end: the last chunk must authenticate (a truncated file is refused)
    except BackupCryptoError as exc:
        raise BackupError("wrong_passphrase" if exc.wrong_passphrase else "invalid", str(exc)) from None
    except tarfile.TarError as exc:
        raise BackupError("invalid", f"the backup's archive is damaged: {exc}") from None
    return hashes


def _check(tmp: Path, hashes: Mapping[str, str]) -> dict[str, Any]:
    if "manifest.json" not in hashes:
        raise BackupError("invalid", "the backup has no manifest")
    try:
        manifest = orjson.loads((tmp / "manifest.json").read_bytes())
        listed = {f["member"]: f for f in manifest["files"]}
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise BackupError("invalid", "not an axis backup of a known version")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BackupError("invalid", f"the backup's manifest is malformed: {exc}") from None
    extra = set(hashes) - set(listed) - {"manifest.json"}
    missing = set(listed) - set(hashes)
    if extra or missing:
        raise BackupError("invalid", f"the backup does not match its manifest (missing {sorted(missing)[:5]}, "
                                     f"unlisted {sorted(extra)[:5]})")
    for name, entry in listed.items():
        if hashes[name] != entry["sha256"]:
            raise BackupError("invalid", f"{name}: its SHA-256 differs from the manifest's")
        if entry["kind"] == "sqlite":
            db = sqlite3.connect(f"file:{tmp / name}?mode=ro", uri=True)
            try:
                result = db.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                db.close()
            if result != "ok":
                raise BackupError("invalid", f"{name}: the SQLite snapshot fails its integrity check: {result}")
    if not any(name.startswith("work/") and name.endswith(str(manifest.get("config") or "config.yaml"))
               for name in listed):
        raise BackupError("invalid", "the backup holds no config.yaml")
    return dict(manifest)


def restore_backup(src: Path, work_dir: Path, passphrase: str, *, overwrite_databases: bool = False,
                   pg_restore: str = "pg_restore") -> dict[str, Any]:
    """Restore backup ``src`` into ``work_dir`` (absent or empty) and return its manifest (see the module
    docstring). Raises :class:`BackupError`; nothing is written to ``work_dir`` unless everything checks."""
    src = src.expanduser().resolve()
    work_dir = work_dir.expanduser().resolve()
    if not src.is_file():
        raise BackupError("usage", f"{src} not found")
    if work_dir.exists() and (not work_dir.is_dir() or any(work_dir.iterdir())):
        raise BackupError("usage", f"{work_dir} exists and is not empty: restore into a new directory")
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = work_dir.parent / f".restoring-{work_dir.name}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    try:
        hashes = _extract(src, tmp, passphrase)
        manifest = _check(tmp, hashes)
        dumps = [d for d in manifest["databases"] if d["kind"] == "postgresql"]
        if dumps and not overwrite_databases:
            raise BackupError("usage", f"the backup holds {len(dumps)} PostgreSQL database(s) "
                                       f"({', '.join(d['url'] for d in dumps)}): restoring them replaces what the "
                                       "restored configuration's URLs hold; pass --overwrite-databases")
        old = str(manifest["work_dir"])
        renames: dict[str, str] = {old: str(work_dir)}
        for d in manifest["databases"]:
            if d["kind"] == "sqlite" and d.get("path"):
                target = work_dir / Path(d["member"]).name
                renames[str(d["path"])] = str(target)
        staged = tmp / "work"
        for d in manifest["databases"]:  # external SQLite files join the work directory
            if d["kind"] == "sqlite" and d.get("path"):
                shutil.move(str(tmp / d["member"]), str(staged / Path(d["member"]).name))
        for name in ("config.yaml", "connections.json", str(manifest.get("config") or "config.yaml")):
            path = staged / name
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                for before in sorted(renames, key=len, reverse=True):  # the longest (most specific) first
                    text = text.replace(before, renames[before])
                path.write_text(text, encoding="utf-8")
        if work_dir.exists():
            work_dir.rmdir()
        staged.replace(work_dir)
        if dumps:
            config = load_config(work_dir / str(manifest.get("config") or "config.yaml"))
            urls = {without_password(u): u for u in (config.stats_url, config.evidence.url,
                                                     *(s.inbox_url for s in config.servers))}
        for d in dumps:
            url = urls.get(d["url"], "")
            if not url:
                raise BackupError("usage", f"the restored configuration names no database {d['url']} any more")
            try:
                subprocess.run([pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
                                f"--dbname={libpq_url(url)}", str(tmp / d["member"])],
                               check=True, capture_output=True, timeout=3600)
            except (FileNotFoundError, subprocess.CalledProcessError) as exc:
                stderr = getattr(exc, "stderr", b"") or b""
                raise BackupError("usage", f"pg_restore into {without_password(url)} failed: "
                                           f"{stderr.decode(errors='replace').strip()[:500] or exc}") from None
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
