"""One broker link for all the endpoint servers of a host process: one connection, and their messages bundled together.

A host process runs several logical endpoint servers (:mod:`endpoints.host`). Each used to hold its own AMQP
connection as its own broker user and to bundle only its own messages: with the seed's 70 servers on two hosts,
each server saw a few documents a second, so the doors published one message per submission and per status
(~51,000 of the full replay's 66,716 publishes), and every server's writes were system calls of their own.

A :class:`HostLink` is one connection as the host's own broker user (:func:`axis.broker.users.host_user`: the
SHA-256 of its sorted server ids names it, and ``axis up`` gives it exactly what its servers may do together) and
three :class:`~axis.broker.transport.Coalescer` shared by all the servers of the host:

- ``documents``: what the doors checked and submit, as ``document-bundle`` messages (a document over
  :data:`axis.core.bundle.BUNDLE_DOCUMENT_BYTES` goes alone, as before);
- ``statuses``: the status 01s the servers' deliveries produce, as ``status-bundle`` messages (waiting up to
  :data:`endpoints.delivery.STATUS_LINGER_SECONDS` for company, one bundle in flight, as each server did);
- ``agency_statuses``: the statuses agencies send (``POST /v1/documents/{id}/status``), as ``status-bundle``
  messages too, but without a wait: the client waits for the confirm, so only the statuses that arrive while the
  previous ones await theirs go together (each server published them one message each).

Every item names its server (``x-axis-server`` in its meta) and every message of the link lists the host's
servers (``x-axis-host-servers``, :class:`~axis.broker.transport.Publisher`'s ``headers``). The router believes
the list only from the host user of exactly that list, and an item's server only when it is in the list
(:func:`axis.broker.users.authenticated_origin`, :meth:`axis.router.core.RouterCore._bundle`): a host can speak for
its own servers, which it could anyway (it holds their credentials), and for no other. Each item is still decided
alone; a bundle changes nothing but the number of messages.

When there is no host user to connect as (a single server, or ``axis serve`` started by hand for a set ``axis up``
did not provision), or the list of servers would not fit a message's headers (:data:`HOST_LIST_BYTES`),
:meth:`HostLink.open` returns None and each server connects as its own user, as before. With
shared broker users (development), the link is the host's one connection and the router trusts the headers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from axis.broker.topology import attach_exchanges
from axis.broker.transport import Coalescer, Connection, Publisher, connect
from axis.broker.users import BrokerAuthError, component_url, host_user, publisher_user_id
from axis.config import Config
from axis.core import bundle
from axis.core.wire import (
    EX_SUBMIT,
    H_HOST_SERVERS,
    H_KIND,
    H_SERVER,
    HEADER_LIST_ITEMS,
    KIND_DOCUMENT,
    KIND_DOCUMENT_BUNDLE,
    KIND_STATUS_BUNDLE,
    Outgoing,
    submission,
)
from endpoints.delivery import STATUS_LINGER_SECONDS

log = logging.getLogger("axis.endpoint")

#: the most bytes the list of a host's servers may take in a message's headers (AMQP: a 5-byte prefix per id): every
#: header of a message travels in one content-header frame, 128 KiB by default, beside the message's own headers
#: (a refusal names up to 1,000 agencies). A longer list — hundreds of servers with long ids — and the host's
#: servers connect each as its own user instead
HOST_LIST_BYTES = 32 * 1024


def list_fits(server_ids: Sequence[str]) -> bool:
    """Whether ``x-axis-host-servers`` naming ``server_ids`` fits the headers of every message (see
    :data:`HOST_LIST_BYTES`) and is never cut (:data:`axis.core.wire.HEADER_LIST_ITEMS`)."""
    return (len(server_ids) <= HEADER_LIST_ITEMS
            and sum(5 + len(sid.encode()) for sid in server_ids) <= HOST_LIST_BYTES)


def submit_bundle_bytes(config: Config) -> int:
    """The most bytes of documents a door's bundle holds: :data:`axis.core.bundle.BUNDLE_BYTES`, and never more than
    one inline document may be — the router's prefetch is sized by that (``axis.router.blobs.prefetch_for``)."""
    return min(bundle.BUNDLE_BYTES, config.limits.inline_limit)


def body_size(item: bundle.Item) -> int:
    return len(item.body)


class HostLink:
    """The connection, publisher and coalescers the servers of one host process share (see the module docstring)."""

    def __init__(self, connection: Connection, publisher: Publisher, server_ids: Sequence[str], *,
                 max_bytes: int) -> None:
        self.connection = connection
        self.publisher = publisher
        self.server_ids = tuple(server_ids)
        self.documents: Coalescer[bundle.Item] = Coalescer(self._publish_documents, size=body_size,
                                                           max_bytes=max_bytes)
        self.statuses: Coalescer[bundle.Item] = Coalescer(self._publish_statuses, inflight=1,
                                                          linger=STATUS_LINGER_SECONDS)
        self.agency_statuses: Coalescer[bundle.Item] = Coalescer(self._publish_statuses)

    @classmethod
    async def open(cls, config: Config, server_ids: Sequence[str]) -> HostLink | None:
        """The link of a host serving ``server_ids``, connected; None when each server must connect as itself."""
        ids = sorted(set(server_ids))
        if not list_fits(ids):
            log.info("host of %d servers: their list is too long for a message's headers; each server connects "
                     "as its own user", len(ids))
            return None
        if config.broker.per_component:
            if len(ids) < 2:
                return None
            user = host_user(ids)
            try:
                url = component_url(config, user)
            except BrokerAuthError:
                log.info("host of %d servers: no broker user %s provisioned for this set (axis up provisions "
                         "one per host it starts); each server connects as its own user", len(ids), user)
                return None
        else:
            url, user = config.amqp_url, ""
        connection = await connect(url)
        _, exchanges = await attach_exchanges(connection, declare=None if config.broker.per_component else ids)
        publisher = Publisher(exchanges, user_id=publisher_user_id(config, user) if user else None,
                              headers={H_HOST_SERVERS: ids})
        return cls(connection, publisher, ids, max_bytes=submit_bundle_bytes(config))

    async def close(self) -> None:
        await self.connection.close()

    async def _publish_documents(self, items: list[bundle.Item]) -> None:
        if len(items) == 1:
            meta = dict(items[0].meta)
            server = meta.pop(H_SERVER)
            await self.publisher.publish(submission(items[0].body, server, KIND_DOCUMENT, **meta))
        else:
            await self.publisher.publish(Outgoing(EX_SUBMIT, "", bundle.pack(items),
                                                  {H_KIND: KIND_DOCUMENT_BUNDLE}))

    async def _publish_statuses(self, items: list[bundle.Item]) -> None:
        await self.publisher.publish(Outgoing(EX_SUBMIT, "", bundle.pack(items), {H_KIND: KIND_STATUS_BUNDLE}))
