"""CloudEvents reach a real HTTP sink; a dead sink fails nothing; metrics carry the right names
and labels."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from ms_testkit import ThreadServer, free_port
from prometheus_client import CollectorRegistry, Counter, Histogram

from wharf_model_server import LoggerConfig, Model, metrics


class Echo(Model):
    def __init__(self, name: str = "echo") -> None:
        super().__init__(name)
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return payload

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return {"predictions": payload["instances"]}

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        return result


class _Sink:
    def __init__(self) -> None:
        self.events: list[tuple[dict[str, str], bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                sink.events.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def sink() -> Iterator[_Sink]:
    s = _Sink()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _wait_for(predicate: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def test_cloudevents_reach_the_sink(sink: _Sink) -> None:
    config = LoggerConfig(url=sink.url, inference_service="isvc", namespace="ns")
    with ThreadServer([Echo()], logger_config=config) as server:
        response = httpx.post(
            f"{server.url}/v1/models/echo:predict",
            json={"instances": [[1, 2]]},
            headers={"x-request-id": "req-1"},
        )
        assert response.status_code == 200
        _wait_for(lambda: len(sink.events) >= 2)
    by_type = {headers["ce-type"]: (headers, body) for headers, body in sink.events}
    request_headers, request_body = by_type["org.kubeflow.serving.inference.request"]
    response_headers, response_body = by_type["org.kubeflow.serving.inference.response"]
    assert orjson.loads(request_body) == {"instances": [[1, 2]]}
    assert orjson.loads(response_body) == {"predictions": [[1, 2]]}
    for headers in (request_headers, response_headers):
        assert headers["ce-id"] == "req-1"
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-inferenceservicename"] == "isvc"
        assert headers["ce-namespace"] == "ns"
        assert headers["content-type"] == "application/json"


def test_dead_sink_fails_no_request() -> None:
    dead = f"http://127.0.0.1:{free_port()}/"  # nothing listens here
    config = LoggerConfig(url=dead, queue_size=2, workers=1)
    with ThreadServer([Echo()], logger_config=config) as server:
        for i in range(20):
            response = httpx.post(f"{server.url}/v1/models/echo:predict", json={"instances": [[i]]})
            assert response.status_code == 200
            assert response.json() == {"predictions": [[i]]}
        metrics_text = httpx.get(f"{server.url}/metrics").text
    assert "wharf_payload_log_dropped_total" in metrics_text


def test_metrics_names_and_labels() -> None:
    with ThreadServer([Echo("metered")]) as server:
        ok = httpx.post(f"{server.url}/v1/models/metered:predict", json={"instances": [[1]]})
        assert ok.status_code == 200
        bad = httpx.post(f"{server.url}/v2/models/metered/infer", content=b"{")
        assert bad.status_code == 400
        response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    text = response.text
    for stage in ("preprocess", "predict", "postprocess"):
        assert f'request_{stage}_seconds_count{{model_name="metered"}}' in text
    assert "# TYPE request_explain_seconds histogram" in text
    assert (
        'kserve_inference_duration_seconds_count{model_name="metered",protocol="v1",status="200"}'
        in text
    )
    assert (
        'kserve_inference_count_total{model_name="metered",protocol="v1",status="200"} 1.0' in text
    )
    assert 'kserve_inference_count_total{model_name="metered",protocol="v2",status="400"}' in text
    assert "# TYPE kserve_model_load_duration_seconds histogram" in text


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


@pytest.mark.parametrize("fallback", [False, True])
def test_the_observer_records_what_observe_and_inc_record(fallback: bool) -> None:
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 2.5, 10.0, 1e9, -1.0, float("inf"), float("nan")]
    registries = []
    for direct in (True, False):
        registry = CollectorRegistry()
        histogram = Histogram("h", "h", ["m"], registry=registry).labels("a")
        counters = [Counter(f"c{i}", "c", ["m"], registry=registry).labels("a") for i in (1, 2)]
        observer = metrics.Observer(histogram, *counters)
        if fallback:
            observer = metrics.Observer(object(), *counters)  # type: ignore[arg-type]
            observer._fallback = metrics._calling(histogram, tuple(counters))
        for value in values:
            if direct:
                observer.observe(value)
            else:
                histogram.observe(value)
                for counter in counters:
                    counter.inc()
        registries.append(_samples(registry))
    direct, reference = registries
    assert direct.keys() == reference.keys()
    for key, value in reference.items():
        assert direct[key] == value or (math.isnan(value) and math.isnan(direct[key])), key
