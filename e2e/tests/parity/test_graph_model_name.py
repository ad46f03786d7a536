"""`wharf up` and the controller resolve an InferenceGraph's `serviceName` step to the same
model name and predict path (they differ only in the address: local ingress vs. in-cluster),
here for a transformer that renames the model with `--model_name`."""

from __future__ import annotations

import json
from typing import Any

from wharf_api import default, parse_object
from wharf_api.plan import plan_inference_service
from wharf_api.resources import InferenceService
from wharf_controller.render import render_documents
from wharf_local.graph_plan import resolve_graph

ISVC: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {
        "name": "classifier",
        "namespace": "team",
        "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
    },
    "spec": {
        "predictor": {
            "protocolVersion": "v2",
            "containers": [
                {"name": "kserve-container", "image": "example/model:1", "args": ["--model_name=m"]}
            ],
        },
        "transformer": {
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "example/t:1",
                    "args": ["--model_name=flowers"],
                }
            ]
        },
    },
}
GRAPH: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {
        "name": "pipeline",
        "namespace": "team",
        "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
    },
    "spec": {
        "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "classifier"}]}}
    },
}


def _path(url: str, base: str) -> str:
    assert url.startswith(base), url
    return url[len(base) :]


def test_wharf_up_and_the_controller_name_the_model_alike() -> None:
    children = render_documents([ISVC, GRAPH])
    router = next(
        c for c in children if c["kind"] == "Deployment" and c["metadata"]["name"] == "pipeline"
    )
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    cluster = json.loads(args[args.index("--graph-json") + 1])
    cluster_url = cluster["nodes"]["root"]["steps"][0]["serviceUrl"]

    isvc = default(parse_object(ISVC))
    assert isinstance(isvc, InferenceService)
    graph = default(parse_object(GRAPH))
    ingress = "http://127.0.0.1:8080"
    local = resolve_graph(graph.spec, "team", {"classifier": plan_inference_service(isvc)}, ingress)  # type: ignore[attr-defined]
    local_url = json.loads(local.graph_json)["nodes"]["root"]["steps"][0]["serviceUrl"]

    expected = "/v1/models/flowers:predict"  # the transformer's name and protocol (v1)
    assert _path(cluster_url, "http://classifier-transformer.team.svc.cluster.local") == expected
    assert _path(local_url, f"{ingress}/serving/team/classifier") == expected
