"""InferenceGraph steps keep every field KServe's router reads (none is pruned on the way)."""

from __future__ import annotations

from pathlib import Path

import yaml

from wharf_api import default, parse_object

CRD = Path(__file__).parents[3] / "deploy/base/crds/serving.kserve.io_inferencegraphs.yaml"


def test_map_predictions_to_instances_survives_parse_and_defaulting() -> None:
    graph = default(
        parse_object(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "InferenceGraph",
                "metadata": {"name": "chain"},
                "spec": {
                    "nodes": {
                        "root": {
                            "routerType": "Sequence",
                            "steps": [
                                {"serviceName": "a"},
                                {
                                    "serviceName": "b",
                                    "data": "$response",
                                    "mapPredictionsToInstances": True,
                                },
                            ],
                        }
                    }
                },
            }
        )
    )
    step = graph.to_dict()["spec"]["nodes"]["root"]["steps"][1]
    assert step["mapPredictionsToInstances"] is True
    assert step["data"] == "$response"


def test_the_crd_does_not_prune_map_predictions_to_instances() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    step = schema["properties"]["spec"]["properties"]["nodes"]["additionalProperties"][
        "properties"
    ]["steps"]["items"]
    assert step["properties"]["mapPredictionsToInstances"] == {"type": "boolean"}
