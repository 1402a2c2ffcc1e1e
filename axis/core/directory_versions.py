"""Versions of the directory for agency software (contract section 7, ``GET /v1/directory?since=VERSION``): pure.

The directory itself (:class:`axis.core.directory.Directory`) is a snapshot. Agency software syncs it by version,
as the VPCP SDK does: it keeps the version it last saw and asks for what changed after it. A
:class:`DirectoryJournal` remembers, for every agency code, the listing published and the version at which it
last changed, and for every code that left the directory the version at which it left:

- :func:`listings` — what agency software sees of a directory: per agency ``code``, ``name``, the ``kind`` of the
  server it sits on, ``active`` (False once retired) and ``aliases`` (its former codes);
- :func:`advance` — compare a journal with the current listings: when anything differs the version goes up by
  exactly one, and every added or changed agency, and every code gone, is stamped with it. The same listings
  give the same journal back (idempotent: any process may advance the journal of the configuration it loaded, a
  second one finds nothing to do). A code that comes back leaves ``deleted``;
- :func:`changes_since` — the answer to ``?since=``: the version, the agencies changed after ``since`` and the
  codes deleted after it; no ``since`` (or 0) lists every agency and no deletion; a ``since`` above the current
  version (a journal restored from an older backup, another axis) answers the full listing too, marked
  ``"full": true``, so the client resyncs instead of missing changes.

A code change (``axis.config.renames.rename_agency``): the new code is a new entry carrying the old code in its
``aliases``, and the old code is ``deleted`` — the VPCP SDK's ``oldCode`` → new code mapping. Routing accepts the
alias (:meth:`axis.core.directory.Directory.resolve`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from axis.core.directory import Directory

JOURNAL_FORMAT = 1


class JournalError(ValueError):
    """A stored journal that cannot be read back (the message says why)."""


@dataclass(frozen=True, slots=True)
class Listing:
    """One agency as agency software sees it."""

    code: str
    name: str
    kind: str
    active: bool = True
    aliases: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "kind": self.kind, "active": self.active,
                "aliases": list(self.aliases)}


def listings(directory: Directory) -> dict[str, Listing]:
    """Every agency of ``directory``, as published (code → listing)."""
    servers = directory.servers
    return {code: Listing(code, a.name, servers[a.server].kind, a.active, a.aliases)
            for code, a in directory.agencies.items()}


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class DirectoryJournal:
    """The published directory and its history of versions (see the module docstring). Immutable."""

    version: int = 0
    #: code → (the version at which its listing last changed, the listing)
    entries: Mapping[str, tuple[int, Listing]] = field(default_factory=lambda: MappingProxyType({}))
    #: code → the version at which it left the directory
    deleted: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def listing(self, code: str) -> Listing | None:
        entry = self.entries.get(code)
        return None if entry is None else entry[1]

    # -- storage (bytes in, bytes out; the file is axis.config.directory_journal's business) ----------------------
    def to_json(self) -> bytes:
        return orjson.dumps({
            "format": JOURNAL_FORMAT, "version": self.version,
            "agencies": [{"v": v, **item.as_json()} for v, item in sorted(self.entries.values(),
                                                                          key=lambda e: e[1].code)],
            "deleted": dict(sorted(self.deleted.items())),
        }, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> DirectoryJournal:
        try:
            raw = orjson.loads(data)
            if not isinstance(raw, dict) or raw.get("format") != JOURNAL_FORMAT:
                raise JournalError(f"not a directory journal of format {JOURNAL_FORMAT}")
            version = _int(raw["version"])
            entries: dict[str, tuple[int, Listing]] = {}
            for a in raw["agencies"]:
                item = Listing(str(a["code"]), str(a["name"]), str(a["kind"]), bool(a["active"]),
                               tuple(str(c) for c in a["aliases"]))
                entries[item.code] = (_int(a["v"]), item)
            deleted = {str(code): _int(v) for code, v in dict(raw["deleted"]).items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, JournalError):
                raise
            raise JournalError(f"a malformed directory journal: {type(exc).__name__}: {exc}") from None
        if any(v > version for v, _ in entries.values()) or any(v > version for v in deleted.values()):
            raise JournalError("a directory journal with entries newer than its version")
        return cls(version, _frozen(entries), _frozen(deleted))


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a version")
    return value


def advance(journal: DirectoryJournal, current: Mapping[str, Listing]) -> DirectoryJournal:
    """The journal after ``current`` (code → listing): ``journal`` itself when nothing changed, else one version
    more with every new or changed listing and every vanished code stamped with it."""
    version = journal.version + 1
    entries = dict(journal.entries)
    deleted = dict(journal.deleted)
    changed = False
    for code, item in current.items():
        old = entries.get(code)
        if old is None or old[1] != item:
            entries[code] = (version, item)
            changed = True
        if deleted.pop(code, None) is not None:
            changed = True
    for code in [c for c in entries if c not in current]:
        del entries[code]
        deleted[code] = version
        changed = True
    if not changed:
        return journal
    return DirectoryJournal(version, _frozen(entries), _frozen(deleted))


def changes_since(journal: DirectoryJournal, since: int | None = None) -> dict[str, Any]:
    """``{"version", "agencies": [listing…], "deleted": [code…], "full"}``: what changed after ``since`` (see the
    module docstring); agencies and codes sorted by code."""
    full = not since or since > journal.version
    if full:
        agencies = [item for _, item in journal.entries.values()]
        deleted: list[str] = []
    else:
        assert since is not None
        agencies = [item for v, item in journal.entries.values() if v > since]
        deleted = sorted(code for code, v in journal.deleted.items() if v > since)
    agencies.sort(key=lambda item: item.code)
    return {"version": journal.version, "agencies": [item.as_json() for item in agencies], "deleted": deleted,
            "full": full}
