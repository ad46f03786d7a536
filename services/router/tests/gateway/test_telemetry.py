"""The gateway's inter-token histogram (observed once per streamed event, without
prometheus_client's locks) is exposed exactly as a prometheus_client Histogram would be."""

from __future__ import annotations

import math
import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from wharf_router.gateway.telemetry import _ITL, StreamHistogram


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition's lines, but the `_created` series, which StreamHistogram leaves out."""
    text = generate_latest(registry).decode()
    return sorted(line for line in text.splitlines() if "_created" not in line)


def test_stream_histogram_exposes_what_a_histogram_would() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    stream = StreamHistogram("itl_seconds", "Between events", ["model", "key"], _ITL)
    ours.register(stream)
    reference = Histogram(
        "itl_seconds", "Between events", ["model", "key"], buckets=_ITL, registry=theirs
    )
    rng = random.Random(7)
    # values on the bucket bounds too: `le` means <=, so a value equal to a bound is in it
    values = [rng.choice(_ITL) for _ in range(50)] + [rng.uniform(0, 4) for _ in range(500)]
    for i, value in enumerate(values):
        labels = ("m", "-") if i % 3 else ("other", "k1")
        stream.labels(*labels).observe(value)
        reference.labels(*labels).observe(value)
    assert _samples(ours) == _samples(theirs)
    assert any('le="+Inf"' in line for line in _samples(ours))
    assert "_created" not in generate_latest(ours).decode()  # said so in its docstring


def test_large_bounds_and_an_explicit_inf_are_written_as_prometheus_client_writes_them() -> None:
    buckets = (0.5, 1e6, 1e7, math.inf)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    stream = StreamHistogram("wait_seconds", "Waits", ["model"], buckets)
    ours.register(stream)
    reference = Histogram("wait_seconds", "Waits", ["model"], buckets=buckets, registry=theirs)
    for value in (0.1, 2e6, 5e7):
        stream.labels("m").observe(value)
        reference.labels("m").observe(value)
    assert _samples(ours) == _samples(theirs)
    assert sum('le="+Inf"' in line for line in _samples(ours)) == 1
