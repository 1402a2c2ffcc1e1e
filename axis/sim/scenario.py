"""Simulator scenarios: load a YAML file (or a bundled name), validate it, scale it.

A scenario says WHO (the agencies and the servers they sit on), HOW MUCH (good documents and the exact number
of deliveries they fan out to), WHEN (the simulated window and its weekday/office-hours shape) and WHAT
(document types, attachments, related documents, statuses, bad envelopes, migrations). It is pure data: the
traffic itself comes from :func:`axis.sim.plan.plan`. Invalid files raise :class:`ScenarioError` with the
field at fault.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from axis.sim import agencies as ag

SCENARIO_DIRS = (Path(__file__).resolve().parent.parent.parent / "scenarios",)
BAD_KINDS = ("SIGNATURE_INVALID", "UNKNOWN_RECIPIENT", "SIGNER_MISMATCH", "FORBIDDEN", "XML_MALFORMED")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class Server:
    id: str
    kind: str  # "dedicated" | "shared"


@dataclass(frozen=True, slots=True)
class Move:
    """Migration: ``agency`` leaves its shared server for the dedicated server ``to`` after ``at`` of the run."""

    agency: str
    to: str
    at: float


@dataclass(frozen=True, slots=True)
class Mix:
    """What the traffic looks like. Weights need not sum to 1."""

    doc_types: tuple[tuple[str, float], ...] = (("Công văn", 1.0),)
    fanout: tuple[tuple[int, float], ...] = ((1, 1.0),)
    revocation: float = 0.0
    update: float = 0.0
    replacement: float = 0.0
    # attachment size classes: (min bytes, max bytes, weight); number of attachments 0..max_attachments
    attachment_sizes: tuple[tuple[int, int, float], ...] = ((2_000, 60_000, 1.0),)
    attachments_per_doc: tuple[tuple[int, float], ...] = ((1, 1.0),)
    # statuses sent back per delivery: probability a recipient answers, then the chain 03 → 04 → 05 → 06
    status_share: float = 0.0
    status_continue: float = 0.5
    sender_weights: tuple[tuple[str, float], ...] = ()
    recipient_weights: tuple[tuple[str, float], ...] = ()
    locality: float = 0.0
    weekend_share: float = 0.03
    office_hours: tuple[float, float] = (7.5, 17.5)


_DEFAULT_MIX = Mix()


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    start: dt.date
    days: int
    documents: int
    deliveries: int
    agencies: tuple[ag.Agency, ...]
    servers: tuple[Server, ...]
    placement: dict[str, str] = field(hash=False)  # agency code -> server id
    mix: Mix = Mix()
    bad: int = 0
    bad_kinds: tuple[tuple[str, float], ...] = ()
    moves: tuple[Move, ...] = ()

    @property
    def dedicated(self) -> int:
        kinds = {s.id: s.kind for s in self.servers}
        return sum(1 for a in self.agencies if kinds[self.placement[a.code]] == "dedicated")

    @property
    def shared(self) -> int:
        return len(self.agencies) - self.dedicated

    def agency_list(self) -> list[tuple[str, str, str]]:
        """``[(code, name, server_id)]`` — the shape core's ``generate_workdir`` takes."""
        return [(a.code, a.name, self.placement[a.code]) for a in self.agencies]

    def server_list(self) -> list[tuple[str, str]]:
        return [(s.id, s.kind) for s in self.servers]


# ---------------------------------------------------------------- loading


def available() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for d in SCENARIO_DIRS if d.is_dir() for p in d.glob("*.yaml"))


def load(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name (``seed-2019``) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        for d in SCENARIO_DIRS:
            cand = d / f"{name_or_path}.yaml"
            if cand.is_file():
                path = cand
                break
        else:
            raise ScenarioError(f"no scenario {name_or_path!r} (bundled: {', '.join(available()) or 'none'})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    return from_dict(raw, source=str(path))


def _num(raw: dict[str, Any], key: str, kind: type, *, default: Any = None, lo: float | None = None,
         hi: float | None = None) -> Any:  # fmt: skip
    value = raw.get(key, default)
    if value is None:
        raise ScenarioError(f"{key}: required")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ScenarioError(f"{key}: must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"{key}: must be a number, got {value!r}")
        value = float(value)
    if lo is not None and value < lo:
        raise ScenarioError(f"{key}: must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ScenarioError(f"{key}: must be <= {hi}, got {value}")
    return value


def _weights(raw: Any, key: str, keytype: type = str) -> tuple[tuple[Any, float], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ScenarioError(f"{key}: must be a non-empty mapping of name to weight")
    out = []
    for k, v in raw.items():
        try:
            kk = keytype(k)
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"{key}: bad key {k!r}") from exc
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ScenarioError(f"{key}.{k}: weight must be a number >= 0, got {v!r}")
        out.append((kk, float(v)))
    if sum(w for _, w in out) <= 0:
        raise ScenarioError(f"{key}: weights must not all be zero")
    return tuple(out)


def _sizes(raw: Any) -> tuple[tuple[int, int, float], ...]:
    if raw is None:
        return _DEFAULT_MIX.attachment_sizes
    if not isinstance(raw, list) or not raw:
        raise ScenarioError("attachments.sizes: must be a list of [min, max, weight]")
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            raise ScenarioError(f"attachments.sizes: each entry is [min_bytes, max_bytes, weight], got {item!r}")
        lo, hi, w = item
        ok = isinstance(lo, int) and isinstance(hi, int) and isinstance(w, int | float)
        if not (ok and 1 <= lo <= hi and w >= 0):
            raise ScenarioError(f"attachments.sizes: need 1 <= min <= max and weight >= 0, got {item!r}")
        out.append((lo, hi, float(w)))
    return tuple(out)


def _agencies(raw: dict[str, Any]) -> tuple[list[ag.Agency], list[Server], dict[str, str]]:
    spec = raw.get("agencies")
    if not isinstance(spec, dict):
        raise ScenarioError("agencies: required mapping (preset, count, shared_servers, ...)")
    preset = spec.get("preset", "vn-2019")
    if preset == "vn-2019":
        agencies = ag.top_level()
    elif preset == "national":
        agencies = ag.national(_num(spec, "count", int, lo=2))
    else:
        raise ScenarioError(f"agencies.preset: unknown {preset!r} (vn-2019 | national)")
    if "count" in spec and preset == "vn-2019":
        agencies = scale_agencies(agencies, _num(spec, "count", int, lo=2))
    return place(agencies, spec)


def place(agencies: list[ag.Agency], spec: dict[str, Any]) -> tuple[list[ag.Agency], list[Server], dict[str, str]]:
    """Put agencies on servers: listed shared members (or classes) on shared servers, the rest dedicated.

    ``shared_members``: codes (``G23`` shorthand allowed) on shared servers; ``shared_classes``: agency classes
    on shared servers (``department``, ``unit``, ``local``); ``shared_servers``: how many shared servers
    (members are dealt round-robin in directory order); ``shared_operator``: prefix of their ids.
    """
    nshared = _num(spec, "shared_servers", int, default=1, lo=0)
    operator = str(spec.get("shared_operator", "g22"))
    members = {ag.expand_code(str(c)) for c in spec.get("shared_members", []) or []}
    classes = set(spec.get("shared_classes", []) or [])
    bad = classes - set(ag.CLASSES)
    if bad:
        raise ScenarioError(f"agencies.shared_classes: unknown {sorted(bad)} (known: {', '.join(ag.CLASSES)})")
    codes = {a.code for a in agencies}
    unknown = members - codes
    if unknown and "count" not in spec:
        raise ScenarioError(f"agencies.shared_members: not in the directory: {sorted(unknown)[:5]}")
    on_shared = [a for a in agencies if a.code in members or a.cls in classes]
    if on_shared and nshared == 0:
        raise ScenarioError("agencies.shared_servers: 0, but some agencies are placed on shared servers")
    servers: list[Server] = []
    placement: dict[str, str] = {}
    shared_ids = [f"{operator}-shared-{i + 1}" for i in range(nshared)] if on_shared else []
    servers.extend(Server(s, "shared") for s in shared_ids)
    for i, a in enumerate(on_shared):
        placement[a.code] = shared_ids[i % len(shared_ids)]
    for a in agencies:
        if a.code not in placement:
            sid = "dedicated-" + a.code.replace(".", "-").lower()
            servers.append(Server(sid, "dedicated"))
            placement[a.code] = sid
    return agencies, servers, placement


def scale_agencies(agencies: list[ag.Agency], n: int) -> list[ag.Agency]:
    """Keep ``n`` agencies: shrink keeping G22 and taking the classes in turn (ministries, provinces, party);
    grow with lower-level agencies from the national generator."""
    if n <= 0:
        return []
    if n >= len(agencies):
        if n == len(agencies):
            return list(agencies)
        have = {a.code for a in agencies}
        extra = [a for a in ag.national(n + len(agencies)) if a.code not in have]
        return list(agencies) + extra[: n - len(agencies)]
    g22 = [a for a in agencies if a.code == ag.GOVERNMENT_OFFICE]
    rest = [a for a in agencies if a.code != ag.GOVERNMENT_OFFICE]
    # interleave classes so a small scenario still has ministries, provinces and (if room) the party office
    by_cls: dict[str, list[ag.Agency]] = {}
    for a in rest:
        by_cls.setdefault(a.cls, []).append(a)
    order: list[ag.Agency] = list(g22)
    queues = list(by_cls.values())
    while len(order) < n and any(queues):
        for q in queues:
            if q and len(order) < n:
                order.append(q.pop(0))
    return sorted(order[:n], key=lambda a: agencies.index(a))


def from_dict(raw: Any, *, source: str = "<dict>") -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: a scenario is a YAML mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError("name: required string")
    start = raw.get("start")
    if isinstance(start, str):
        try:
            start = dt.date.fromisoformat(start)
        except ValueError as exc:
            raise ScenarioError(f"start: not an ISO date: {start!r}") from exc
    if not isinstance(start, dt.date):
        raise ScenarioError("start: required date (YYYY-MM-DD)")
    days = _num(raw, "days", int, lo=1)
    documents = _num(raw, "documents", int, lo=1)
    deliveries = _num(raw, "deliveries", int, lo=1)
    agencies, servers, placement = _agencies(raw)

    mixraw = raw.get("mix", {}) or {}
    if not isinstance(mixraw, dict):
        raise ScenarioError("mix: must be a mapping")
    att = mixraw.get("attachments", {}) or {}
    st = mixraw.get("statuses", {}) or {}
    rel = mixraw.get("related", {}) or {}
    hours = mixraw.get("office_hours", [7.5, 17.5])
    if not (isinstance(hours, list) and len(hours) == 2 and 0 <= hours[0] < hours[1] <= 24):
        raise ScenarioError(f"mix.office_hours: need [start, end] within 0..24, got {hours!r}")
    mix = Mix(
        doc_types=_weights(mixraw.get("doc_types"), "mix.doc_types") or _DEFAULT_MIX.doc_types,
        fanout=_weights(mixraw.get("fanout"), "mix.fanout", int) or _DEFAULT_MIX.fanout,
        revocation=_num(rel, "revocation", float, default=0.0, lo=0, hi=0.2),
        update=_num(rel, "update", float, default=0.0, lo=0, hi=0.2),
        replacement=_num(rel, "replacement", float, default=0.0, lo=0, hi=0.2),
        attachment_sizes=_sizes(att.get("sizes")),
        attachments_per_doc=_weights(att.get("per_document"), "mix.attachments.per_document", int)
        or _DEFAULT_MIX.attachments_per_doc,
        status_share=_num(st, "share", float, default=0.0, lo=0, hi=1),
        status_continue=_num(st, "continue", float, default=0.5, lo=0, hi=1),
        sender_weights=_weights(mixraw.get("sender_weights"), "mix.sender_weights"),
        recipient_weights=_weights(mixraw.get("recipient_weights"), "mix.recipient_weights"),
        locality=_num(mixraw, "locality", float, default=0.0, lo=0, hi=1),
        weekend_share=_num(mixraw, "weekend_share", float, default=0.03, lo=0, hi=1),
        office_hours=(float(hours[0]), float(hours[1])),
    )
    if any(k < 1 for k, _ in mix.fanout):
        raise ScenarioError("mix.fanout: recipient counts must be >= 1")
    if any(k < 0 for k, _ in mix.attachments_per_doc):
        raise ScenarioError("mix.attachments.per_document: counts must be >= 0")

    badraw = raw.get("bad", {}) or {}
    bad = _num(badraw, "count", int, default=0, lo=0)
    bad_kinds = _weights(badraw.get("kinds"), "bad.kinds") or tuple((k, 1.0) for k in BAD_KINDS[:3])
    unknown = {k for k, _ in bad_kinds} - set(BAD_KINDS)
    if unknown:
        raise ScenarioError(f"bad.kinds: unknown {sorted(unknown)} (known: {', '.join(BAD_KINDS)})")

    moves = []
    for i, m in enumerate(raw.get("migrations", []) or []):
        if not isinstance(m, dict) or "agency" not in m:
            raise ScenarioError(f"migrations[{i}]: need agency, at")
        code = ag.expand_code(str(m["agency"]))
        at = _num(m, "at", float, lo=0, hi=1)
        moves.append(Move(code, str(m.get("to", "dedicated-" + code.replace(".", "-").lower())), at))
    known = {s.id for s in servers}
    for m in moves:  # a migration target is a dedicated server that starts empty and receives the agency
        if m.to not in known:
            servers.append(Server(m.to, "dedicated"))
            known.add(m.to)

    sc = Scenario(
        name=name,
        description=str(raw.get("description", "")).strip(),
        start=start,
        days=days,
        documents=documents,
        deliveries=deliveries,
        agencies=tuple(agencies),
        servers=tuple(servers),
        placement=placement,
        mix=mix,
        bad=bad,
        bad_kinds=bad_kinds,
        moves=tuple(moves),
    )
    expect = raw.get("expect", {}) or {}
    if expect:
        for key, actual in (("agencies", len(sc.agencies)), ("dedicated", sc.dedicated), ("shared", sc.shared)):
            if key in expect and expect[key] != actual:
                raise ScenarioError(f"expect.{key}: scenario gives {actual}, file expects {expect[key]}")
    validate(sc)
    return sc


def validate(sc: Scenario) -> None:
    """Cross-field checks: enough agencies for the fan-out, deliveries reachable, moves well-formed."""
    n = len(sc.agencies)
    if n < 2:
        raise ScenarioError("agencies: need at least 2 agencies")
    if sc.deliveries < sc.documents:
        raise ScenarioError(f"deliveries: {sc.deliveries} < documents {sc.documents}: each document has a recipient")
    if sc.deliveries > sc.documents * (n - 1):
        raise ScenarioError(
            f"deliveries: {sc.deliveries} cannot be reached by {sc.documents} documents among {n} agencies"
        )
    codes = {a.code for a in sc.agencies}
    kinds = {s.id: s.kind for s in sc.servers}
    for m in sc.moves:
        if m.agency not in codes:
            raise ScenarioError(f"migrations: {m.agency} is not in the directory")
        if kinds.get(sc.placement[m.agency]) != "shared":
            raise ScenarioError(f"migrations: {m.agency} is not on a shared server")
        if kinds.get(m.to) == "shared":
            raise ScenarioError(f"migrations: target {m.to} is a shared server")


def scale(sc: Scenario, *, agencies: int | None = None, documents: int | None = None,
          bad: int | None = None) -> Scenario:  # fmt: skip
    """Resize a scenario. Documents scale the deliveries and bad envelopes in proportion (rounded), so the
    fan-out mean and the bad share are kept; agencies keep the server placement rules (shared members that
    remain stay shared; new lower-level agencies go to shared servers)."""
    out = sc
    if agencies is not None and agencies != len(sc.agencies):
        if agencies < 2:
            raise ScenarioError("--agencies: need at least 2")
        kinds = {s.id: s.kind for s in sc.servers}
        if agencies < len(sc.agencies):  # keep the dedicated/shared proportion
            on_shared = [a for a in sc.agencies if kinds[sc.placement[a.code]] == "shared"]
            on_dedicated = [a for a in sc.agencies if kinds[sc.placement[a.code]] != "shared"]
            n_shared = min(len(on_shared), round(agencies * len(on_shared) / len(sc.agencies)))
            if len(on_dedicated) <= agencies // 2:  # room for every dedicated server: keep them all
                n_shared = agencies - len(on_dedicated)
            keep = set(scale_agencies(on_shared, n_shared)) | set(scale_agencies(on_dedicated, agencies - n_shared))
            kept = [a for a in sc.agencies if a in keep]
        else:
            kept = scale_agencies(list(sc.agencies), agencies)
        shared_members = [a.code for a in kept if a.code in sc.placement and kinds[sc.placement[a.code]] == "shared"]
        new_cls = sorted({a.cls for a in kept if a.code not in sc.placement})
        nshared = max(1, sum(1 for s in sc.servers if s.kind == "shared"))
        prefix = next((s.id.split("-shared-")[0] for s in sc.servers if s.kind == "shared"), "g22")
        spec = {"shared_servers": nshared, "shared_operator": prefix, "shared_members": shared_members,
                "shared_classes": new_cls}  # fmt: skip
        kept_l, servers, placement = place(kept, spec)
        moves = tuple(m for m in sc.moves if m.agency in placement and placement[m.agency] != m.to)
        known = {s.id for s in servers}
        servers.extend(Server(m.to, "dedicated") for m in moves if m.to not in known)
        out = replace(out, agencies=tuple(kept_l), servers=tuple(servers), placement=placement, moves=moves)
    if documents is not None and documents != sc.documents:
        if documents < 1:
            raise ScenarioError("--documents: need at least 1")
        ratio = sc.deliveries / sc.documents
        out = replace(
            out,
            documents=documents,
            deliveries=max(documents, round(documents * ratio)),
            bad=max(min(sc.bad, 5), round(sc.bad * documents / sc.documents)) if bad is None else bad,
        )
    if bad is not None:
        out = replace(out, bad=bad)
    n = len(out.agencies)
    if out.deliveries > out.documents * (n - 1):
        out = replace(out, deliveries=out.documents * (n - 1))
    validate(out)
    return out


def on_directory(sc: Scenario, directory: list[tuple[str, str, str, str]]) -> Scenario:
    """The same traffic over another directory — a running axis's ``[(code, name, server, kind)]`` — keeping
    documents, deliveries and the mix (deliveries capped by what the directory can reach)."""
    agencies = [ag.from_directory(code, name) for code, name, _, _ in directory]
    servers: dict[str, Server] = {}
    for _, _, sid, kind in directory:
        servers.setdefault(sid, Server(sid, kind))
    placement = {code: sid for code, _, sid, _ in directory}
    out = replace(sc, agencies=tuple(agencies), servers=tuple(servers.values()), placement=placement,
                  moves=tuple(m for m in sc.moves if m.agency in placement))  # fmt: skip
    cap = out.documents * (len(agencies) - 1)
    if out.deliveries > cap:
        out = replace(out, deliveries=cap)
    validate(out)
    return out
