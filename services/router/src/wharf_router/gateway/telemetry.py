"""The gateway's own Prometheus metrics (`wharf_router_*`), in a registry of its own.

Labels are bounded: `model` is one of the first `MAX_MODEL_LABELS` model names seen (others
are counted as `other`), `key` is an API key's name (`-` without keys).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from wharf_router.gateway.pool import Pod

MAX_MODEL_LABELS = 64
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ITL = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


class _PodCollector(Collector):
    def __init__(self, pods: Callable[[], Iterable[Pod]]) -> None:
        self._pods = pods

    def collect(self) -> Iterable[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily(
            "wharf_router_pod_in_flight",
            "Requests this gateway has on the pod",
            labels=["pod", "role"],
        )
        healthy = GaugeMetricFamily(
            "wharf_router_pod_healthy",
            "1 while the pod takes requests, 0 while ejected",
            labels=["pod", "role"],
        )
        waiting = GaugeMetricFamily(
            "wharf_router_pod_waiting",
            "The pod's waiting requests, last scraped",
            labels=["pod", "role"],
        )
        kv = GaugeMetricFamily(
            "wharf_router_pod_kv_cache_usage",
            "The pod's KV-cache use (0-1), last scraped",
            labels=["pod", "role"],
        )
        for pod in self._pods():
            labels = [pod.name, pod.role]
            in_flight.add_metric(labels, pod.in_flight)
            healthy.add_metric(labels, 1.0 if pod.healthy else 0.0)
            waiting.add_metric(labels, pod.metrics.waiting)
            kv.add_metric(labels, pod.metrics.kv_usage)
        return [in_flight, healthy, waiting, kv]


class _WarmPairsCollector(Collector):
    def __init__(self, warm_pairs: Callable[[], int]) -> None:
        self._warm_pairs = warm_pairs

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "wharf_router_pd_warm_pairs",
                "Healthy prefill/decode pod pairs whose hand-off (warm-up or request) completed",
                value=self._warm_pairs(),
            )
        ]


class _Buckets:
    """One label set's counts of a `StreamHistogram`."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, amount: float) -> None:
        # the first bucket whose bound is >= amount, as Prometheus' `le` means
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.total += amount


class StreamHistogram(Collector):
    """A histogram for what is observed once per streamed event (the inter-token latency).

    prometheus_client's Histogram takes a lock and walks the buckets on every observation;
    per token that was a tenth of the gateway's own Python on a stream's path. The gateway
    observes and is scraped on its event loop's thread only, so plain counters suffice: one
    bisect and two additions per observation. Exposed as the same histogram family, without
    the `_created` series (a start time per label set, which nothing here reads).
    """

    def __init__(
        self, name: str, documentation: str, labels: list[str], buckets: tuple[float, ...]
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self._bounds = tuple(sorted(b for b in buckets if b != math.inf))  # +Inf is implied
        self._children: dict[tuple[str, ...], _Buckets] = {}

    def labels(self, *values: str) -> _Buckets:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _Buckets(self._bounds)
        return child

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        edges = [floatToGoString(b) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        for values, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for edge, count in zip(edges, child.counts, strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(values), buckets, child.total)
        return [family]


MAX_BOUND = 4096  # cached (model, key) children; past it they are looked up each time


@dataclass(frozen=True, slots=True)
class Bound:
    """The per-(model, key) children, looked up once per request instead of once per use."""

    ttft: Any
    itl: Any
    duration: Any
    prompt_tokens: Any
    completion_tokens: Any


class Telemetry:
    def __init__(
        self, pods: Callable[[], Iterable[Pod]], warm_pairs: Callable[[], int] = lambda: 0
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        mk = ["model", "key"]
        self.requests = Counter(
            "wharf_router_requests",
            "Requests answered, by status code",
            [*mk, "api", "code"],
            registry=r,
        )
        self.errors = Counter(
            "wharf_router_request_errors",
            "Requests that failed, by reason",
            [*mk, "reason"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "wharf_router_prompt_tokens", "Prompt tokens (from the engines' usage)", mk, registry=r
        )
        self.completion_tokens = Counter(
            "wharf_router_completion_tokens",
            "Completion tokens (from usage, else streamed events)",
            mk,
            registry=r,
        )
        self.ttft = Histogram(
            "wharf_router_time_to_first_token_seconds",
            "From the request's arrival to the first streamed event (the whole answer when not streamed)",
            mk,
            buckets=_LATENCY,
            registry=r,
        )
        self.itl = StreamHistogram(
            "wharf_router_inter_token_latency_seconds",
            "Between streamed events of one answer",
            mk,
            _ITL,
        )
        r.register(self.itl)
        self.duration = Histogram(
            "wharf_router_request_duration_seconds",
            "From arrival to the last byte",
            mk,
            buckets=_LATENCY,
            registry=r,
        )
        self.retries = Counter(
            "wharf_router_retries",
            "Requests sent again to another pod, by reason",
            ["reason"],
            registry=r,
        )
        self.pd_handoffs = Counter(
            "wharf_router_pd_handoffs",
            "Requests prefilled on a prefill pod and decoded on another",
            registry=r,
        )
        self.pd_fallbacks = Counter(
            "wharf_router_pd_prefill_fallbacks",
            "Prefills that failed, so the decode pod computed the prompt itself",
            ["reason"],
            registry=r,
        )
        self.pd_cold_pairs = Counter(
            "wharf_router_pd_cold_pairs",
            "P/D requests whose decode pod had no warm prefill pod yet: it computed the prompt",
            registry=r,
        )
        self.pd_warmups = Counter(
            "wharf_router_pd_warmups",
            "Warm-up hand-offs of prefill/decode pairs, by outcome (ok, failed, refused)",
            ["outcome"],
            registry=r,
        )
        self.prefix_blocks = Counter(
            "wharf_router_prefix_blocks",
            "Prompt blocks routed, and how many the chosen pod probably held (estimated hits)",
            ["held"],
            registry=r,
        )
        self.disconnects = Counter(
            "wharf_router_client_disconnects",
            "Clients gone before their answer ended (upstream cancelled)",
            registry=r,
        )
        self.rate_limited = Counter(
            "wharf_router_rate_limited",
            "Requests refused by a key's token budget",
            ["key"],
            registry=r,
        )
        self.peer_messages = Counter(
            "wharf_router_peer_messages",
            "Peer exchange messages, by direction (sent, received) and outcome",
            ["direction", "outcome"],
            registry=r,
        )
        self.peer_placements = Counter(
            "wharf_router_peer_placements",
            "Placements taken from peers' messages into this replica's prefix index",
            registry=r,
        )
        self.peers = Gauge(
            "wharf_router_peers",
            "Peer replicas whose last message is fresh (their counts are added to this one's)",
            registry=r,
        )
        r.register(_PodCollector(pods))
        r.register(_WarmPairsCollector(warm_pairs))
        self._models: set[str] = set()
        self._bound: dict[tuple[str, str], Bound] = {}
        self._requests: dict[tuple[str, str, str, str], Any] = {}

    def bound(self, model: str, key: str) -> Bound:
        found = self._bound.get((model, key))
        if found is None:
            found = Bound(
                ttft=self.ttft.labels(model, key),
                itl=self.itl.labels(model, key),
                duration=self.duration.labels(model, key),
                prompt_tokens=self.prompt_tokens.labels(model, key),
                completion_tokens=self.completion_tokens.labels(model, key),
            )
            if len(self._bound) < MAX_BOUND:
                self._bound[(model, key)] = found
        return found

    def count_request(self, model: str, key: str, api: str, code: int) -> None:
        labels = (model, key, api, str(code))
        child = self._requests.get(labels)
        if child is None:
            child = self.requests.labels(*labels)
            if len(self._requests) < MAX_BOUND:
                self._requests[labels] = child
        child.inc()

    def model_label(self, model: str | None) -> str:
        if model is None:
            return "-"
        if model in self._models:
            return model
        if len(self._models) < MAX_MODEL_LABELS and len(model) <= 128:
            self._models.add(model)
            return model
        return "other"
