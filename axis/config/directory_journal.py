"""The directory's version journal on disk: ``<config dir>/directory-journal.json``
(:mod:`axis.core.directory_versions`).

:func:`sync_journal` advances the stored journal to a loaded configuration's directory and returns it. Every
process that serves ``GET /v1/directory`` (the endpoint hosts, at start and on each reload) and every command
that changes the directory (``axis.config.renames.rename_agency``, the agency lifecycle commands) calls it; advancing is
idempotent, and an exclusive lock on ``directory-journal.lock`` serializes the read-advance-write, so processes
reloading the same file at once agree on one version. Changes made by editing config.yaml by hand are picked
up the same way, at the next reload. Without a configuration file (a configuration built in memory) the journal
lives in memory only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from axis.config.model import Config, ConfigError
from axis.core.directory_versions import DirectoryJournal, JournalError, advance, listings

JOURNAL_FILE = "directory-journal.json"
LOCK_FILE = "directory-journal.lock"


def journal_path(config: Config) -> Path | None:
    """Where ``config``'s journal is kept (None for a configuration without a file)."""
    return None if config.path is None else config.path.parent / JOURNAL_FILE


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_journal(path: Path) -> DirectoryJournal:
    """The stored journal (an empty one, version 0, when there is none yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return DirectoryJournal()
    except OSError as exc:
        raise ConfigError(f"cannot read the directory journal {path}: {exc}") from None
    try:
        return DirectoryJournal.from_json(data)
    except JournalError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def sync_journal(config: Config) -> DirectoryJournal:
    """The journal advanced to ``config``'s directory (written back when it changed)."""
    current = listings(config.directory)
    path = journal_path(config)
    if path is None:
        return advance(DirectoryJournal(), current)
    with _locked(path.parent):
        journal = read_journal(path)
        advanced = advance(journal, current)
        if advanced is not journal:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(advanced.to_json())
            tmp.replace(path)
    return advanced
