"""Preparing the broker for an axis, with the provisioning account (``amqp_url``): what ``axis up`` does first.

1. declare the topology (every exchange and queue, one delivery queue per configured server), retrying while the
   broker starts or its quorum queues elect leaders (:func:`axis.broker.topology.declare_with_retry`);
2. with ``broker.auth: users``, create or update one least-privilege user per component (and one per host process
   of several servers) and write their passwords to ``broker.users_file`` (:func:`axis.broker.users.provision_config`).

With ``broker.tls`` (AMQPS), every component's client certificate — and the provisioning account's — is issued
(or renewed) from the axis CA first (:func:`axis.broker.users.issue_component_certificates`), and only
``axis-admin`` keeps a password (for the management HTTP API).

Idempotent: run it again after a configuration change (a new server, an agency moved) before starting the new
processes. Raises :class:`axis.broker.topology.TopologyError` or :class:`axis.broker.users.BrokerAuthError` with a
message that says what to do.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from axis.broker.topology import declare_with_retry
from axis.broker.users import BrokerUser, issue_component_certificates, provision_config, provisioning_url, users_of
from axis.config import Config


async def prepare_broker(config: Config, *, timeout: float = 60.0,
                         host_groups: Sequence[Sequence[str]] | None = None,
                         prune: bool = False) -> list[BrokerUser]:
    """``host_groups``: the server sets of the host processes about to run, each of more than one server gets its
    host user (default: what ``axis up`` starts, :func:`axis.broker.users.default_host_groups`); ``prune``:
    the axis's other host and server users are deleted (:func:`axis.broker.users.provision_config`)."""
    if config.broker.tls:  # the provisioning account needs its certificate before it can declare anything
        names = [u.name for u in users_of(config, host_groups)]
        await asyncio.to_thread(issue_component_certificates, config, names)
    await declare_with_retry(provisioning_url(config), [s.id for s in config.servers], timeout=timeout)
    if not config.broker.per_component:
        return []
    return await asyncio.to_thread(functools.partial(provision_config, config, host_groups, prune=prune))


def prepare_broker_sync(config: Config, *, timeout: float = 60.0,
                        host_groups: Sequence[Sequence[str]] | None = None,
                        prune: bool = False) -> list[BrokerUser]:
    """:func:`prepare_broker` from synchronous code (in a worker thread when an event loop runs in this one)."""
    job = prepare_broker(config, timeout=timeout, host_groups=host_groups, prune=prune)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(job)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, job).result()
