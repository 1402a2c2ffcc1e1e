"""Hot reload of ``config.yaml`` in a running process (routers, endpoint hosts): SIGHUP → reload → acknowledgement.

On SIGHUP the process reads the configuration file again (off the event loop), hands it to the component's
``apply`` coroutine (which swaps its directory, agency sets, tokens and keys between messages) and, when it
runs under the ``axis up`` supervisor (env ``AXIS_CONTROL_DIR``), writes an acknowledgement
``<dir>/reload-<pid>.json`` = ``{"digest": <SHA-256 of the file it loaded>, "ok": bool, "error": str}``. The
same file is written once when the handler is installed (``"ready": true``): the supervisor never signals a
process before that (SIGHUP's default action would end it). Reloads are serialized; a SIGHUP during a reload
runs one more afterwards. A configuration that does not load leaves the process as it was (``"ok": false``).
Without a supervisor the acknowledgement is only logged: ``kill -HUP <pid>`` works by hand too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from axis.config import Config, load_config

ENV_CONTROL_DIR = "AXIS_CONTROL_DIR"
log = logging.getLogger("axis.config.reload")


def config_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ack_path(control_dir: Path, pid: int) -> Path:
    return control_dir / f"reload-{pid}.json"


def read_ack(control_dir: Path, pid: int) -> dict[str, Any] | None:
    try:
        value = orjson.loads(ack_path(control_dir, pid).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def write_ack(digest: str, ok: bool, error: str = "", *, ready: bool = False) -> None:
    directory = os.environ.get(ENV_CONTROL_DIR)
    if not directory:
        return
    path = ack_path(Path(directory), os.getpid())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"digest": digest, "ok": ok, "error": error, "ready": ready}))
    tmp.replace(path)


class Reloader:
    """Serialized reloads of one process's configuration (see the module docstring)."""

    def __init__(self, path: Path, apply: Callable[[Config], Awaitable[None]], name: str) -> None:
        self.path = path
        self.apply = apply
        self.name = name
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[bool]] = set()

    def install(self) -> None:
        """Handle SIGHUP in the running loop, then announce readiness to the supervisor."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request)
        try:
            write_ack(config_digest(self.path), True, ready=True)
        except OSError:
            log.exception("%s: cannot write the reload acknowledgement", self.name)

    def request(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name=f"{self.name}-reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        async with self._lock:
            digest = ""
            try:
                digest = await asyncio.to_thread(config_digest, self.path)
                config = await asyncio.to_thread(load_config, self.path)
                await self.apply(config)
            except Exception as exc:
                log.exception("%s: reloading %s failed; running on with the previous configuration",
                              self.name, self.path)
                write_ack(digest, False, f"{type(exc).__name__}: {exc}")
                return False
            log.info("%s: reloaded %s (%s)", self.name, self.path, digest[:12])
            write_ack(digest, True)
            return True


def install_sighup(config: Config, apply: Callable[[Config], Awaitable[None]], name: str) -> Reloader | None:
    """A :class:`Reloader` for ``config``'s file, installed in the running loop (None: no file to reload)."""
    if config.path is None:
        return None
    reloader = Reloader(config.path, apply, name)
    reloader.install()
    return reloader
