"""The one-command demo's machinery: a fresh work directory for a scenario, the axis brought up as ``axis up``
in a child process, readiness, and a clean shutdown.

``prepare`` calls core's ``axis.config.generate_workdir`` (PKI, tokens, config.yaml) with the scenario's
directory; ``AxisProcess`` runs ``python -m axis up --config … --work-dir …`` (the very machinery of
``axis up``), waits until ``connections.json`` is written and every server answers ``/healthz``, and stops it
with SIGTERM (then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from axis.core.tlsconfig import client_context
from axis.sim.connections import Connections
from axis.sim.connections import from_dict as connections_from_dict
from axis.sim.scenario import Scenario

if TYPE_CHECKING:
    from axis.ops.up import Running

MARKER = ".axis-demo"


class DemoError(RuntimeError):
    """The demo cannot go on (work dir in use, the axis did not come up, …)."""


def fresh_workdir(work_dir: Path) -> None:
    """Make ``work_dir`` empty: created if missing, wiped if an earlier demo made it, else refused."""
    if work_dir.exists():
        if not work_dir.is_dir():
            raise DemoError(f"{work_dir}: exists and is not a directory")
        if any(work_dir.iterdir()):
            if not (work_dir / MARKER).exists():
                raise DemoError(f"{work_dir}: not empty and not made by `axis demo`; choose another --work-dir")
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / MARKER).write_text("made by `axis demo`; wiped by the next demo run in this directory\n")


#: The demo's own RabbitMQ vhost (when neither --amqp-url nor AXIS_AMQP_URL names one), emptied at every run.
DEMO_VHOST = "axis-demo"


def fresh_demo_vhost(host: str = "127.0.0.1", auth: tuple[str, str] = ("guest", "guest"), vhost: str = DEMO_VHOST
                     ) -> str | None:
    """The AMQP URL of an empty ``axis-demo`` vhost, re-created through the management API: the demo starts with
    empty queues, as with an empty work dir — no dead letter or half-routed document of an earlier run, and no
    other axis's queues touched (an axis on the default vhost is not this demo's). None (the default vhost, with a
    warning) when the management API cannot do it."""
    import logging

    from axis.broker.users import BrokerAdmin

    try:
        with BrokerAdmin(f"http://{host}:15672", auth, timeout=60) as admin:
            admin.recreate_vhost(vhost, auth[0])
    except httpx.HTTPError as exc:
        logging.getLogger("axis.sim.demo").warning(
            "cannot give the demo a fresh vhost %r (%s): using the default vhost, with whatever an earlier run left "
            "in its queues", vhost, exc)
        return None
    return f"amqp://{auth[0]}:{auth[1]}@{host}/{vhost}"


def prepare(
    sc: Scenario, work_dir: Path, *, base_port: int, amqp_url: str | None = None, routers: int | None = None
) -> tuple[Path, dict[str, Any]]:
    """PKI + config for the scenario's directory (core's generate_workdir, EC P-256 agency keys; HTTPS with a
    server certificate from the same CA). Every agency of a directory up to ``CSV_AGENCIES_ABOVE`` also gets its
    TLS client certificate (mutual TLS); a national-size directory does not (another ~0.4 ms per agency — 50 s at
    120,000 — for servers that do not ask for them: ``axis pki issue-client`` issues them when needed)."""
    from axis.config import CSV_AGENCIES_ABOVE, generate_workdir

    fresh_workdir(work_dir)
    agencies = sc.agency_list()
    kw: dict[str, Any] = {"amqp_url": amqp_url or os.environ.get("AXIS_AMQP_URL") or fresh_demo_vhost(),
                          "client_certs": len(agencies) <= CSV_AGENCIES_ABOVE}
    if routers:
        kw["routers"] = routers
    return generate_workdir(work_dir, agencies, sc.server_list(), base_port, "ec", **kw)


class AxisProcess:
    """The axis brought up with core's ``axis.ops.up.start`` (the machinery of ``axis up``: routers, endpoint-server
    hosts and the admin app as child processes in their own sessions, so Ctrl-C reaches the demo, which stops
    them cleanly). Falls back to running ``python -m axis up`` as one child when ``axis.ops.up`` is missing."""

    def __init__(self, config: Path, work_dir: Path, *, timeout: float = 240.0,
                 progress: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.work_dir = work_dir
        self.timeout = timeout
        self.progress = progress  # what the start waits for (axis.ops.progress.ProgressLine)
        self.log_path = work_dir / "axis-up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.running: Running | None = None

    def start(self, connections: dict[str, Any]) -> Connections:
        """Start everything; return once every server answers and connections.json is written."""
        try:
            from axis.ops import up
        except ImportError:  # the fallback below: `python -m axis up` as one child process
            self._spawn()
            return self._wait_ready(connections)
        try:
            self.running = up.start(self.config, self.work_dir, connections, timeout=self.timeout,
                                    progress=self.progress)
        except up.StartError as exc:
            raise DemoError(str(exc)) from None
        path = self.running.connections_path or self.work_dir / "connections.json"
        return _with_tokens(self.work_dir, path, connections)

    def alive(self) -> bool:
        if self.running is not None:
            return not self.running.failed()
        return self.proc is not None and self.proc.poll() is None

    def failures(self) -> str:
        if self.running is not None:
            return "; ".join(self.running.failed())
        return self._tail()

    def stop(self, grace: float = 20.0) -> None:
        if self.running is not None:
            self.running.stop(grace)
            self.running = None
            return
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)  # the child's own session: only what we started
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    # -- fallback: `python -m axis up` as one child process ------------------------------------------------------
    def _spawn(self) -> None:
        (self.work_dir / "connections.json").unlink(missing_ok=True)
        log = self.log_path.open("ab")
        cmd = [sys.executable, "-m", "axis", "up", "--config", str(self.config), "--work-dir", str(self.work_dir)]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
        log.close()

    def _tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _wait_ready(self, connections: dict[str, Any]) -> Connections:
        assert self.proc is not None
        path = self.work_dir / "connections.json"
        deadline = time.monotonic() + self.timeout
        pending = sorted({a["endpoint"] for a in connections["agencies"]} | {connections["admin"]["url"]})
        ca = connections.get("ca")
        with httpx.Client(timeout=2.0, verify=client_context(ca) if ca else True, trust_env=False) as http:
            while True:
                if self.proc.poll() is not None:
                    raise DemoError(f"`axis up` exited with status {self.proc.returncode}:\n{self._tail()}")
                if path.exists():
                    pending = [u for u in pending if not _healthy(http, u)]
                    if not pending:
                        break
                if time.monotonic() > deadline:
                    what = "connections.json" if not path.exists() else f"{len(pending)} servers ({pending[0]}…)"
                    raise DemoError(f"the axis did not come up within {self.timeout:.0f}s: waiting for {what}\n"
                                    f"{self._tail()}")  # fmt: skip
                time.sleep(0.3)
        return _with_tokens(self.work_dir, path, connections)


def _with_tokens(work_dir: Path, path: Path, connections: dict[str, Any]) -> Connections:
    """connections.json must let a new user act as any agency: if the written file lacks tokens, write ours."""
    written = orjson.loads(path.read_bytes()) if path.exists() else {}
    agencies = written.get("agencies") or []
    if not agencies or not all(a.get("token") for a in agencies) or not (written.get("admin") or {}).get("token"):
        from axis.config import write_connections

        path = write_connections(work_dir, connections)
        written = connections
    return connections_from_dict(written, path=path)


def _healthy(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}/healthz").status_code == 200
    except httpx.HTTPError:
        return False
