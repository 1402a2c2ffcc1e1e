"""The router: consume submissions, verify, route by the directory, publish per recipient server, count, ack.

``axis.router.core`` decides (no I/O), ``axis.router.service`` is the aio-pika shell, ``axis.stats.counting``
the statistics records it writes.
"""

from axis.router.core import Outcome, RouterCore
from axis.router.service import RouterService, run_router

__all__ = ["Outcome", "RouterCore", "RouterService", "run_router"]
