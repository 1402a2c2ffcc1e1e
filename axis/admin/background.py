"""The admin app's background tasks (the log monitor, the dead-letter scan, reminders, probes, certificates): each
feature starts its own loop and, on shutdown, cancels it with :func:`stop_task`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (when there is one) and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
