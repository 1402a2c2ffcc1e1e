"""The supervisor's control channel: a Unix socket that only the user running ``axis up`` can reach.

``axis up`` (axis.ops.up.start) listens on ``<control dir>/control.sock``; the control dir (mode 0700) is
``<work dir>/.axis-control``, or a private directory under the system temp dir when that path is too long for
a Unix socket. Every child process gets it in ``AXIS_CONTROL_DIR`` (the admin app asks the supervisor through
it; routers and hosts write their reload acknowledgements there, see axis.config.reload).

Protocol: one JSON object per connection, newline-terminated, each way. Request ``{"op": "move", "agency":
CODE, "server": ID[, "port": N][, "kind": "dedicated"|"shared"]}`` or ``{"op": "ping"}``; answer ``{"status":
HTTP status, "body": {...}}`` — on errors ``body`` is ``{"reason": CODE|null, "detail": TEXT}``. Requests are
handled one at a time (moves never overlap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes on Linux, 104 on the BSDs

log = logging.getLogger("axis.ops.control")
Handler = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class ControlError(RuntimeError):
    """No supervisor answers on the control socket."""


def control_dir_for(work_dir: Path) -> Path:
    """The control dir for a work dir: created private (0700); short enough to hold the socket."""
    wanted = work_dir / ".axis-control"
    if len(str(wanted / SOCKET_NAME).encode()) <= _SUN_PATH_MAX:
        wanted.mkdir(parents=True, exist_ok=True)
        wanted.chmod(0o700)
        return wanted
    return Path(tempfile.mkdtemp(prefix="axis-ctl-"))  # mkdtemp makes it 0700


class ControlServer:
    """Serves ``handler`` on the control socket in a daemon thread, one request at a time."""

    def __init__(self, control_dir: Path, handler: Handler) -> None:
        self.path = control_dir / SOCKET_NAME
        self.handler = handler
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self.path.chmod(0o600)
        self._sock.listen(8)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="axis-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    self._one(conn)
                except Exception:
                    log.exception("control: request failed")

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(30.0)  # reading the request; the handler itself may take longer
        data = b""
        while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            request = orjson.loads(data)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            status, body = 400, {"reason": None, "detail": "control request: expected one JSON object"}
        else:
            try:
                status, body = self.handler(request)
            except Exception as exc:
                log.exception("control: %s failed", request.get("op"))
                status, body = 500, {"reason": None, "detail": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            conn.sendall(orjson.dumps({"status": status, "body": body}) + b"\n")

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5.0)
        self.path.unlink(missing_ok=True)


def socket_from_env() -> Path | None:
    """The supervisor's control socket, when this process runs under ``axis up``."""
    directory = os.environ.get("AXIS_CONTROL_DIR")
    return Path(directory) / SOCKET_NAME if directory else None


async def request(path: Path, payload: dict[str, Any], timeout: float = 300.0) -> tuple[int, dict[str, Any]]:
    """Send one request to the supervisor and wait for its answer (ControlError when nobody answers)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 10.0)
    except (OSError, TimeoutError) as exc:
        raise ControlError(f"no supervisor answers on {path}: {exc}") from None
    try:
        writer.write(orjson.dumps(payload) + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError) as exc:
        raise ControlError(f"the supervisor did not answer: {type(exc).__name__} {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    try:
        answer = orjson.loads(line)
        return int(answer["status"]), dict(answer["body"])
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"the supervisor answered {line[:200]!r}") from None
