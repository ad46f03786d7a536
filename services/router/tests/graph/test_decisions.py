"""The router's pure rules: splits, switches, step inputs, merges, headers, errors, specs."""

from __future__ import annotations

import json
import re

import orjson
import pytest

from wharf_api.resources.inference_graph import InferenceGraphSpec, InferenceStep
from wharf_router.graph import decisions
from wharf_router.graph.resolve import Resolution, resolve_services, service_url
from wharf_router.graph.spec import GraphError, load_graph_file, parse_graph_json


def step(**kw: object) -> InferenceStep:
    return InferenceStep.model_validate(kw)


def test_split_bands_are_cumulative_weights() -> None:
    steps = [step(name="a", weight=20), step(name="b", weight=80)]
    picks = {p: decisions.pick_split(steps, p) for p in range(100)}
    assert {p for p, s in picks.items() if s and s.name == "a"} == set(range(20))
    assert {p for p, s in picks.items() if s and s.name == "b"} == set(range(20, 100))


def test_split_short_of_100_selects_nothing_past_the_last_band() -> None:
    steps = [step(name="a", weight=30)]
    assert decisions.pick_split(steps, 29) is steps[0]
    assert decisions.pick_split(steps, 30) is None


def test_switch_takes_the_first_condition_that_holds() -> None:
    steps = [
        step(name="big", condition="instances.#(v>10)"),
        step(name="any", condition="instances"),
    ]
    doc = decisions.parse_json(b'{"instances": [{"v": 11}]}')
    assert decisions.pick_switch(doc, steps) is steps[0]
    small = decisions.parse_json(b'{"instances": [{"v": 1}]}')
    assert decisions.pick_switch(small, steps) is steps[1]
    assert decisions.pick_switch(decisions.parse_json(b"{}"), steps) is None
    assert decisions.pick_switch(decisions.NOT_PARSED, steps) is None


def test_step_input_request_response_and_the_first_step() -> None:
    request, previous = b'{"instances": [1]}', b'{"predictions": [2]}'
    assert decisions.step_input(step(data="$response"), 1, request, previous) == previous
    assert decisions.step_input(step(data="$request"), 1, request, previous) == request
    assert decisions.step_input(step(), 1, request, previous) == request
    # the first step has no previous answer: it gets the request, as in KServe
    assert decisions.step_input(step(data="$response"), 0, request, None) == request


def test_map_predictions_to_instances_keeps_only_instances() -> None:
    mapped = decisions.step_input(
        step(data="$response", mapPredictionsToInstances=True),
        1,
        b"{}",
        b'{"predictions": [[0.1, 0.9]], "model_name": "m"}',
    )
    assert json.loads(mapped) == {"instances": [[0.1, 0.9]]}
    for unchanged in (b'{"predictions": []}', b'{"outputs": []}', b"[1]", b"text"):
        assert decisions.predictions_to_instances(unchanged) == unchanged


def test_ensemble_merge_and_keys() -> None:
    merged = decisions.merge_ensemble(
        [
            (decisions.ensemble_key(step(name="a"), 0), {"x": 1}),
            (decisions.ensemble_key(step(), 1), {}),
        ]
    )
    assert orjson.loads(merged) == {"a": {"x": 1}, "1": {}}


def test_headers_match_canonical_names_and_default_the_content_type() -> None:
    patterns = decisions.compile_patterns("^X-Trace,Authorization")
    forwarded = decisions.headers_to_forward(
        [("x-trace-id", "1"), ("authorization", "k"), ("x-other", "2")], patterns
    )
    assert forwarded == [
        ("X-Trace-Id", "1"),
        ("Authorization", "k"),
        ("Content-Type", "application/json"),
    ]
    kept = decisions.headers_to_forward([("content-type", "text/csv")], [re.compile("Content")])
    assert kept == [("Content-Type", "text/csv")]
    with pytest.raises(ValueError, match="PROPAGATE_HEADERS: pattern '\\('"):
        decisions.compile_patterns("(")


def test_error_body_is_kserves_shape() -> None:
    assert orjson.loads(decisions.error_body("boom")) == {
        "error": "Failed to process request",
        "cause": "boom",
    }
    assert decisions.response_content_type(b'{"a": 1}') == "application/json"
    assert decisions.response_content_type(b"plain") is None


def test_spec_checks_name_what_is_wrong(tmp_path: object) -> None:
    with pytest.raises(GraphError, match="node named 'root'"):
        parse_graph_json('{"nodes": {"a": {"routerType": "Sequence"}}}')
    with pytest.raises(GraphError, match=r"nodes.root.steps\[0\].nodeName: no node named 'x'"):
        parse_graph_json(
            '{"nodes": {"root": {"routerType": "Sequence", "steps": [{"nodeName": "x"}]}}}'
        )
    with pytest.raises(GraphError, match="one of nodeName, serviceName or serviceUrl"):
        parse_graph_json(
            '{"nodes": {"root": {"routerType": "Sequence", "steps": [{"nodeName": "root", "serviceUrl": "http://b"}]}}}'
        )
    # what KServe's controller passes: serviceName with its resolved serviceUrl
    both = parse_graph_json(
        '{"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "a", "serviceUrl": "http://b"}]}}}'
    )
    assert both.nodes["root"].steps[0].service_url == "http://b"  # type: ignore[index]
    cycle = {
        "nodes": {
            "root": {"routerType": "Sequence", "steps": [{"nodeName": "a"}]},
            "a": {"routerType": "Sequence", "steps": [{"nodeName": "root"}]},
        }
    }
    with pytest.raises(GraphError, match="cycle: root -> a -> root"):
        parse_graph_json(json.dumps(cycle))
    with pytest.raises(GraphError, match="not JSON"):
        parse_graph_json("{")
    with pytest.raises(GraphError, match="routerType"):
        parse_graph_json('{"nodes": {"root": {"routerType": "Fan"}}}')


def test_graph_file_reads_a_manifest(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "g.yaml"
    path.write_text(
        "kind: InferenceGraph\nspec:\n  nodes:\n    root:\n      routerType: Splitter\n"
        "      steps: [{serviceName: a, weight: 100}]\n"
    )
    spec = load_graph_file(path)
    assert spec.nodes["root"].steps[0].service_name == "a"  # type: ignore[index]


def test_service_names_resolve_in_cluster_or_through_the_local_ingress() -> None:
    assert (
        service_url("iris", Resolution("cluster", "ns1"))
        == "http://iris.ns1.svc.cluster.local/v1/models/iris:predict"
    )
    local = Resolution("local", "ns1", "http://127.0.0.1:9000", "v2")
    assert (
        service_url("iris", local) == "http://127.0.0.1:9000/serving/ns1/iris/v2/models/iris/infer"
    )
    spec = InferenceGraphSpec.model_validate(
        {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {"serviceName": "a"},
                        {"serviceName": "b", "serviceUrl": "http://kept"},
                    ],
                }
            }
        }
    )
    steps = resolve_services(spec, Resolution()).nodes["root"].steps or []
    assert [s.service_url for s in steps] == [
        "http://a.default.svc.cluster.local/v1/models/a:predict",
        "http://kept",
    ]
    assert spec.nodes["root"].steps[0].service_url is None  # type: ignore[index]
