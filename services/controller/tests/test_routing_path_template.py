"""`ingress.pathTemplate`: an InferenceService's HTTPRoute also serves the rendered path on the
shared ingress domain, the prefix stripped (KServe's path-based rule); the Ingress and graph
routes keep their host rule only; a template that renders no plain absolute path is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wharf_controller.desired import DesiredError
from wharf_controller.render import render_documents

TEMPLATE = "/serving/{{ .Namespace }}/{{ .Name }}"


def _config(**ingress: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
        "data": {"ingress": json.dumps({"ingressDomain": "models.example.org", **ingress})},
    }


ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "iris", "namespace": "team"},
    "spec": {
        "predictor": {
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model",
            }
        }
    },
}
RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "sklearn"},
    "spec": {
        "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
        "containers": [{"name": "kserve-container", "image": "example/sklearn:1"}],
    },
}


def _route(**ingress: Any) -> dict[str, Any]:
    objects = render_documents([_config(**ingress), RUNTIME, ISVC], mode="Standard")
    kinds = ("HTTPRoute", "Ingress")
    [route] = [o for o in objects if o["kind"] in kinds]
    return route


def test_the_http_route_serves_the_path_on_the_ingress_domain() -> None:
    spec = _route(enableGatewayApi=True, pathTemplate=TEMPLATE)["spec"]
    assert spec["hostnames"] == ["iris-team.models.example.org", "models.example.org"]
    host_rule, path_rule = spec["rules"]
    assert host_rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert "filters" not in host_rule
    assert path_rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/serving/team/iris"}}]
    assert path_rule["filters"] == [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
        }
    ]
    assert path_rule["backendRefs"][0]["name"] == "iris-predictor"


def test_a_trailing_slash_is_trimmed_as_kserve_does() -> None:
    spec = _route(enableGatewayApi=True, pathTemplate="/v/{{ .Name }}/")["spec"]
    assert spec["rules"][1]["matches"][0]["path"]["value"] == "/v/iris"


def test_without_a_template_the_route_has_its_host_rule_only() -> None:
    spec = _route(enableGatewayApi=True)["spec"]
    assert spec["hostnames"] == ["iris-team.models.example.org"]
    assert len(spec["rules"]) == 1


def test_the_ingress_keeps_its_host_rule_only() -> None:
    # KServe's raw Ingress ignores pathTemplate; an Ingress cannot strip the prefix portably
    spec = _route(pathTemplate=TEMPLATE)["spec"]
    assert [r["host"] for r in spec["rules"]] == ["iris-team.models.example.org"]


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("serving/{{ .Name }}", "not a plain absolute path"),
        ("//evil.example/{{ .Name }}", "not a plain absolute path"),
        ("/serving/{{ .Name }}?x=1", "not a plain absolute path"),
        ("/a/../{{ .Name }}", "not a plain absolute path"),
        ("/", "not a plain absolute path"),
        ("/serving/{{ .Spec }}", "unsupported template field"),
    ],
)
def test_a_template_without_a_usable_path_is_refused(template: str, why: str) -> None:
    # a DesiredError: the controller writes it to the status (InvalidSpec), it does not crash
    with pytest.raises(DesiredError, match=rf"InferenceService iris: ingress.pathTemplate .*{why}"):
        _route(enableGatewayApi=True, pathTemplate=template)
