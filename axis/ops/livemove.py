"""Moving an agency to another server LIVE, with the axis running and traffic flowing (the 2019 report's move).

Run by the ``axis up`` supervisor (axis.ops.up.Running), which knows every child process; asked for through the
control socket (axis.ops.control) by the admin app's ``POST /admin/agencies/{code}/move``. The steps, in order
(docs/core.md, "Moving an agency"):

1. announce: the target server is added to config.yaml if new, and listed in the agency's ``moved_from``
   while the agency stays where it is (``axis.config.announce_move``);
2. the target server runs: a new host process is started for a new server and answers ``/healthz`` (its queue
   exists before anything is routed or forwarded to it);
3. every router reloads the announced file: each one now accepts the agency's statuses from its future server,
   so no router, reloaded or not, refuses a status 01 during step 6;
4. the move: config.yaml names the new server (``axis.config.move_agency``; the old one stays in
   ``moved_from``); its token and certificate do not change;
5. the target server's host reloads: it now hosts the agency (token, key, inbox);
6. every router reloads: documents for the agency are routed to the new server from the next batch on;
7. the old server's host reloads: deliveries still queued for the agency there are forwarded to the new server,
   and its token is refused there;
8. the agency's rows (inbox, sent documents, statuses) move to the new server's store (endpoints.migrate).

Every reload is SIGHUP + an acknowledgement carrying the digest of the file loaded (axis.config.reload), and swaps
between messages: no process restarts, no request is dropped. A failure before step 4 puts the old
configuration back; after it, the same request finishes the move (every step is idempotent).
"""

from __future__ import annotations

import asyncio
import functools
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from axis.broker.setup import prepare_broker_sync
from axis.broker.topology import TopologyError
from axis.broker.users import BrokerAuthError
from axis.config import Config, ConfigError, announce_move, connections_for, load_config, move_agency, write_connections
from axis.config.reload import ack_path, config_digest, read_ack
from axis.core.reasons import Reason
from axis.ops.entrypoints import endpoints_entry

if TYPE_CHECKING:
    from axis.ops.up import Running

SERVER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # as axis.core.directory
KINDS = ("dedicated", "shared")


def _ready(control: Path, pid: int) -> bool:
    """Process ``pid`` has acknowledged readiness (or a reload)."""
    return read_ack(control, pid) is not None


def _acknowledged(control: Path, pid: int, digest: str) -> bool:
    """Process ``pid`` has acknowledged the configuration file of ``digest``."""
    return (read_ack(control, pid) or {}).get("digest") == digest


class MoveError(Exception):
    """A move refused or stopped: HTTP ``status``, ``reason`` (contract section 2, or None) and ``detail``."""

    def __init__(self, status: int, reason: Reason | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"reason": self.reason.value if self.reason else None, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class MovePlan:
    agency: str
    source: str  # the server it leaves
    target: str  # the server it moves to
    kind: str  # kind of the target when it is new
    new_server: bool  # the target is not in the configuration yet
    resume: bool  # config.yaml already names the target: finish an interrupted move


def check_move(config: Config, request: Mapping[str, Any]) -> MovePlan:
    """Validate a move request against the current configuration (pure). Raises :class:`MoveError`: 404 for an
    unknown agency, 422 for a malformed request, 409 for a target that cannot take it."""
    code, target, kind = request.get("agency"), request.get("server"), request.get("kind", "dedicated")
    if not isinstance(target, str) or not SERVER_ID.fullmatch(target):
        raise MoveError(422, Reason.SCHEMA_INVALID,
                        'expected {"server": ID}: a server id of lowercase letters, digits, - and _ (1-63)')
    if kind not in KINDS:
        raise MoveError(422, Reason.SCHEMA_INVALID, f"kind must be one of {', '.join(KINDS)}")
    port = request.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        raise MoveError(422, Reason.SCHEMA_INVALID, "port must be an integer 1-65535")
    agency = config.directory.agency(code) if isinstance(code, str) else None
    if agency is None:
        raise MoveError(404, Reason.UNKNOWN_RECIPIENT, f"agency {code!r} is not in the directory")
    server = config.directory.server(target)
    if agency.server == target:
        if agency.moved_from and agency.moved_from[-1] != target:
            assert server is not None  # the agency's own server
            return MovePlan(agency.code, agency.moved_from[-1], target, server.kind, False, True)
        raise MoveError(409, Reason.FORBIDDEN, f"agency {agency.code} is already on server {target}")
    if server is not None:
        others = [c for c in config.directory.agencies_on(target) if c != agency.code]
        if server.kind == "dedicated" and others:
            raise MoveError(409, Reason.FORBIDDEN, f"dedicated server {target} already serves {others[0]}")
        if port is not None and port != config.server(target).port:
            raise MoveError(409, Reason.FORBIDDEN, f"server {target} exists, on port {config.server(target).port}")
    return MovePlan(agency.code, agency.server, target, server.kind if server else kind, server is None, False)


class LiveMove:
    """The supervisor's side of a move (see the module docstring); ``handle`` serves the control socket."""

    def __init__(self, run: Running, *, step_timeout: float = 90.0) -> None:
        self.run = run
        self.step_timeout = step_timeout
        self.steps: dict[str, float] = {}  # seconds per step of the current move (in its answer)

    @property
    def path(self) -> Path:
        assert self.run.config.path is not None
        return self.run.config.path

    def handle(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        op = request.get("op")
        if op == "ping":
            return 200, {"ok": True}
        if op != "move":
            return 400, {"reason": None, "detail": f"unknown control operation {op!r}"}
        try:
            return 200, self.move(request)
        except MoveError as exc:
            return exc.status, exc.body()

    # -- the steps -----------------------------------------------------------------------------------------------
    def move(self, request: Mapping[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        self.steps = {}
        plan = check_move(load_config(self.path), request)
        port = request.get("port")
        original = self.path.read_bytes()
        spawned: str | None = None
        if not plan.resume:
            try:
                announce_move(self.path, plan.agency, plan.target, kind=plan.kind, port=port)
            except ConfigError as exc:
                raise MoveError(409, Reason.FORBIDDEN, str(exc)) from None
            try:
                spawned = self._ensure_hosted(plan.target)
                self._reload(self.run.router_names(), "reload the routers (announce)")
            except MoveError as exc:
                self._roll_back(original, spawned)
                raise MoveError(exc.status, exc.reason, f"{exc.detail}; the move was undone") from None
            try:
                final = move_agency(self.path, plan.agency, plan.target, kind=plan.kind, port=port)
            except ConfigError as exc:
                self._roll_back(original, spawned)
                raise MoveError(409, Reason.FORBIDDEN, str(exc)) from None
        else:  # routers first: one may still hold a file from before the announcement
            final = load_config(self.path)
            self._ensure_hosted(plan.target)
            self._reload(self.run.router_names(), "reload the routers (resume)")
        self.run.config = final
        target_host = self.run.host_of(plan.target)
        source_host = self.run.host_of(plan.source)
        try:
            self._reload([target_host] if target_host else [], "reload the new server's host")
            self._reload(self.run.router_names(), "reload the routers")
            if source_host and source_host != target_host:
                self._reload([source_host], "reload the old server's host")
            rows = self._move_rows(final, plan)
        except MoveError as exc:
            raise MoveError(exc.status, exc.reason, f"{exc.detail}. config.yaml already names {plan.target}: send "
                            "the same request again to finish the move") from None
        self._write_connections(final)
        return {"agency": plan.agency, "from": plan.source, "to": plan.target,
                "endpoint": final.server(plan.target).url, "kind": final.server(plan.target).kind,
                "rows": rows, "seconds": round(time.monotonic() - t0, 3), "steps": self.steps}

    def _timed(self, step: str, started: float) -> None:
        self.steps[step] = round(self.steps.get(step, 0.0) + time.monotonic() - started, 3)

    def _ensure_hosted(self, server_id: str) -> str | None:
        """Start a host process for ``server_id`` unless one runs it; wait for /healthz. Returns the new name."""
        if self.run.host_of(server_id) is not None:
            return None
        started = time.monotonic()
        config = load_config(self.path)
        try:  # its queue (and, with per-component users, its broker user) must exist before it starts; the host users
            # of the hosts that run keep their passwords (the users file is rewritten with what is provisioned)
            prepare_broker_sync(config, timeout=self.step_timeout,
                                host_groups=[*self.run.hosts.values(), (server_id,)])
        except (TopologyError, BrokerAuthError) as exc:
            raise MoveError(500, None, f"preparing RabbitMQ for {server_id}: {exc}") from None
        name = self.run.spawn_host([server_id])
        url = config.server(server_id).url
        verify = config.client_ssl()  # its HTTPS certificate is the axis CA's
        deadline = time.monotonic() + self.step_timeout
        while True:
            proc = self.run.proc(name)
            failure = None
            if proc is None or proc.poll() is not None:
                failure = (f"the new host {name} for {server_id} exited "
                           f"(see {self.run.work_dir / 'logs' / (name + '.log')})")
            elif time.monotonic() > deadline:
                failure = f"the new server {server_id} did not answer {url}/healthz"
            if failure is not None:
                self.run.stop_child(name)  # forgotten: `axis up` does not count it as a failed child
                raise MoveError(500, None, failure)
            try:
                if httpx.get(url + "/healthz", timeout=1.0, verify=verify, trust_env=False).status_code == 200:
                    self._timed("start the new server", started)
                    return name
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def _reload(self, names: list[str], step: str) -> None:
        """SIGHUP each process (one at a time) and wait for its acknowledgement of the current file."""
        started = time.monotonic()
        digest = config_digest(self.path)
        control = self.run.control_dir
        assert control is not None
        for name in names:
            proc = self.run.proc(name)
            if proc is None or proc.poll() is not None:
                raise MoveError(500, None, f"{step}: process {name} is not running")
            self._wait(functools.partial(_ready, control, proc.pid), proc, f"{step}: {name} never got ready")
            ack_path(control, proc.pid).unlink(missing_ok=True)
            proc.send_signal(signal.SIGHUP)
            self._wait(functools.partial(_acknowledged, control, proc.pid, digest), proc,
                       f"{step}: {name} did not acknowledge the reload")
            ack = read_ack(control, proc.pid) or {}
            if not ack.get("ok"):
                raise MoveError(500, None, f"{step}: {name} could not reload: {ack.get('error')}")
        self._timed(step, started)

    def _wait(self, done: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
        deadline = time.monotonic() + self.step_timeout
        while not done():
            if proc.poll() is not None:
                raise MoveError(500, None, f"{what} (it exited with {proc.returncode})")
            if time.monotonic() > deadline:
                raise MoveError(500, None, f"{what} within {self.step_timeout:.0f} s")
            time.sleep(0.05)

    def _roll_back(self, original: bytes, spawned: str | None) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(original)
        tmp.replace(self.path)
        if spawned is not None:
            self.run.stop_child(spawned)
        try:
            self._reload(self.run.router_names(), "roll back: reload the routers")
        except MoveError as exc:  # the routers keep the announced file: harmless (it only widens moved_from)
            self.run.log(f"roll back: {exc.detail}")

    def _move_rows(self, config: Config, plan: MovePlan) -> dict[str, int]:
        move_rows = endpoints_entry("move_agency_rows")

        old, new = config.server(plan.source).inbox_url, config.server(plan.target).inbox_url
        started = time.monotonic()
        try:
            moved = asyncio.run(move_rows(old, new, plan.agency))
        except Exception as exc:
            raise MoveError(500, None, f"moving the rows of {plan.agency}: {type(exc).__name__}: {exc}") from None
        self._timed("move the rows", started)
        return {"received": moved.received, "sent": moved.sent, "statuses": moved.statuses}

    def _write_connections(self, config: Config) -> None:
        path = self.run.work_dir / "connections.json"
        known = orjson.loads(path.read_bytes()) if path.is_file() else None
        self.run.connections_path = write_connections(self.run.work_dir, connections_for(config, known))
