"""Endpoint-server liveness as Prometheus gauges, from the admin app's prober (:mod:`axis.admin.probe`), so that an
alert can say "a server has not been seen" (``deploy/prometheus/axis-rules.yml``):

- ``axis_server_up{server}`` — 1 while the server was seen within ``3 × poll_seconds`` (at least 5 s), as the
  dashboard's servers table says, else 0;
- ``axis_server_seconds_since_seen{server}`` — seconds since it was last seen alive; a server never seen counts
  from the admin app's start (so a server that never came up is not silent).

The servers are those the prober watches (every configured endpoint server).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from axis.admin.probe import Prober

UP = "axis_server_up"
SINCE_SEEN = "axis_server_seconds_since_seen"


class ServerLiveness(Collector):
    def __init__(self, prober: Prober, poll_seconds: float, *, started: float | None = None) -> None:
        self.prober = prober
        self.window = max(3 * poll_seconds, 5.0)
        self.started = time.time() if started is None else started

    def collect(self) -> Iterable[Any]:
        now = time.time()
        up = GaugeMetricFamily(UP, "1 while the endpoint server was seen alive recently (admin app's prober)",
                               labels=["server"])
        since = GaugeMetricFamily(SINCE_SEEN, "Seconds since the endpoint server was last seen alive (never seen: "
                                              "since the admin app started)", labels=["server"])
        for sid in sorted(self.prober.endpoints):
            seen = self.prober.state.last_seen.get(sid)
            age = now - (seen if seen is not None else self.started)
            up.add_metric([sid], 1 if seen is not None and now - seen <= self.window else 0)
            since.add_metric([sid], round(max(0.0, age), 1))
        yield up
        yield since

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self)
