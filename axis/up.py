"""Bring a whole axis up as child processes: N routers, endpoint-server hosts, the admin app.

Process layout (``axis up``):
- ``axis router --config C`` × ``config.routers`` — competing consumers of ``axis.submissions``;
- ``axis serve --config C --server ID [--server ID ...]`` — one host process per group of up to
  ``servers_per_host`` logical servers, each on its own port;
- ``axis admin --config C`` — the admin app (dashboard, /admin/stats).

Before any child starts, the broker is prepared with the provisioning account (``amqp_url``;
:mod:`axis.brokersetup`): the topology is declared (retried while the broker comes up) and, with
``broker.auth: users`` (generated configs), one least-privilege broker user per component is created, its
password kept in ``broker.users_file`` (mode 0600); each child then connects as its own user.

Children log to ``<work dir>/logs/``. ``connections.json`` is written once every server answers ``/healthz``.
Stopping sends SIGTERM to every child, waits, then kills what is left.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from axis.config import Config, connections_for, generate_workdir, load_config, write_connections

DEMO_SERVERS = [("d-g22", "dedicated"), ("d-h53", "dedicated"), ("shared-1", "shared")]
DEMO_AGENCIES = [
    ("000.00.00.G22", "Văn phòng Chính phủ", "d-g22"),
    ("000.00.00.H53", "UBND tỉnh Tây Ninh", "d-h53"),
    ("000.00.00.G01", "Bộ Công an", "shared-1"),
    ("000.00.00.G03", "Bộ Giáo dục và Đào tạo", "shared-1"),
]
PROJECT_ROOT = Path(__file__).resolve().parent.parent


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

    def spawn(self, name: str, args: Sequence[str]) -> None:
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = (logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "axis", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=_child_env(), cwd=self.work_dir, start_new_session=True)
        out.close()
        self.procs.append((name, proc))

    def failed(self) -> list[str]:
        return [f"{n} (exit {p.returncode}, see {self.work_dir / 'logs' / (n + '.log')})"
                for n, p in self.procs if p.poll() is not None]

    def stop(self, timeout: float = 15.0) -> None:
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

    def wait(self) -> None:
        """Block until a child exits (then report it) — the foreground of ``axis up``."""
        while not self.failed():
            time.sleep(0.5)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start(config_path: Path, work_dir: Path, known: Mapping[str, Any] | None = None, *, routers: int | None = None,
          servers_per_host: int = 12, admin: bool = True, timeout: float = 60.0) -> Running:
    """Start every process of the config and return once all servers answer; writes connections.json."""
    config = load_config(config_path)
    run = Running(config, work_dir)
    cfg = str(config_path)
    from axis.brokerauth import BrokerAuthError
    from axis.brokersetup import prepare_broker_sync
    from axis.topology import TopologyError

    try:
        prepare_broker_sync(config, timeout=timeout)
    except (TopologyError, BrokerAuthError) as exc:
        raise StartError(f"preparing RabbitMQ: {exc}") from None
    try:
        for i in range(routers or config.routers):
            run.spawn(f"router-{i + 1}", ["router", "--config", cfg])
        ids = [s.id for s in config.servers]
        for h in range(0, len(ids), servers_per_host):
            group = ids[h : h + servers_per_host]
            run.spawn(f"host-{h // servers_per_host + 1}",
                      ["serve", "--config", cfg, *[a for sid in group for a in ("--server", sid)]])
        if admin and importlib.util.find_spec("axis.stats.admin") is not None:
            run.spawn("admin", ["admin", "--config", cfg])
        pending = {s.url for s in config.servers}
        deadline = time.monotonic() + timeout
        while pending:
            if run.failed():
                raise StartError("a process exited during start: " + "; ".join(run.failed()))
            if time.monotonic() > deadline:
                raise StartError(f"servers did not answer /healthz within {timeout:.0f}s: {sorted(pending)}")
            pending = {u for u in pending if not _healthy(u)}
            if pending:
                time.sleep(0.2)
        run.connections_path = write_connections(work_dir, connections_for(config, known))
        return run
    except BaseException:
        run.stop()
        raise
