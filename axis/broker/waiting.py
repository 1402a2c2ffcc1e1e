"""A component's FIRST broker connection retried like the later ones: with back-off, up to a clear deadline.

aio-pika's robust connection reconnects by itself after an outage, but only once it has connected once: its first
``connect`` raises at once when the broker is down, still starting, or does not have the vhost yet (creating a
vhost took minutes on a busy broker). A router, a log writer or an endpoint host started a little before the
broker would exit with status 1, and ``axis up`` report "a process exited during start". :func:`connect_with_retry`
waits instead, logging one line per attempt with what failed and how long it still waits, then gives up with
:class:`BrokerUnavailable` naming the broker (without its password) and the last error.

The deadline comes from the environment variable ``AXIS_BROKER_WAIT`` (seconds; default
:data:`DEFAULT_BROKER_WAIT`), so ``axis up`` can give its children the deadline it shows the operator.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from aiormq.exceptions import AMQPError

from axis.core.backoff import Backoff

T = TypeVar("T")
log = logging.getLogger("axis.broker")

ENV_BROKER_WAIT = "AXIS_BROKER_WAIT"
DEFAULT_BROKER_WAIT = 300.0
#: What a first connection may fail with while the broker comes up: refused or reset TCP, a handshake cut short,
#: a vhost that does not exist yet (RabbitMQ closes the connection: an AMQP protocol error), a timeout.
RETRYABLE: tuple[type[BaseException], ...] = (AMQPError, ConnectionError, OSError, TimeoutError)


class BrokerUnavailable(ConnectionError):
    """The broker did not accept a connection before the deadline."""


def redact(url: str) -> str:
    """``scheme://host:port/vhost`` of an AMQP URL: no user, no password."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    return f"{parts.scheme}://{parts.hostname}:{parts.port or default}{parts.path or '/'}"


def broker_wait(default: float = DEFAULT_BROKER_WAIT) -> float:
    """The first-connection deadline in seconds (``AXIS_BROKER_WAIT``, else ``default``); a bad value is ignored."""
    raw = os.environ.get(ENV_BROKER_WAIT, "")
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


async def connect_with_retry(open_connection: Callable[[], Awaitable[T]], url: str, *,
                             backoff: Backoff | None = None) -> T:
    """``await open_connection()`` until it succeeds, retrying :data:`RETRYABLE` failures per ``backoff`` (default:
    :class:`Backoff` with the :func:`broker_wait` deadline); :class:`BrokerUnavailable` after the deadline."""
    policy = backoff or Backoff(deadline=broker_wait())
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempt = 0
    while True:
        attempt += 1
        try:
            connection = await open_connection()
        except RETRYABLE as exc:
            waited = loop.time() - started
            delay = policy.next_delay(attempt, waited)
            if delay is None:
                raise BrokerUnavailable(
                    f"RabbitMQ at {redact(url)} did not accept a connection within {policy.deadline:.0f}s "
                    f"({attempt} attempts; last: {exc!r}); is it running, and does the vhost exist? "
                    f"({ENV_BROKER_WAIT} sets how long to wait)") from None
            log.warning("RabbitMQ at %s not reachable yet (%r); attempt %d, retrying in %.1fs, giving up in %.0fs",
                        redact(url), exc, attempt, delay, max(0.0, policy.deadline - waited))
            await asyncio.sleep(delay)
            continue
        if attempt > 1:
            log.info("connected to RabbitMQ at %s after %d attempts (%.1fs)", redact(url), attempt,
                     loop.time() - started)
        return connection


#: ``progress(waited, deadline, error)``: called after each failed attempt of :func:`wait_for_broker`.
Progress = Callable[[float, float, BaseException], None]


async def _probe(url: str) -> None:
    """One attempt: an AMQP connection opened and closed (the vhost must exist); for ``amqps://`` only the TCP port
    (the client certificate is issued later, by the broker's preparation)."""
    parts = urlsplit(url)
    if parts.scheme == "amqps":
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 5671), 10)
        writer.close()
        return
    import aio_pika

    connection = await aio_pika.connect(url, timeout=10)
    await connection.close()


async def wait_for_broker(url: str, *, backoff: Backoff | None = None, progress: Progress | None = None) -> float:
    """Wait until the broker at ``url`` accepts a connection (its vhost exists); returns the seconds waited.
    ``progress`` hears of every failed attempt; :class:`BrokerUnavailable` after the deadline."""
    policy = backoff or Backoff(deadline=broker_wait())
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempt = 0
    while True:
        attempt += 1
        try:
            await _probe(url)
            return loop.time() - started
        except RETRYABLE as exc:
            waited = loop.time() - started
            delay = policy.next_delay(attempt, waited)
            if delay is None:
                raise BrokerUnavailable(
                    f"RabbitMQ at {redact(url)} did not accept a connection within {policy.deadline:.0f}s "
                    f"(last: {exc!r}); is it running, and does the vhost exist?") from None
            if progress is not None:
                progress(waited, policy.deadline, exc)
            await asyncio.sleep(delay)


def wait_for_broker_sync(url: str, *, backoff: Backoff | None = None, progress: Progress | None = None) -> float:
    """:func:`wait_for_broker` from synchronous code (``axis up``; in a worker thread when an event loop runs in
    this one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait_for_broker(url, backoff=backoff, progress=progress))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait_for_broker(url, backoff=backoff, progress=progress)).result()
