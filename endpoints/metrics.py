"""Prometheus counters of one endpoint server (its own registry: several logical servers share a process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from endpoints.checks import TOTALS


class Metrics:
    """Prometheus counters of one server (own registry: several servers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submitted = PromCounter("axis_endpoint_submitted", "documents submitted", ["agency"],
                                     registry=self.registry)
        self.refused = PromCounter("axis_endpoint_refused", "submissions refused", ["agency", "reason"],
                                   registry=self.registry)
        self.received = PromCounter("axis_endpoint_received", "documents stored in an inbox", ["agency"],
                                    registry=self.registry)
        self.statuses = PromCounter("axis_endpoint_statuses", "statuses stored for sent documents",
                                    ["agency", "code"], registry=self.registry)
        self.sent_statuses = PromCounter("axis_endpoint_status_sent", "statuses sent by agencies",
                                         ["agency", "code"], registry=self.registry)
        self.unverified_refusals = PromCounter(
            "axis_endpoint_unverified_refusals",
            "messages this server published that the axis refused without a proven sender", ["reason"],
            registry=self.registry)
        # Not document refusals: requests without a valid token (401) and those turned away by the limit (429).
        self.auth_failed = PromCounter("axis_endpoint_auth_failed", "requests with a missing or wrong token",
                                       registry=self.registry)
        self.vxp_calls = PromCounter("axis_endpoint_vxp_calls", "VPCP SDK calls under /vxp (endpoints.vxp) by call "
                                     "and result (OK or the ErrorCode)", ["call", "result"], registry=self.registry)
        self.auth_limited = PromCounter("axis_endpoint_auth_limited",
                                        "requests refused because their address failed authentication too often",
                                        registry=self.registry)
        # big documents (endpoints.bigdoc): the shared blob store as this server's last collection found it
        self.blobs = Gauge("axis_endpoint_blobs", "documents kept in the blob store (big documents)",
                           registry=self.registry)
        self.blob_bytes = Gauge("axis_endpoint_blob_bytes", "bytes kept in the blob store (big documents)",
                                registry=self.registry)
        self.registry.register(DocumentChecks())


class DocumentChecks(Collector):
    """``axis_endpoint_document_checks_total{how}``: signed documents the host process checked (door and
    deliveries, all its servers alike: the figure is the process's) — ``full`` verified here, ``process`` from its
    own cache, ``machine`` from a record another host process of the machine wrote (:mod:`endpoints.checked`)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("axis_endpoint_document_checks",
                                     "signed documents checked by this host process, by how", labels=["how"])
        for how, count in TOTALS.items():
            family.add_metric([how], count)
        yield family
