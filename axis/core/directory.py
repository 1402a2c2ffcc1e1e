"""The directory of agencies and servers: who is connected, and through which server.

Pure data (no I/O): built from records (usually the config file), validated once, then read-only with O(1)
lookups. Sized for ~120,000 agencies: slotted frozen dataclasses, interned server ids, plain dicts.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, cast

ServerKind = Literal["dedicated", "shared"]
SERVER_KINDS: tuple[str, ...] = ("dedicated", "shared")

#: QCVN 102:2016 form ``V1V2V3.Z1Z2.Y1Y2.XXX`` — level-1 code (letter + 2 digits) on the right, 1-3 lower groups
#: on the left (``000.00.00.G22``, ``000.00.13.H53``, ``28.22.H17``).
QCVN_CODE = re.compile(r"(?:[0-9A-Z]{2,3}\.){1,3}[A-Z][0-9]{2}")
#: Decision 20/2020/QĐ-TTg form: up to 35 characters, dot-separated groups of 0-9/A-Z, level-1 group leftmost
#: (``H55.242``, ``G22``).
QD20_CODE = re.compile(r"[A-Z][0-9]{2}(?:\.[0-9A-Z]{1,10})*")
MAX_CODE_LENGTH = 35
_SERVER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class DirectoryError(ValueError):
    """The directory data is inconsistent (the message says which entry and why)."""


def valid_agency_code(code: str) -> bool:
    """True when ``code`` is an agency identifier in either circulating form (edxml.md)."""
    if not isinstance(code, str) or not code or len(code) > MAX_CODE_LENGTH:
        return False
    return QCVN_CODE.fullmatch(code) is not None or QD20_CODE.fullmatch(code) is not None


@dataclass(frozen=True, slots=True)
class Server:
    """An endpoint server: ``dedicated`` (exactly one agency) or ``shared`` (many)."""

    id: str
    kind: ServerKind
    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = True  # HTTPS (contract section 6); False only with the configuration's ``tls: off``

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Agency:
    """A connected agency and the id of the server it is reached through."""

    code: str
    name: str
    server: str
    #: Servers that hosted the agency before a move: their in-flight status 01s are still authentic.
    moved_from: tuple[str, ...] = ()
    #: The agency's former codes (a code change keeps the old one as an alias: envelopes addressed to it reach the
    #: agency, its statistics stay continuous; :mod:`axis.core.directory_versions` publishes them).
    aliases: tuple[str, ...] = ()
    #: False once the agency is retired: it stays listed (``active: false``) for agency software.
    active: bool = True


class Directory:
    """Agencies and servers with O(1) lookups; immutable after construction."""

    __slots__ = ("_agencies", "_aliases", "_by_server", "_servers")

    def __init__(self, servers: Iterable[Server], agencies: Iterable[Agency]) -> None:
        srv: dict[str, Server] = {}
        for s in servers:
            if not isinstance(s.id, str) or not _SERVER_ID.fullmatch(s.id):
                raise DirectoryError(f"server id {s.id!r} is malformed (lowercase letters, digits, - and _)")
            if s.kind not in SERVER_KINDS:
                raise DirectoryError(f"server {s.id}: kind {s.kind!r} is not 'dedicated' or 'shared'")
            if s.id in srv:
                raise DirectoryError(f"server {s.id}: duplicate server id")
            srv[s.id] = s
        ags: dict[str, Agency] = {}
        by_server: dict[str, list[str]] = {sid: [] for sid in srv}
        for a in agencies:
            if not valid_agency_code(a.code):
                raise DirectoryError(f"agency {a.code!r}: malformed agency code (QCVN 102:2016 or QĐ 20/2020 form)")
            if a.code in ags:
                raise DirectoryError(f"agency {a.code}: duplicate agency code")
            members = by_server.get(a.server)
            if members is None:
                raise DirectoryError(f"agency {a.code}: unknown server {a.server!r}")
            if members and srv[a.server].kind == "dedicated":
                raise DirectoryError(
                    f"agency {a.code}: dedicated server {a.server} already serves {members[0]} "
                    "(a dedicated server has exactly one agency)"
                )
            members.append(a.code)
            ags[a.code] = a
        aliases: dict[str, str] = {}
        for a in ags.values():
            for old in a.aliases:
                if not valid_agency_code(old):
                    raise DirectoryError(f"agency {a.code}: alias {old!r} is not an agency code")
                if old in ags:
                    raise DirectoryError(f"agency {a.code}: alias {old} is the code of agency {ags[old].code}")
                if aliases.setdefault(old, a.code) != a.code:
                    raise DirectoryError(f"agency {a.code}: alias {old} is already an alias of {aliases[old]}")
        self._aliases: Mapping[str, str] = MappingProxyType(aliases)
        self._servers: Mapping[str, Server] = MappingProxyType(srv)
        self._agencies: Mapping[str, Agency] = MappingProxyType(ags)
        self._by_server: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {sid: tuple(codes) for sid, codes in by_server.items()}
        )

    @classmethod
    def from_records(
        cls, servers: Iterable[tuple[str, str]], agencies: Iterable[tuple[str, str, str]]
    ) -> Directory:
        """Build from plain tuples: servers ``(id, kind)``, agencies ``(code, name, server_id)``."""
        # the kind is a plain str here: cast, and checked by __init__ (DirectoryError for any other kind)
        srv = [Server(sys.intern(sid), cast(ServerKind, kind)) for sid, kind in servers]
        ids = {s.id: s.id for s in srv}
        return cls(srv, (Agency(code, name, ids.get(sid, sid)) for code, name, sid in agencies))

    # -- lookups ---------------------------------------------------------------------------------------------
    @property
    def agencies(self) -> Mapping[str, Agency]:
        return self._agencies

    @property
    def servers(self) -> Mapping[str, Server]:
        return self._servers

    def agency(self, code: str) -> Agency | None:
        return self._agencies.get(code)

    def server(self, server_id: str) -> Server | None:
        return self._servers.get(server_id)

    @property
    def aliases(self) -> Mapping[str, str]:
        """Former code → the agency's current code."""
        return self._aliases

    def resolve(self, code: str) -> Agency | None:
        """The agency whose code or former code (alias) is ``code`` (None when neither)."""
        a = self._agencies.get(code)
        if a is None:
            current = self._aliases.get(code)
            a = None if current is None else self._agencies[current]
        return a

    def current_code(self, code: str) -> str:
        """``code``, or the current code of the agency it is an alias of."""
        return self._aliases.get(code, code)

    def server_of(self, code: str) -> Server | None:
        """The server that hosts agency ``code`` (None when the agency is unknown)."""
        a = self._agencies.get(code)
        return None if a is None else self._servers[a.server]

    def agencies_on(self, server_id: str) -> tuple[str, ...]:
        return self._by_server.get(server_id, ())

    def counts(self) -> dict[str, int]:
        """Agencies in total and by the kind of server they sit on, and servers by kind."""
        by_kind = Counter(self._servers[a.server].kind for a in self._agencies.values())
        srv_kind = Counter(s.kind for s in self._servers.values())
        return {
            "agencies": len(self._agencies),
            "dedicated": by_kind.get("dedicated", 0),
            "shared": by_kind.get("shared", 0),
            "servers": len(self._servers),
            "dedicated_servers": srv_kind.get("dedicated", 0),
            "shared_servers": srv_kind.get("shared", 0),
        }

    def __len__(self) -> int:
        return len(self._agencies)

    def __contains__(self, code: object) -> bool:
        return code in self._agencies
