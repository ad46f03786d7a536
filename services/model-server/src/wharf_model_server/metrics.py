"""Prometheus metrics: KServe's four stage histograms plus request and load metrics.

The label children are cached per label tuple so the hot path pays one dict lookup instead of
prometheus_client's locked ``labels()`` call.

With ``--workers N`` every worker process is started with ``PROMETHEUS_MULTIPROC_DIR`` set
(prometheus_client's multiprocess mode): each writes its samples to files there and ``/metrics``
on any worker answers with the sum over all of them, plus ``wharf_worker_inference_count`` with a
``pid`` label per live worker.
"""

from __future__ import annotations

import os

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

_stage_children: dict[tuple[str, str], Histogram] = {}
_request_children: dict[tuple[str, str, str], tuple[Histogram, Counter]] = {}


def stage_histogram(stage: str, model_name: str) -> Histogram:
    key = (stage, model_name)
    child = _stage_children.get(key)
    if child is None:
        child = _STAGE_HISTOGRAMS[stage].labels(model_name=model_name)
        _stage_children[key] = child
    return child


def observe_inference(model_name: str, protocol: str, status: int, seconds: float) -> None:
    key = (model_name, protocol, str(status))
    children = _request_children.get(key)
    if children is None:
        children = (
            INFERENCE_DURATION.labels(model_name, protocol, key[2]),
            INFERENCE_COUNT.labels(model_name, protocol, key[2]),
        )
        _request_children[key] = children
    children[0].observe(seconds)
    children[1].inc()
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
