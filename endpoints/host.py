"""A host process for one or several logical endpoint servers, each a FastAPI app on its own port.

Each server has its own store, channels, consumer and uvicorn server, and — with per-component broker users
(``broker.auth: users``) — its own AMQP connection as its own broker user (least privilege is per endpoint
server, not per process; a dozen connections per host cost the broker little). In development mode
(``shared``) the servers of a host share one robust AMQP connection. SIGINT/SIGTERM stop them cleanly (uvicorn
finishes in-flight requests; consumers are cancelled, unacked deliveries go back to their queues).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

import uvicorn

from axis import schema
from axis.config import Config
from axis.reload import install_sighup
from axis.router.counting import open_counter
from axis.router.service import make_verifier
from axis.transport import connect
from endpoints.app import create_app
from endpoints.gate import GatedApp
from endpoints.server import EndpointServer

log = logging.getLogger("axis.endpoint")

try:  # uvicorn's C parser (a dependency); h11, pure Python, costs an endpoint host ~8 % of its CPU
    import httptools  # noqa: F401

    _HTTP = "httptools"
except ImportError:  # pragma: no cover - an install without it still serves, more slowly
    _HTTP = "h11"


async def serve(config: Config, server_ids: Sequence[str], *, log_level: str = "warning") -> None:
    stats = await open_counter(config.stats_url)  # one statistics store per host process, shared by its servers
    # One Verifier pair per process (stateless per call, thread-safe; its certificate cache is shared).
    verifier, unsigned_ok = make_verifier(config), make_verifier(config, require_signature=False)
    schema.preload()
    servers = [EndpointServer(config, sid, stats=stats, verifier=verifier, verifier_unsigned_ok=unsigned_ok)
               for sid in server_ids]

    async def apply(new: Config) -> None:
        """Hot reload (SIGHUP, axis.reload): every logical server of this host takes the new configuration."""
        pair = await asyncio.to_thread(lambda: (make_verifier(new), make_verifier(new, require_signature=False)))
        for s in servers:
            await s.reload(new, verifier=pair[0], verifier_unsigned_ok=pair[1])

    install_sighup(config, apply, "host " + ",".join(server_ids))
    connection = None if config.broker.per_component else await connect(config.amqp_url)
    for s in servers:
        await s.start(connection)
    uvis = [
        uvicorn.Server(uvicorn.Config(GatedApp(create_app(s), s.gate),  # requests vs. hot reloads
                                      host=s.server.host, port=s.server.port, log_level=log_level,
                                      lifespan="off", access_log=False, http=_HTTP,
                                      # the failed-authentication limit is per peer address: do not let
                                      # X-Forwarded-For (trusted from 127.0.0.1 by default) choose it
                                      proxy_headers=False))
        for s in servers
    ]
    for u in uvis:
        u.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(u.serve()) for u in uvis]
    try:
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        for u in uvis:
            u.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in servers:
            await s.stop()
        if connection is not None:
            await connection.close()
        await stats.close()
