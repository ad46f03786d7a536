"""LLMInferenceService(Config) conversion between v1alpha1 and v1alpha2, as KServe converts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from wharf_api.conversion import (
    LORA_CRITICALITIES_ANNOTATION,
    MODEL_CRITICALITY_ANNOTATION,
    V1ALPHA1,
    V1ALPHA2,
    ConversionError,
    convert,
)
from wharf_api.registry import parse_object
from wharf_api.resources import llm_inference_service_v1alpha1 as v1alpha1


def _v1alpha1(kind: str = "LLMInferenceService") -> dict[str, Any]:
    """A v1alpha1 object using every field whose shape differs between the versions."""
    workload = {
        "replicas": 2,
        "parallelism": {"tensor": 2, "dataRPCPort": 5555},
        "template": {"containers": [{"name": "main", "image": "vllm"}]},
        "rolloutStrategy": {"maxSurge": 1, "maxUnavailable": "25%"},
    }
    return {
        "apiVersion": V1ALPHA1,
        "kind": kind,
        "metadata": {"name": "llm", "namespace": "ns", "annotations": {"team": "a"}},
        "spec": {
            "model": {
                "uri": "hf://org/model",
                "name": "model",
                "criticality": "Critical",
                "lora": {
                    "adapters": [
                        {"uri": "hf://org/a", "name": "a"},
                        {"uri": "hf://org/b", "name": "b", "criticality": "Sheddable"},
                    ],
                    "maxRank": 8,
                },
            },
            **workload,
            "prefill": copy.deepcopy(workload),
            "router": {
                "route": {},
                "scheduler": {
                    "pool": {
                        "spec": {
                            "selector": {"app": "llm"},
                            "targetPortNumber": 8000,
                            "extensionRef": {
                                "kind": "Service",
                                "name": "llm-epp",
                                "portNumber": 9002,
                                "failureMode": "FailOpen",
                            },
                        }
                    }
                },
            },
            "baseRefs": [{"name": "preset"}],
        },
    }


def test_v1alpha1_to_v1alpha2_keeps_criticality_in_kserves_annotations() -> None:
    out = convert(_v1alpha1(), V1ALPHA2)
    assert out["apiVersion"] == V1ALPHA2
    annotations = out["metadata"]["annotations"]
    assert annotations[MODEL_CRITICALITY_ANNOTATION] == "Critical"
    assert json.loads(annotations[LORA_CRITICALITIES_ANNOTATION]) == {"1": "Sheddable"}
    assert annotations["team"] == "a"
    model = out["spec"]["model"]
    assert "criticality" not in model
    assert all("criticality" not in a for a in model["lora"]["adapters"])


def test_v1alpha1_pool_spec_becomes_the_inference_extensions_v1_shape() -> None:
    pool = convert(_v1alpha1(), V1ALPHA2)["spec"]["router"]["scheduler"]["pool"]["spec"]
    assert pool == {
        "selector": {"matchLabels": {"app": "llm"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {
            "kind": "Service",
            "name": "llm-epp",
            "port": {"number": 9002},
            "failureMode": "FailOpen",
        },
    }


def test_pool_extension_ref_gets_the_inference_extensions_defaults() -> None:
    obj = _v1alpha1()
    obj["spec"]["router"]["scheduler"]["pool"]["spec"]["extensionRef"] = {"name": "epp"}
    pool = convert(obj, V1ALPHA2)["spec"]["router"]["scheduler"]["pool"]["spec"]
    assert pool["endpointPickerRef"] == {
        "kind": "Service",
        "name": "epp",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }


@pytest.mark.parametrize("kind", ["LLMInferenceService", "LLMInferenceServiceConfig"])
def test_v1alpha1_round_trip_through_v1alpha2_loses_nothing(kind: str) -> None:
    original = _v1alpha1(kind)
    stored = convert(original, V1ALPHA2)
    assert convert(stored, V1ALPHA1) == original


def test_v1alpha2_only_fields_are_dropped_on_the_way_to_v1alpha1() -> None:
    obj = convert(_v1alpha1(), V1ALPHA2)
    obj["spec"]["kvCacheOffloading"] = {"cpu": "4Gi"}
    obj["spec"]["prefill"]["kvCacheOffloading"] = {"cpu": "2Gi"}
    obj["spec"]["model"]["confidential"] = {"enabled": True}
    obj["status"] = {
        "url": "http://llm.ns",
        "conditions": [{"type": "Ready", "status": "True"}],
        "observedGeneration": 3,
        "addresses": [{"url": "http://gw", "origin": {"kind": "Gateway", "name": "gw"}}],
        "router": {"scheduler": {"service": {"name": "epp"}}, "group": {"name": "g"}},
        "workloads": {"primary": {"kind": "Deployment", "name": "llm-kserve"}},
        "appliedConfigs": [{"name": "preset", "namespace": "ns", "source": "baseRef"}],
    }
    out = convert(obj, V1ALPHA1)
    assert "kvCacheOffloading" not in out["spec"]
    assert "kvCacheOffloading" not in out["spec"]["prefill"]
    assert "confidential" not in out["spec"]["model"]
    assert out["status"] == {
        "url": "http://llm.ns",
        "conditions": [{"type": "Ready", "status": "True"}],
        "observedGeneration": 3,
        "addresses": [{"url": "http://gw"}],
        "router": {"scheduler": {"service": {"name": "epp"}}},
    }
    # the criticality annotations are consumed: v1alpha1 readers see the fields instead
    assert out["metadata"]["annotations"] == {"team": "a"}
    assert out["spec"]["model"]["criticality"] == "Critical"


def test_converted_objects_fit_each_versions_model() -> None:
    stored = convert(_v1alpha1(), V1ALPHA2)
    parsed = parse_object(stored).to_dict()
    assert parsed["spec"]["router"]["scheduler"]["pool"]["spec"]["targetPorts"] == [
        {"number": 8000}
    ]
    served = v1alpha1.LLMInferenceService.model_validate(convert(stored, V1ALPHA1))
    assert served.spec.model is not None and served.spec.model.criticality == "Critical"


def test_conversion_does_not_change_its_input() -> None:
    obj = _v1alpha1()
    before = copy.deepcopy(obj)
    convert(obj, V1ALPHA2)
    assert obj == before


def test_same_version_is_a_copy() -> None:
    obj = _v1alpha1()
    assert convert(obj, V1ALPHA1) == obj


@pytest.mark.parametrize(
    ("obj", "desired", "field"),
    [
        ({"apiVersion": V1ALPHA1, "kind": "InferenceService"}, V1ALPHA2, "kind"),
        ({"apiVersion": "v1", "kind": "LLMInferenceService"}, V1ALPHA2, "apiVersion"),
        ({"apiVersion": V1ALPHA1, "kind": "LLMInferenceService"}, "x/v9", "desiredAPIVersion"),
    ],
)
def test_unconvertible_objects_name_the_field(
    obj: dict[str, Any], desired: str, field: str
) -> None:
    with pytest.raises(ConversionError, match=field):
        convert(obj, desired)
