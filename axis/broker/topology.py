"""Who declares the broker topology, and how components attach to it.

The topology (exchanges and queues of :mod:`axis.broker.transport`) is declared ONCE, by the provisioning account
(``amqp_url``), when ``axis up`` starts (:func:`declare_with_retry`: it waits while the broker comes up or its
quorum queues elect their leaders). Components with their own least-privilege users (``broker.auth: users``)
may not declare anything (their ``configure`` permission is empty): they only look the exchanges and their
queue up (passive declares, :func:`attach_exchanges`, :func:`attach_queue`) and wait — up to ``timeout``
seconds, logging what they wait for — when the topology is not declared yet, then fail with
:class:`TopologyMissing` naming the cause. In development mode (``broker.auth: shared``) a component still
declares what it uses itself, so a lone ``axis router`` or ``axis serve`` runs against a bare broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from aiormq.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from axis.broker.transport import Exchanges, declare_topology, open_channel
from axis.core.wire import EX_DELIVER, EX_DLX, EX_EVIDENCE, EX_SUBMIT

log = logging.getLogger("axis.broker.topology")


class TopologyError(RuntimeError):
    """The topology could not be declared (broker unreachable, or the account may not declare it)."""


class TopologyMissing(TopologyError):
    """A component found the exchanges or its queue missing: the provisioning step did not run."""


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path or '/'}"


async def declare_with_retry(url: str, server_ids: Iterable[str], *, timeout: float = 60.0) -> None:
    """Declare the whole topology with the provisioning account at ``url``; retry connection failures and
    transient broker errors (a quorum queue whose cluster is not formed yet) until ``timeout``."""
    ids = list(server_ids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.25
    while True:
        try:
            conn = await aio_pika.connect(url, timeout=10)
            try:
                await declare_topology(await conn.channel(), ids)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()
            return
        except (ChannelAccessRefused, ChannelPreconditionFailed) as exc:
            raise TopologyError(f"the account of {_redact(url)} may not declare the axis topology: {exc}") from None
        except (AMQPConnectionError, ConnectionError, OSError, TimeoutError, AMQPError) as exc:
            if loop.time() + delay > deadline:
                raise TopologyError(f"could not declare the axis topology on {_redact(url)} within {timeout:.0f}s: "
                                    f"{exc!r}") from None
            log.warning("broker not ready (%r); declaring the topology again in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _attach(connection: AbstractRobustConnection, what: str,
                  get: Callable[[AbstractChannel], Awaitable[Any]], *, timeout: float,
                  prefetch: int = 0) -> tuple[AbstractChannel, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    warned = False
    while True:
        channel = await open_channel(connection, prefetch=prefetch)
        try:
            return channel, await get(channel)
        except ChannelNotFoundEntity as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            if loop.time() > deadline:
                raise TopologyMissing(
                    f"{what} not declared on the broker after {timeout:.0f}s ({exc}): the topology is declared by "
                    "`axis up` with the provisioning account (axis.broker.topology.declare_with_retry); start the axis "
                    "with it, or run that step first") from None
            if not warned:
                log.warning("%s not declared yet; waiting up to %.0fs for the provisioning step", what, timeout)
                warned = True
            await asyncio.sleep(0.5)


async def attach_exchanges(connection: AbstractRobustConnection, *, declare: Iterable[str] | None = None,
                           timeout: float = 30.0) -> tuple[AbstractChannel, Exchanges]:
    """A confirm channel and the four exchanges (submit, deliver, dead letters, evidence): looked up (passive),
    or declared with the queues of the servers in ``declare`` when that is given (development mode, the
    component's account may configure)."""

    async def get(channel: AbstractChannel) -> Exchanges:
        if declare is not None:
            return await declare_topology(channel, declare)
        names = (EX_SUBMIT, EX_DELIVER, EX_DLX, EX_EVIDENCE)
        return Exchanges(*[await channel.get_exchange(n, ensure=True) for n in names])

    return await _attach(connection, "the axis exchanges", get, timeout=timeout)


async def attach_queue(connection: AbstractRobustConnection, name: str, *, prefetch: int,
                       timeout: float = 30.0) -> tuple[AbstractChannel, AbstractQueue]:
    """A channel (with ``prefetch``) and the existing queue ``name`` (passive declare: the robust channel then
    restores its consumer after a reconnect)."""

    async def get(channel: AbstractChannel) -> AbstractQueue:
        return await channel.declare_queue(name, passive=True)

    return await _attach(connection, f"queue {name}", get, timeout=timeout, prefetch=prefetch)
