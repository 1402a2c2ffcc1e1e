"""Prometheus metrics shared by the router, the endpoint servers and the admin app (stable names).

- ``axis_documents_sent_total{agency,kind}`` counter: documents accepted and routed, by sender, server kind
- ``axis_documents_received_total{agency,kind}`` counter: deliveries stored in an inbox, by recipient, kind
- ``axis_documents_refused_total{reason}`` counter: refused messages, by contract reason code
- ``axis_router_latency_seconds`` histogram: router time from consuming a submission to its confirmed publish
- ``axis_queue_depth{queue}`` gauge: messages in a RabbitMQ queue (``axis.server.<id>``, ``axis.submissions``)

A router or endpoint server uses :func:`process_metrics` (one set per process, on the default registry, which
also carries the ``process_*`` metrics) and serves :func:`render` at ``GET /metrics``. Each process counts what
passed through it; Prometheus sums them over processes. The admin app instead publishes the exact totals of
the statistics store under the same names (:func:`snapshot_registry`), so one scrape of the admin app gives
the whole axis. With very large directories (120,000 agencies) pass ``per_agency=False`` to keep the label
cardinality bounded: the ``agency`` label is then ``"*"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

SENT = "axis_documents_sent_total"
RECEIVED = "axis_documents_received_total"
REFUSED = "axis_documents_refused_total"
LATENCY = "axis_router_latency_seconds"
QUEUE_DEPTH = "axis_queue_depth"
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _base(name: str) -> str:
    return name.removesuffix("_total")  # prometheus_client adds the suffix to counters itself


@dataclass(frozen=True)
class AxisMetrics:
    """The axis metric objects of one registry; the ``count_*`` helpers take the stats dataclasses' fields."""

    registry: CollectorRegistry
    sent: Counter
    received: Counter
    refused: Counter
    latency: Histogram
    queue_depth: Gauge
    per_agency: bool = True

    def count_sent(self, agency: str, kind: str, n: int = 1) -> None:
        self.sent.labels(agency if self.per_agency else "*", kind).inc(n)

    def count_received(self, agency: str, kind: str, n: int = 1) -> None:
        self.received.labels(agency if self.per_agency else "*", kind).inc(n)

    def count_refused(self, reason: str, n: int = 1) -> None:
        self.refused.labels(str(reason)).inc(n)

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def set_queue_depth(self, queue: str, depth: int) -> None:
        self.queue_depth.labels(queue).set(depth)


def make_metrics(registry: CollectorRegistry | None = None, *, per_agency: bool = True) -> AxisMetrics:
    """Create the axis metrics on ``registry`` (a fresh one when None). Call once per registry."""
    registry = registry if registry is not None else CollectorRegistry()
    return AxisMetrics(
        registry=registry,
        sent=Counter(
            _base(SENT),
            "Documents accepted and routed, by sender agency and server kind",
            ["agency", "kind"],
            registry=registry,
        ),
        received=Counter(
            _base(RECEIVED),
            "Deliveries stored in a recipient inbox, by agency and server kind",
            ["agency", "kind"],
            registry=registry,
        ),
        refused=Counter(_base(REFUSED), "Refused messages by reason code", ["reason"], registry=registry),
        latency=Histogram(
            LATENCY, "Router latency from consume to confirmed publish", buckets=LATENCY_BUCKETS_S, registry=registry
        ),
        queue_depth=Gauge(QUEUE_DEPTH, "Messages ready in a RabbitMQ queue", ["queue"], registry=registry),
        per_agency=per_agency,
    )


_process: AxisMetrics | None = None


def process_metrics(*, per_agency: bool = True) -> AxisMetrics:
    """The process-wide metrics on prometheus_client's default registry (created on first use)."""
    global _process
    if _process is None:
        _process = make_metrics(REGISTRY, per_agency=per_agency)
    return _process


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """(body, content type) for ``GET /metrics``."""
    return generate_latest(registry if registry is not None else REGISTRY), CONTENT_TYPE


class _SnapshotCollector(Collector):
    def __init__(self, stats: Mapping[str, Any], queues: Mapping[str, int]) -> None:
        self.stats = stats
        self.queues = queues

    def collect(self) -> Iterable[Any]:
        s = self.stats
        sent = CounterMetricFamily(
            _base(SENT), "Documents accepted and routed (exact, from the statistics store)", labels=["agency", "kind"]
        )
        received = CounterMetricFamily(
            _base(RECEIVED), "Deliveries stored in inboxes (exact, statistics store)", labels=["agency", "kind"]
        )
        for row in s.get("breakdown_agencies", ()):
            if row.get("sent"):
                sent.add_metric([row["key"], row.get("kind") or ""], row["sent"])
            if row.get("received"):
                received.add_metric([row["key"], row.get("kind") or ""], row["received"])
        refused = CounterMetricFamily(_base(REFUSED), "Refused messages by reason code (exact)", labels=["reason"])
        for reason, n in s.get("by_reason", {}).items():
            refused.add_metric([reason], n)
        yield sent
        yield received
        yield refused
        lat = s.get("latency") or {}
        buckets, cumulative = [], 0
        for b in lat.get("buckets", ()):
            cumulative += b["count"]
            le = b["le"]
            buckets.append(("+Inf" if le == "+Inf" else repr(float(le) / 1000.0), cumulative))
        if buckets:
            total_s = float(lat.get("mean_ms", 0.0)) * int(lat.get("count", 0)) / 1000.0
            yield HistogramMetricFamily(
                LATENCY, "Router latency (from the statistics store)", buckets=buckets, sum_value=total_s
            )
        depth = GaugeMetricFamily(QUEUE_DEPTH, "Messages ready in a RabbitMQ queue", labels=["queue"])
        for queue, n in self.queues.items():
            depth.add_metric([queue], n)
        yield depth
        for name in ("agencies", "dedicated", "shared", "sent", "received", "refused", "pending"):
            if name in s:
                yield GaugeMetricFamily(f"axis_stats_{name}", f"Statistics store total: {name}", value=s[name])


def snapshot_registry(stats: Mapping[str, Any], queues: Mapping[str, int]) -> CollectorRegistry:
    """A registry exposing a statistics snapshot (``query_stats`` output, plus ``breakdown_agencies``: the
    by-agency breakdown rows) and queue depths under the metric names above, for the admin app."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(stats, queues))
    return registry
