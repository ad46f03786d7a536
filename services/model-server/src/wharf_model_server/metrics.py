"""Prometheus metrics: KServe's four stage histograms plus request and load metrics.

The label children are cached per label tuple so the hot path pays one dict lookup instead of
prometheus_client's locked ``labels()`` call; and the hot path records into a child's values
directly (:class:`Observer`), as the child's ``observe`` and ``inc`` do, without their per-call
checks (that the metric is a child, that a counter goes up, exemplars).

With ``--workers N`` every worker process is started with ``PROMETHEUS_MULTIPROC_DIR`` set
(prometheus_client's multiprocess mode): each writes its samples to files there and ``/metrics``
on any worker answers with the sum over all of them, plus ``wharf_worker_inference_count`` with a
``pid`` label per live worker.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client reads the variable when it is imported; so do we.
MULTIPROCESS = bool(os.environ.get(MULTIPROCESS_DIR_ENV))

disable_created_metrics()  # type: ignore[no-untyped-call]

PRE_HIST_TIME = Histogram(
    "request_preprocess_seconds", "pre-process request latency", ["model_name"]
)
POST_HIST_TIME = Histogram(
    "request_postprocess_seconds", "post-process request latency", ["model_name"]
)
PREDICT_HIST_TIME = Histogram("request_predict_seconds", "predict request latency", ["model_name"])
EXPLAIN_HIST_TIME = Histogram("request_explain_seconds", "explain request latency", ["model_name"])

INFERENCE_DURATION = Histogram(
    "kserve_inference_duration_seconds",
    "end-to-end inference latency as seen by the server",
    ["model_name", "protocol", "status"],
)
# prometheus_client exposes counters with the OpenMetrics "_total" suffix:
# the sample is kserve_inference_count_total.
INFERENCE_COUNT = Counter(
    "kserve_inference_count",
    "inference requests handled",
    ["model_name", "protocol", "status"],
)
MODEL_LOAD_DURATION = Histogram(
    "kserve_model_load_duration_seconds",
    "time spent loading a model",
    ["model_name", "status"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
PAYLOAD_LOG_DROPPED = Counter(
    "wharf_payload_log_dropped",
    "payload log events dropped because the queue was full or the sink failed",
    ["reason"],
)

# Per worker process (a `pid` label), only in multiprocess mode: which workers serve requests.
WORKER_INFERENCE_COUNT = (
    Gauge(
        "wharf_worker_inference_count",
        "inference requests handled by this worker process (with --workers)",
        multiprocess_mode="liveall",
    )
    if MULTIPROCESS
    else None
)

_STAGE_HISTOGRAMS = {
    "preprocess": PRE_HIST_TIME,
    "predict": PREDICT_HIST_TIME,
    "postprocess": POST_HIST_TIME,
    "explain": EXPLAIN_HIST_TIME,
}


class Observer:
    """``observe(seconds)`` of a labelled histogram child, and the ``inc()`` of counter children
    that count the same events: what the children's own methods record (the sum, the first
    bucket whose bound is not below the value, one per counter), in the values they record
    into. Without the attributes this reads (another prometheus_client), it calls the
    children's methods."""

    __slots__ = ("_bounds", "_buckets", "_counts", "_fallback", "_sum")

    def __init__(self, histogram: Histogram, *counters: Counter) -> None:
        self._fallback: Callable[[float], None] | None = None
        try:
            self._sum: Any = histogram._sum
            self._bounds: list[float] = list(histogram._upper_bounds)
            self._buckets: list[Any] = list(histogram._buckets)
            self._counts: tuple[Any, ...] = tuple(counter._value for counter in counters)
        except AttributeError:
            self._fallback = _calling(histogram, counters)
            return
        if len(self._bounds) != len(self._buckets) or not all(
            hasattr(value, "inc") for value in (self._sum, *self._buckets, *self._counts)
        ):
            self._fallback = _calling(histogram, counters)

    def observe(self, seconds: float) -> None:
        if self._fallback is not None:
            self._fallback(seconds)
            return
        self._sum.inc(seconds)
        bounds = self._bounds
        index = bisect_left(bounds, seconds)
        if index < len(bounds) and seconds <= bounds[index]:
            self._buckets[index].inc(1)
        for count in self._counts:
            count.inc(1)


def _calling(histogram: Histogram, counters: tuple[Counter, ...]) -> Callable[[float], None]:
    def observe(seconds: float) -> None:
        histogram.observe(seconds)
        for counter in counters:
            counter.inc()

    return observe


_stage_children: dict[tuple[str, str], Observer] = {}
_request_children: dict[tuple[str, str, int], Observer] = {}


def stage_histogram(stage: str, model_name: str) -> Observer:
    """What observes one stage's time for one model (``request_<stage>_seconds``)."""
    key = (stage, model_name)
    observer = _stage_children.get(key)
    if observer is None:
        observer = Observer(_STAGE_HISTOGRAMS[stage].labels(model_name=model_name))
        _stage_children[key] = observer
    return observer


def observe_inference(model_name: str, protocol: str, status: int, seconds: float) -> None:
    key = (model_name, protocol, status)
    observer = _request_children.get(key)
    if observer is None:
        labels = (model_name, protocol, str(status))
        observer = Observer(INFERENCE_DURATION.labels(*labels), INFERENCE_COUNT.labels(*labels))
        _request_children[key] = observer
    observer.observe(seconds)
    if WORKER_INFERENCE_COUNT is not None:
        WORKER_INFERENCE_COUNT.inc()


def observe_model_load(model_name: str, ok: bool, seconds: float) -> None:
    MODEL_LOAD_DURATION.labels(model_name, "success" if ok else "error").observe(seconds)


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    del accept  # the text format is what every scraper reads
    if MULTIPROCESS:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
