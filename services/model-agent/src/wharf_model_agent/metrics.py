"""The agent's Prometheus metrics, on a registry of its own (one agent per process in
production; several in one test process)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wharf_model_agent import status

# Model downloads run from seconds to an hour.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cache_bytes = Gauge(
            "wharf_model_agent_cache_bytes",
            "Bytes held by complete, wanted models in the node's cache",
            registry=r,
        )
        self.cache_limit_bytes = Gauge(
            "wharf_model_agent_cache_limit_bytes",
            "The node group's storage limit (0 when none is set)",
            registry=r,
        )
        self.models = Gauge(
            "wharf_model_agent_models",
            "Models of this node's LocalModelNode, by reported status",
            ["status"],
            registry=r,
        )
        self.downloads = Counter(
            "wharf_model_agent_downloads",
            "Finished model downloads, by result (success, failure, cancelled)",
            ["result"],
            registry=r,
        )
        self.failures = Counter(
            "wharf_model_agent_download_failures",
            "Failed model downloads, by failure class",
            ["reason"],
            registry=r,
        )
        self.fetched_bytes = Counter(
            "wharf_model_agent_fetched_bytes",
            "Bytes fetched from model stores",
            registry=r,
        )
        self.duration = Histogram(
            "wharf_model_agent_download_duration_seconds",
            "Time to download one model, successful downloads only",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        for result in ("success", "failure", "cancelled"):
            self.downloads.labels(result)
        self.set_models({})

    def set_models(self, model_status: Mapping[str, str]) -> None:
        for value in (status.PENDING, status.DOWNLOADING, status.DOWNLOADED, status.ERROR):
            self.models.labels(value).set(sum(1 for v in model_status.values() if v == value))
