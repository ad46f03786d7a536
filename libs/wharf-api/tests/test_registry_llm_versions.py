"""`parse_object` reads a v1alpha1 LLMInferenceService(Config) as the API server stores it:
converted to v1alpha2 first (`wharf_api.conversion`), so `wharf up`, the controller's render and
the plan see the same object a cluster would hold."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import parse_object
from wharf_api.conversion import LORA_CRITICALITIES_ANNOTATION, MODEL_CRITICALITY_ANNOTATION
from wharf_api.errors import WharfValidationError
from wharf_api.resources import LLMInferenceService, LLMInferenceServiceConfig


def v1alpha1(kind: str = "LLMInferenceService") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "llm", "namespace": "ns", "annotations": {"team": "a"}},
        "spec": {
            "model": {
                "uri": "hf://org/model",
                "name": "model",
                "criticality": "Critical",
                "lora": {
                    "adapters": [{"uri": "hf://org/a", "name": "a", "criticality": "Sheddable"}]
                },
            },
            "router": {
                "scheduler": {
                    "pool": {
                        "spec": {
                            "selector": {"app": "llm"},
                            "targetPortNumber": 8000,
                            "extensionRef": {"name": "llm-epp"},
                        }
                    }
                }
            },
        },
    }


@pytest.mark.parametrize("kind", ["LLMInferenceService", "LLMInferenceServiceConfig"])
def test_v1alpha1_is_read_through_the_conversion(kind: str) -> None:
    obj = parse_object(v1alpha1(kind))
    assert isinstance(obj, LLMInferenceService | LLMInferenceServiceConfig)
    doc = obj.to_dict()
    assert doc["apiVersion"] == "serving.kserve.io/v1alpha2"
    assert doc["metadata"]["annotations"] == {
        "team": "a",
        MODEL_CRITICALITY_ANNOTATION: "Critical",
        LORA_CRITICALITIES_ANNOTATION: '{"0":"Sheddable"}',
    }
    assert "criticality" not in doc["spec"]["model"]
    pool = doc["spec"]["router"]["scheduler"]["pool"]["spec"]
    assert pool["selector"] == {"matchLabels": {"app": "llm"}}
    assert pool["targetPorts"] == [{"number": 8000}]
    assert pool["endpointPickerRef"]["name"] == "llm-epp"
    assert "targetPortNumber" not in pool and "extensionRef" not in pool


def test_v1alpha2_is_read_as_it_is() -> None:
    doc = v1alpha1()
    doc["apiVersion"] = "serving.kserve.io/v1alpha2"
    del doc["spec"]["model"]["criticality"]
    del doc["spec"]["model"]["lora"]["adapters"][0]["criticality"]
    doc["spec"]["router"]["scheduler"]["pool"]["spec"] = {
        "selector": {"matchLabels": {"app": "llm"}},
        "targetPorts": [{"number": 8000}],
    }
    parsed = parse_object(doc).to_dict()
    assert parsed["metadata"]["annotations"] == {"team": "a"}
    assert parsed["spec"]["router"]["scheduler"]["pool"]["spec"]["targetPorts"] == [
        {"number": 8000}
    ]


def test_a_field_error_after_conversion_names_the_field() -> None:
    doc = v1alpha1()
    doc["spec"]["model"]["uri"] = 7
    with pytest.raises(WharfValidationError) as err:
        parse_object(doc)
    assert "spec.model.uri" in str(err.value)
