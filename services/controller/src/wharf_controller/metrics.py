"""The controller's Prometheus metrics, in a registry of its own (one per controller)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reconciles = Counter(
            "wharf_controller_reconciles", "Reconciles by kind and result", ["kind", "result"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "wharf_controller_reconcile_errors", "Failed reconciles by kind", ["kind"], registry=r
        )
        self.latency = Histogram(
            "wharf_controller_reconcile_seconds", "Reconcile latency", ["kind"], registry=r
        )
        self.queue_depth = Gauge(
            "wharf_controller_queue_depth",
            "Keys waiting in the work queue by kind",
            ["kind"],
            registry=r,
        )
        self.writes = Counter(
            "wharf_controller_api_writes", "Writes sent to the API server by verb", ["verb"],
            registry=r,
        )  # fmt: skip
        self.leader = Gauge("wharf_controller_leader", "1 while this replica leads", registry=r)
