"""The rules both control planes resolve an InferenceGraph's steps with, and the deployment
mode both read: `wharf_api.graph`, `wharf_api.defaulting.deployment_mode`."""

from __future__ import annotations

from typing import Any

from wharf_api import default, parse_object
from wharf_api.defaulting import deployment_mode
from wharf_api.graph import Endpoint, model_name, resolve_steps
from wharf_api.plan import plan_inference_service
from wharf_api.resources import InferenceService
from wharf_api.resources.inference_graph import InferenceGraphSpec


def isvc(spec: dict[str, Any], name: str = "classifier") -> InferenceService:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "team"},
        "spec": spec,
    }
    obj = default(parse_object(doc))
    assert isinstance(obj, InferenceService)
    return obj


CUSTOM = {"containers": [{"name": "kserve-container", "image": "example/model:1"}]}


def test_the_transformers_model_name_wins_then_the_predictors_then_the_service_name() -> None:
    predictor = {"containers": [{**CUSTOM["containers"][0], "args": ["--model_name", "inner"]}]}
    transformer = {"containers": [{"name": "t", "image": "t:1", "args": ["--model_name=outer"]}]}
    assert model_name(isvc({"predictor": predictor, "transformer": transformer})) == "outer"
    assert model_name(isvc({"predictor": predictor})) == "inner"
    assert model_name(isvc({"predictor": CUSTOM})) == "classifier"
    mlserver = {
        "model": {
            "modelFormat": {"name": "sklearn"},
            "env": [{"name": "MLSERVER_MODEL_NAME", "value": "ml"}],
            "args": ["--model_name=ignored"],
        }
    }
    assert model_name(isvc({"predictor": mlserver})) == "ml"


def test_the_plan_carries_the_model_name_so_wharf_up_needs_no_manifest() -> None:
    transformer = {"containers": [{"name": "t", "image": "t:1", "args": ["--model_name=outer"]}]}
    plan = plan_inference_service(isvc({"predictor": CUSTOM, "transformer": transformer}))
    assert plan.model_name == "outer"


def test_steps_get_address_and_the_predict_path_of_the_model_and_protocol() -> None:
    spec = InferenceGraphSpec.model_validate(
        {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {"serviceName": "a"},
                        {"serviceName": "b"},
                        {"serviceName": "c"},
                        {"serviceName": "gone"},
                        {"serviceName": "a", "serviceUrl": "http://kept/"},
                    ],
                }
            }
        }
    )
    endpoints = {
        "a": Endpoint("http://a.team/", "v1", "flowers"),
        "b": Endpoint("http://b.team", "v2"),
        "c": Endpoint(None),
    }
    resolved, problems = resolve_steps(spec, endpoints)
    steps = resolved.nodes["root"].steps or []
    assert [s.service_url for s in steps] == [
        "http://a.team/v1/models/flowers:predict",
        "http://b.team/v2/models/b/infer",
        None,
        None,
        "http://kept/",
    ]
    assert [(p.field, p.found) for p in problems] == [
        ("spec.nodes.root.steps[2].serviceName", True),
        ("spec.nodes.root.steps[3].serviceName", False),
    ]
    assert "not ready" in problems[0].message() and "not found" in problems[1].message()


def test_the_deployment_mode_is_frozen_then_annotated_then_configured() -> None:
    annotated = {"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}}
    assert deployment_mode(annotated, "Knative") == "Standard"
    assert deployment_mode({"metadata": {}}, "Serverless") == "Knative"
    assert deployment_mode({}, "Standard") == "Standard"
    frozen = {**annotated, "status": {"deploymentMode": "Serverless"}}
    assert deployment_mode(frozen, "Standard") == "Knative"
