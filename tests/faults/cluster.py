"""A throw-away 3-node RabbitMQ cluster on this machine, plus a tiny TCP balancer in front of it.

The nodes are separate Erlang nodes (``axis-f1@localhost``…) with their own AMQP, distribution and management
ports and their own data and log directories under a temporary directory; they share an Erlang cookie that
lives in that directory (``HOME`` of the node and CLI processes), so the system broker on :5672 and its cookie
are never touched. Node 1 starts the cluster, nodes 2 and 3 ``join_cluster`` it.

:class:`Balancer` is what a production deployment puts in front of a cluster (HAProxy, a DNS name with
several A records): one address for clients; each new TCP connection goes to the next node that accepts it.
Processes that know one AMQP URL (``connect_robust``) thereby fail over to a live node when theirs dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

RABBIT_BIN = Path(os.environ.get("AXIS_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))
COOKIE = "AXISFAULTSCLUSTERCOOKIE"


def rabbit_available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and (RABBIT_BIN / "rabbitmqctl").exists()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Node:
    index: int
    name: str
    amqp_port: int
    dist_port: int
    mgmt_port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.base / "pid"


class Cluster:
    """``size`` RabbitMQ nodes under ``root``; ports ``port_base+i`` (AMQP), ``+10000`` (mgmt), ``+20000`` (dist)."""

    def __init__(self, root: Path, size: int = 3, port_base: int = 5701, prefix: str = "axis-f", *,
                 listeners: Callable[[Node], str] | None = None, plugins: Sequence[str] = ()) -> None:
        """``listeners``: a node's listener lines for rabbitmq.conf (default: plain AMQP on its port);
        ``plugins``: enabled besides the management plugin."""
        self.root = root
        self.listeners = listeners or (lambda n: f"listeners.tcp.1 = 127.0.0.1:{n.amqp_port}\n")
        self.plugins = ["rabbitmq_management", *plugins]
        self.home = root / "home"
        self.nodes = [
            Node(i, f"{prefix}{i + 1}@localhost", port_base + i, port_base + 20000 + i, port_base + 10000 + i,
                 root / f"n{i + 1}")
            for i in range(size)
        ]

    # -- environment -------------------------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env |= {
            "HOME": str(self.home),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "LC_ALL": "C.UTF-8",
        }
        return env

    def _node_env(self, node: Node) -> dict[str, str]:
        return self._base_env() | {
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def prepare(self) -> None:
        busy = [p for n in self.nodes for p in (n.amqp_port, n.dist_port, n.mgmt_port) if not port_free(p)]
        if busy:
            raise RuntimeError(f"ports already in use: {busy}")
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(COOKIE)
        cookie.chmod(0o400)
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        for n in self.nodes:
            n.base.mkdir(parents=True, exist_ok=True)
            (n.base / "rabbitmq.conf").write_text(
                self.listeners(n)
                + f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {n.mgmt_port}\n"
                "loopback_users = none\n"
                # the nodes share 2 cores with everything else: keep Erlang schedulers quiet
                "collect_statistics_interval = 10000\n"
            )

    # -- control -----------------------------------------------------------------------------------------------
    def ctl(self, node: Node, *args: str, timeout: float = 120, check: bool = True) -> str:
        out = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self._base_env(), capture_output=True, text=True, timeout=timeout,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name}: {out.stdout}{out.stderr}")
        return out.stdout

    def launch(self, node: Node) -> None:
        log = (node.base / "console.log").open("ab")
        node.proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")], env=self._node_env(node), stdout=log, stderr=subprocess.STDOUT,
            cwd=node.base, start_new_session=True,
        )

    def await_up(self, node: Node, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited: see {node.base / 'console.log'}")
            if node.pid_file.exists():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.ctl(node, "await_startup", "--timeout", "60", timeout=70)
                    return
            time.sleep(1)
        raise RuntimeError(f"{node.name} did not start within {timeout}s")

    def start(self) -> None:
        self.prepare()
        for n in self.nodes:
            self.launch(n)
        for n in self.nodes:
            self.await_up(n)
        first = self.nodes[0]
        for n in self.nodes[1:]:
            self.ctl(n, "stop_app")
            self.ctl(n, "reset")
            self.ctl(n, "join_cluster", first.name)
            self.ctl(n, "start_app")
        for n in self.nodes:
            self.await_up(n)
        running = self.running_nodes()
        if len(running) != len(self.nodes):
            raise RuntimeError(f"cluster formed with {running} only")

    def running_nodes(self) -> list[str]:
        for n in self.nodes:
            if self.is_up(n):
                with httpx.Client(auth=("guest", "guest"), timeout=10) as http:
                    nodes = http.get(f"{self.mgmt_url(n)}/api/nodes").json()
                return sorted(x["name"] for x in nodes if x.get("running"))
        return []

    def is_up(self, node: Node) -> bool:
        return node.proc is not None and node.proc.poll() is None

    def beam_pid(self, node: Node) -> int:
        return int(node.pid_file.read_text().strip())

    def kill(self, node: Node) -> None:
        """kill -9 the node's Erlang VM: no clean shutdown, no goodbye to clients or peers."""
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(self.beam_pid(node), signal.SIGKILL)
        if node.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=30)
        node.pid_file.unlink(missing_ok=True)

    def restart(self, node: Node, wait: bool = True) -> None:
        self.launch(node)
        if wait:
            self.await_up(node)

    def restart_app(self, node: Node) -> None:
        """``stop_app`` + ``start_app``: the RabbitMQ application restarts, the Erlang VM stays."""
        self.ctl(node, "stop_app")
        self.ctl(node, "start_app")

    def stop(self) -> None:
        for n in self.nodes:
            if self.is_up(n):
                with contextlib.suppress(Exception):
                    self.ctl(n, "stop", timeout=60)
        for n in self.nodes:
            self.kill(n)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- addresses ---------------------------------------------------------------------------------------------
    def mgmt_url(self, node: Node) -> str:
        return f"http://127.0.0.1:{node.mgmt_port}"

    def amqp_url(self, node: Node, vhost: str = "", user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{node.amqp_port}/{vhost}"

    def live_mgmt(self) -> str:
        for n in self.nodes:
            if self.is_up(n):
                return self.mgmt_url(n)
        raise RuntimeError("no node is up")

    def node_named(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def queue_leader(self, vhost: str, queue: str) -> Node:
        from urllib.parse import quote

        with httpx.Client(auth=("guest", "guest"), timeout=10) as http:
            info = http.get(f"{self.live_mgmt()}/api/queues/{quote(vhost, safe='')}/{queue}").json()
        return self.node_named(info.get("leader") or info["node"])


class Balancer:
    """A TCP balancer on 127.0.0.1:``port`` that sends each new connection to the next live backend port."""

    def __init__(self, backends: list[int], port: int = 0) -> None:
        self.backends = backends
        self._next = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        #: when set, new connections try this backend port first (to put clients on a chosen node)
        self.prefer: int | None = None
        self._thread = threading.Thread(target=self._accept, daemon=True, name="balancer")
        self.connections = 0

    def __enter__(self) -> Balancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()

    def _backend(self) -> socket.socket | None:
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.backends)
        order = [self.backends[(start + k) % len(self.backends)] for k in range(len(self.backends))]
        if self.prefer in order:
            order.remove(self.prefer)
            order.insert(0, self.prefer)
        for port in order:
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", port), timeout=2)
        return None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            backend = self._backend()
            if backend is None:
                client.close()
                continue
            backend.settimeout(None)
            self.connections += 1
            for a, b in ((client, backend), (backend, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
