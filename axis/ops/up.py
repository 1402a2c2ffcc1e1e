"""Bring a whole axis up as child processes: N routers, endpoint-server hosts, the admin app.

Process layout (``axis up``):
- ``axis router --config C`` × ``config.routers`` — competing consumers of ``axis.submissions``;
- ``axis log-writer --config C`` — exactly one: the evidence log's writer, the one consumer of ``axis.evidence``
  (:mod:`axis.evidence.writer`; the log's order is the order it commits in);
- ``axis serve --config C --server ID [--server ID ...]`` — ``hosts`` (config) host processes, the logical
  servers dealt round-robin over them (shared servers first), each server on its own port;
- ``axis admin --config C`` — the admin app (dashboard, /admin/stats).

Before any child starts, the broker is prepared with the provisioning account (``amqp_url``;
:mod:`axis.broker.setup`): the topology is declared (retried while the broker comes up) and, with
``broker.auth: users`` (generated configs), one least-privilege broker user per component is created, its
password kept in ``broker.users_file`` (mode 0600); each child then connects as its own user.

Children log to ``<work dir>/logs/``. ``connections.json`` is written once every server answers ``/healthz`` and
the log writer consumes (its readiness acknowledgement, :mod:`axis.config.reload`); like every child, a log writer
that exits makes ``axis up`` report it and stop (nothing is restarted behind the operator's back);
then the supervisor listens on its control socket (axis.ops.control): the admin app asks it to move an agency live
(axis.ops.livemove).
Stopping sends SIGTERM to every child, waits, then kills what is left.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from axis.broker.waiting import DEFAULT_BROKER_WAIT, ENV_BROKER_WAIT
from axis.config import Config, connections_for, generate_workdir, load_config, write_connections
from axis.config.directory_journal import sync_journal
from axis.config.reload import ENV_CONTROL_DIR, read_ack
from axis.config.workdir import check_records_dir
from axis.ops.control import ControlServer, control_dir_for
from axis.ops.trustwatch import TrustWatch, refresh_crl, trust_files

DEMO_SERVERS = [("d-g22", "dedicated"), ("d-h53", "dedicated"), ("shared-1", "shared")]
DEMO_AGENCIES = [
    ("000.00.00.G22", "Văn phòng Chính phủ", "d-g22"),
    ("000.00.00.H53", "UBND tỉnh Tây Ninh", "d-h53"),
    ("000.00.00.G01", "Bộ Công an", "shared-1"),
    ("000.00.00.G03", "Bộ Giáo dục và Đào tạo", "shared-1"),
]
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_WRITER = "log-writer"  # the child process name of the evidence log's writer


class StartError(RuntimeError):
    """The axis could not be brought up (a child exited, or servers never answered)."""


def prepare_demo(work_dir: Path, *, amqp_url: str | None = None, base_port: int = 8701) -> tuple[Path, dict[str, Any]]:
    """Reuse the demo in ``work_dir`` (config.yaml + connections.json) or generate a fresh one."""
    cfg, conn = work_dir / "config.yaml", work_dir / "connections.json"
    if cfg.is_file() and conn.is_file():
        return cfg, orjson.loads(conn.read_bytes())
    if cfg.exists() or (work_dir / "pki").exists():
        raise StartError(f"{work_dir} holds an incomplete axis work directory; remove it or pass --config")
    return generate_workdir(work_dir, DEMO_AGENCIES, DEMO_SERVERS, base_port=base_port, amqp_url=amqp_url)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Running:
    config: Config
    work_dir: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    connections_path: Path | None = None
    hosts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # host process name → its server ids
    #: the supervisor's control channel (axis.ops.control): the admin app's moves, the children's reload acks
    control_dir: Path | None = None
    control: ControlServer | None = None
    host_count: int = 0
    #: how long each child waits for its first broker connection (``AXIS_BROKER_WAIT``, axis.broker.waiting)
    broker_wait: float | None = None
    #: reloads the children when the CRL, CA or TLS server certificate changes (axis.ops.trustwatch)
    trust_watch: TrustWatch | None = None

    def spawn(self, name: str, args: Sequence[str]) -> None:
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = (logs / f"{name}.log").open("ab")
        env = _child_env()
        if self.broker_wait is not None:
            env[ENV_BROKER_WAIT] = str(self.broker_wait)
        if self.control_dir is not None:
            env[ENV_CONTROL_DIR] = str(self.control_dir)
        proc = subprocess.Popen([sys.executable, "-m", "axis", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=self.work_dir, start_new_session=True)
        out.close()
        self.procs.append((name, proc))

    def spawn_host(self, server_ids: Sequence[str]) -> str:
        """Start one ``axis serve`` host process for ``server_ids``; returns its name (``host-N``)."""
        assert self.config.path is not None
        self.host_count += 1
        name = f"host-{self.host_count}"
        self.hosts[name] = tuple(server_ids)
        self.spawn(name, ["serve", "--config", str(self.config.path), *[a for sid in server_ids
                                                                          for a in ("--server", sid)]])
        return name

    # -- what a live move (axis.ops.livemove) needs to know and do ----------------------------------------------------
    def proc(self, name: str) -> subprocess.Popen[bytes] | None:
        return next((p for n, p in self.procs if n == name), None)

    def ready(self, name: str) -> bool:
        """The child ``name`` runs and has announced that it is ready (its reload acknowledgement)."""
        proc = self.proc(name)
        return (proc is not None and proc.poll() is None and self.control_dir is not None
                and read_ack(self.control_dir, proc.pid) is not None)

    def router_names(self) -> list[str]:
        return [n for n, _ in self.procs if n.startswith("router-")]

    def host_of(self, server_id: str) -> str | None:
        return next((n for n, ids in self.hosts.items() if server_id in ids), None)

    def stop_child(self, name: str) -> None:
        """Stop one child (SIGTERM, then SIGKILL) and forget it."""
        proc = self.proc(name)
        self.procs = [(n, p) for n, p in self.procs if n != name]
        self.hosts.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log(self, message: str) -> None:
        with (self.work_dir / "logs" / "supervisor.log").open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def serve_control(self) -> None:
        """Listen on the control socket (moves asked for by the admin app, see axis.ops.livemove; the agency
        lifecycle's ``agency-*`` operations, see axis.ops.agencies)."""
        from axis.ops.agencies import AgencyLifecycle
        from axis.ops.livemove import LiveMove

        assert self.control_dir is not None
        mover = LiveMove(self)
        lifecycle = AgencyLifecycle(self, mover)

        def handle(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            op = request.get("op")
            status, body = (lifecycle.handle(request) if isinstance(op, str) and op.startswith("agency-")
                            else mover.handle(request))
            shown = {k: v for k, v in body.items() if k != "token"}  # a new agency's token stays out of the log
            self.log(f"control {op} {request.get('agency', request.get('code', ''))} → {request.get('server', '')}: "
                     f"{status} {shown}")
            return status, body

        self.control = ControlServer(self.control_dir, handle)

    def reload_children(self) -> None:
        """SIGHUP every child that handles it (it has announced readiness, axis.config.reload)."""
        names = [n for n, p in self.procs if self.ready(n)]
        for name in names:
            proc = self.proc(name)
            if proc is not None:
                proc.send_signal(signal.SIGHUP)
        self.log(f"trust files changed: reloading {', '.join(names) or 'nothing'}")

    def failed(self) -> list[str]:
        return [f"{n} (exit {p.returncode}, see {self.work_dir / 'logs' / (n + '.log')})"
                for n, p in self.procs if p.poll() is not None]

    def stop(self, timeout: float = 15.0) -> None:
        if self.trust_watch is not None:
            self.trust_watch.stop()
            self.trust_watch = None
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.control_dir is not None and self.work_dir not in self.control_dir.parents:
            shutil.rmtree(self.control_dir, ignore_errors=True)  # the private temp dir of a long work dir path
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # the hosts' records of what they checked (endpoints.checked, in shared memory): nothing left behind
        shutil.rmtree(check_records_dir(self.work_dir), ignore_errors=True)

    def wait(self) -> None:
        """Block until a child exits (then report it) — the foreground of ``axis up``."""
        while not self.failed():
            time.sleep(0.5)


def _healthy(url: str, verify: ssl.SSLContext | bool = True) -> bool:
    """``GET url/healthz`` answers 200 (over HTTPS: a certificate ``verify`` trusts — the axis CA)."""
    try:
        return httpx.get(url + "/healthz", timeout=1.0, verify=verify, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


#: ``progress(subject, detail)``: what ``start`` waits for, and for how long (axis.ops.progress.ProgressLine)
StartProgress = Callable[[str, str], None]


def _wait_for_broker(config: Config, deadline: float, progress: StartProgress | None) -> None:
    """Wait (up to ``deadline`` s) until RabbitMQ accepts the provisioning account on its vhost, saying so."""
    from axis.broker.waiting import BrokerUnavailable, redact, wait_for_broker_sync
    from axis.core.backoff import Backoff

    where = redact(config.amqp_url)

    def waiting(waited: float, limit: float, error: BaseException) -> None:
        if progress is not None:
            progress(f"waiting for RabbitMQ at {where}:", f"{waited:.0f}s of {limit:.0f}s ({type(error).__name__}: "
                                                         f"{str(error)[:120] or 'no answer'})")

    try:
        waited = wait_for_broker_sync(config.amqp_url, backoff=Backoff(deadline=deadline), progress=waiting)
    except BrokerUnavailable as exc:
        raise StartError(f"{exc} (--broker-wait sets how long axis up waits)") from None
    if progress is not None and waited >= 1:
        progress(f"RabbitMQ at {where} answered", f"after {waited:.0f}s")


def start(config_path: Path, work_dir: Path, known: Mapping[str, Any] | None = None, *, routers: int | None = None,
          servers_per_host: int | None = None, admin: bool = True, timeout: float = 60.0,
          broker_wait: float = DEFAULT_BROKER_WAIT, progress: StartProgress | None = None) -> Running:
    """Start every process of the config and return once all servers answer; writes connections.json.

    First waits up to ``broker_wait`` seconds for RabbitMQ (a broker still starting, a vhost being created) and
    gives every child the same deadline for its own first connection; then up to ``timeout`` seconds for the
    servers to answer. ``progress`` hears what is waited for (one line, see :class:`axis.ops.progress.ProgressLine`).
    """
    config = load_config(config_path)
    # the directory's version journal from the start: the directory as it starts is a version, so the first change
    # made on the running axis (axis agency add/retire/rename) is the next one (axis.config.directory_journal)
    sync_journal(config)
    problem = config.tls.missing()
    if problem is not None:  # every server would exit at once: say why here
        raise StartError(problem)
    verify = config.client_ssl()
    control_dir = control_dir_for(work_dir)
    run = Running(config, work_dir, control_dir=control_dir, broker_wait=broker_wait)
    for stale in control_dir.glob("reload-*.json"):
        stale.unlink()  # an earlier run's: a reused pid must not look ready before it handles SIGHUP
    cfg = str(config_path)
    from axis.broker.setup import prepare_broker_sync
    from axis.broker.topology import TopologyError
    from axis.broker.users import BrokerAuthError, default_host_groups

    _wait_for_broker(config, broker_wait, progress)
    groups = default_host_groups(config, servers_per_host)  # each of several servers gets its host user
    try:
        prepare_broker_sync(config, timeout=timeout, host_groups=groups, prune=True)
    except (TopologyError, BrokerAuthError) as exc:
        raise StartError(f"preparing RabbitMQ: {exc}") from None
    try:
        for i in range(routers or config.routers):
            run.spawn(f"router-{i + 1}", ["router", "--config", cfg])
        run.spawn(LOG_WRITER, ["log-writer", "--config", cfg])
        for group in groups:
            run.spawn_host(group)
        pending = {s.url for s in config.servers} | {LOG_WRITER}
        if admin and importlib.util.find_spec("axis.admin.app") is not None:
            run.spawn("admin", ["admin", "--config", cfg])
            pending.add(config.admin.url)  # the dashboard axis up prints answers when start() returns
        total = len(pending)
        began = time.monotonic()
        deadline = began + timeout
        while pending:
            if progress is not None:
                progress("starting:", f"{total - len(pending)} of {total} ready (the endpoint servers, the log "
                                      f"writer and the admin app; {time.monotonic() - began:.0f}s of {timeout:.0f}s)")
            if run.failed():
                raise StartError("a process exited during start: " + "; ".join(run.failed()))
            if time.monotonic() > deadline:
                raise StartError(f"servers or the admin app did not answer /healthz (or the log writer did not "
                                 f"start) within {timeout:.0f}s: {sorted(pending)}")
            pending = {u for u in pending if not (run.ready(u) if u == LOG_WRITER else _healthy(u, verify))}
            if pending:
                time.sleep(0.2)
        run.connections_path = write_connections(work_dir, connections_for(config, known))
        run.serve_control()
        run.trust_watch = TrustWatch(trust_files(config), run.reload_children,
                                     hourly=functools.partial(refresh_crl, config)).start()
        return run
    except BaseException:
        run.stop()
        raise
