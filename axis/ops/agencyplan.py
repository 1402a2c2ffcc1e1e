"""The agency lifecycle's decisions, without I/O: is a request to add, retire, rename or re-certify an agency
acceptable against the current configuration, and what exactly will be done (pure; :mod:`axis.ops.agencies`
carries it out on a running axis).

Every refusal is an :class:`axis.ops.livemove.MoveError` (HTTP status, reason code of contract section 2, detail),
as for moves, so the admin app and the CLI answer it the same way:

- 422 ``SCHEMA_INVALID`` — a malformed request (an agency code not in the QCVN 102:2016 or QĐ 20/2020 form, a bad
  server id, kind, port, algorithm or number of days);
- 404 ``UNKNOWN_RECIPIENT`` — the agency is not in the directory;
- 409 ``FORBIDDEN`` — the request contradicts the directory: the code is taken (by an agency or as another's
  former code), a dedicated server already serves an agency, the agency is retired already (or, for a rename or a
  new certificate, retired at all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from axis.config import Config
from axis.core.directory import valid_agency_code
from axis.core.reasons import Reason
from axis.ops.livemove import KINDS, SERVER_ID, MoveError

OPS = ("agency-add", "agency-retire", "agency-rename", "agency-rotate-cert")
ALGORITHMS = ("ec", "rsa")
DEFAULT_DAYS = 365
MAX_DAYS = 3650
MAX_NAME = 200


def _invalid(detail: str) -> MoveError:
    return MoveError(422, Reason.SCHEMA_INVALID, detail)


def _conflict(detail: str) -> MoveError:
    return MoveError(409, Reason.FORBIDDEN, detail)


@dataclass(frozen=True, slots=True)
class CertRequest:
    """The signing certificate to issue: its algorithm and lifetime."""

    algorithm: str = "ec"
    days: int = DEFAULT_DAYS


@dataclass(frozen=True, slots=True)
class AddPlan:
    code: str
    name: str
    server: str
    kind: str  # the server's kind (of the new server when ``new_server``)
    new_server: bool
    port: int | None
    cert: CertRequest
    holds_key: bool  # the server keeps the agency's signing key (it may then submit unsigned documents)


@dataclass(frozen=True, slots=True)
class RetirePlan:
    code: str
    server: str
    revoke: bool  # also revoke its signing certificate (documents it signed before stop verifying)


@dataclass(frozen=True, slots=True)
class RenamePlan:
    old: str
    new: str
    server: str
    name: str | None
    cert: CertRequest  # the certificate for the new code (its subject UID must be the new code)


@dataclass(frozen=True, slots=True)
class RotatePlan:
    code: str
    server: str
    cert: CertRequest


Plan = AddPlan | RetirePlan | RenamePlan | RotatePlan


def _code(value: Any, what: str) -> str:
    if not isinstance(value, str) or not valid_agency_code(value):
        raise _invalid(f"{what} must be an agency code (QCVN 102:2016 like 000.00.00.G22, or QĐ 20/2020 like "
                       f"H55.242), not {value!r}")
    return value


def _cert(request: Mapping[str, Any]) -> CertRequest:
    algorithm = request.get("algorithm", "ec")
    if algorithm not in ALGORITHMS:
        raise _invalid(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    days = request.get("days", DEFAULT_DAYS)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise _invalid(f"days must be an integer 1-{MAX_DAYS}")
    return CertRequest(algorithm, days)


def _name(value: Any, default: str | None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME or any(c < " " for c in value):
        raise _invalid(f"name must be 1-{MAX_NAME} printable characters")
    return value.strip()


def _taken(config: Config, code: str) -> str | None:
    """Who holds ``code`` already: an agency's code, or one of its former codes (None when it is free)."""
    if config.agency(code) is not None:
        return f"agency {code} already exists"
    for a in config.agencies:
        if code in getattr(a, "aliases", ()):
            return f"the code {code} is a former code of agency {a.code}"
    return None


def _existing(config: Config, value: Any, *, active: bool) -> Any:
    code = _code(value, "the agency")
    agency = config.agency(code)
    if agency is None:
        raise MoveError(404, Reason.UNKNOWN_RECIPIENT, f"agency {code} is not in the directory")
    if active and not getattr(agency, "active", True):
        raise _conflict(f"agency {code} is retired")
    return agency


def check_add(config: Config, request: Mapping[str, Any]) -> AddPlan:
    """``{"code", "name"?, "server", "kind"? ("dedicated"), "port"?, "algorithm"? ("ec"), "days"? (365),
    "holds_key"? (true)}``: a new agency on an existing server or on a new one."""
    code = _code(request.get("code"), "code")
    name = _name(request.get("name"), code) or code
    server_id = request.get("server")
    if not isinstance(server_id, str) or not SERVER_ID.fullmatch(server_id):
        raise _invalid("server must be a server id of lowercase letters, digits, - and _ (1-63)")
    kind = request.get("kind", "dedicated")
    if kind not in KINDS:
        raise _invalid(f"kind must be one of {', '.join(KINDS)}")
    port = request.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        raise _invalid("port must be an integer 1-65535")
    holds_key = request.get("holds_key", True)
    if not isinstance(holds_key, bool):
        raise _invalid("holds_key must be true or false")
    cert = _cert(request)
    taken = _taken(config, code)
    if taken is not None:
        raise _conflict(taken)
    server = config.directory.server(server_id)
    if server is None:
        return AddPlan(code, name, server_id, kind, True, port, cert, holds_key)
    if "kind" in request and kind != server.kind:
        raise _conflict(f"server {server_id} exists and is {server.kind}")
    if port is not None and port != config.server(server_id).port:
        raise _conflict(f"server {server_id} exists, on port {config.server(server_id).port}")
    members = config.directory.agencies_on(server_id)
    if server.kind == "dedicated" and members:
        raise _conflict(f"dedicated server {server_id} already serves {members[0]}")
    return AddPlan(code, name, server_id, server.kind, False, None, cert, holds_key)


def check_retire(config: Config, request: Mapping[str, Any]) -> RetirePlan:
    """``{"agency", "revoke"? (false)}``: an active agency stops sending and receiving."""
    agency = _existing(config, request.get("agency"), active=True)
    revoke = request.get("revoke", False)
    if not isinstance(revoke, bool):
        raise _invalid("revoke must be true or false")
    return RetirePlan(agency.code, agency.server, revoke)


def check_rename(config: Config, request: Mapping[str, Any]) -> RenamePlan:
    """``{"agency", "code", "name"?, "algorithm"?, "days"?}``: the agency's new code (its old one becomes an
    alias); a signing certificate for the new code is issued."""
    agency = _existing(config, request.get("agency"), active=True)
    new = _code(request.get("code"), "the new code")
    if new == agency.code:
        raise _conflict(f"agency {agency.code} already has the code {new}")
    if new not in getattr(agency, "aliases", ()):  # renaming back to a former code of its own is allowed
        taken = _taken(config, new)
        if taken is not None:
            raise _conflict(taken)
    name = _name(request.get("name"), None)
    cert = _cert(request)
    return RenamePlan(agency.code, new, agency.server, name, cert)


def check_rotate(config: Config, request: Mapping[str, Any]) -> RotatePlan:
    """``{"agency", "algorithm"?, "days"?}``: a new signing certificate; the current one stays valid."""
    agency = _existing(config, request.get("agency"), active=True)
    return RotatePlan(agency.code, agency.server, _cert(request))


def check_request(config: Config, request: Mapping[str, Any]) -> Plan:
    """The plan for a control request ``{"op": one of OPS, ...}``."""
    op = request.get("op")
    if op == "agency-add":
        return check_add(config, request)
    if op == "agency-retire":
        return check_retire(config, request)
    if op == "agency-rename":
        return check_rename(config, request)
    if op == "agency-rotate-cert":
        return check_rotate(config, request)
    raise _invalid(f"unknown agency operation {op!r} (one of {', '.join(OPS)})")
