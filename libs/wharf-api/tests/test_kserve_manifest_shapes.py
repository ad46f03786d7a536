"""Shapes of KServe manifests that KServe accepts and Wharf must keep: KServe's own JSON field
names, Kubernetes quantities written as YAML numbers, older spellings KServe still reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_api import (
    WharfValidationError,
    default,
    load_documents,
    parse_object,
    validate,
    validate_update,
)
from wharf_api.quantity import QUANTITY_PATTERN, canonical_quantity
from wharf_api.registry import find
from wharf_api.resources import LocalModelNamespaceCache

CRDS = Path(__file__).parents[3] / "deploy" / "base" / "crds"


def _llmisvc(parallelism: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": "llm"},
        "spec": {
            "model": {"uri": "hf://org/model"},
            "parallelism": parallelism,
            "worker": {"containers": []},
        },
    }


def _crd_properties(file: str, *path: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / file).read_text())
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path:
        node = node["properties"][name]
    properties: dict[str, Any] = node["properties"]
    return properties


def test_parallelism_data_rpc_port_uses_kserve_spelling() -> None:
    out = parse_object(_llmisvc({"data": 2, "dataRPCPort": 5555})).to_dict()
    assert out["spec"]["parallelism"] == {"data": 2, "dataRPCPort": 5555}


def test_parallelism_data_rpc_port_old_spelling_is_still_read() -> None:
    out = parse_object(_llmisvc({"dataRpcPort": 5556})).to_dict()
    assert out["spec"]["parallelism"] == {"dataRPCPort": 5556}


def test_parallelism_crd_schema_keeps_data_rpc_port() -> None:
    for file in (
        "serving.kserve.io_llminferenceservices.yaml",
        "serving.kserve.io_llminferenceserviceconfigs.yaml",
    ):
        properties = _crd_properties(file, "spec", "parallelism")
        assert properties["dataRPCPort"] == {"type": "integer"}, file
        assert "dataRpcPort" not in properties, file


# --- quantities written as YAML numbers ---------------------------------------------------------

# (written, as Kubernetes prints it): k8s.io/apimachinery resource.Quantity's canonical form.
CANONICAL = [
    (0.1, "100m"),
    (0.5, "500m"),
    (1e9, "1G"),
    (1000000000, "1G"),
    (2, "2"),
    (1.5, "1500m"),
    ("1.5", "1500m"),
    ("100m", "100m"),
    ("0.1m", "100u"),
    ("1500", "1500"),
    ("1500000", "1500k"),
    ("1e9", "1e9"),  # a string keeps the exponent format
    ("12e6", "12e6"),
    ("1e-3", "1e-3"),
    ("1.5Gi", "1536Mi"),
    ("0.5Gi", "512Mi"),
    ("1024Mi", "1Gi"),
    ("1000Ki", "1000Ki"),
    ("1.5Ki", "1536"),
    ("512", "512"),
    ("1E", "1E"),
    ("+1k", "1k"),
    (".5", "500m"),
    ("-0.5", "-500m"),
    ("0Gi", "0"),
    ("0.0000000001", "1n"),  # rounded up to nano precision
    (1e-7, "100e-9"),
]


@pytest.mark.parametrize(("written", "printed"), CANONICAL, ids=[repr(w) for w, _ in CANONICAL])
def test_quantity_is_printed_as_kubernetes_prints_it(written: str | float, printed: str) -> None:
    assert canonical_quantity(written) == printed
    assert canonical_quantity(printed) == printed  # canonical form is a fixed point


@pytest.mark.parametrize("bad", ["abc", "1.2.3", "12 GB", "1Gb", "", True, None, float("inf")])
def test_not_a_quantity_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        canonical_quantity(bad)  # type: ignore[arg-type]


def test_quantity_pattern_agrees_with_the_parser() -> None:
    pattern = re.compile(QUANTITY_PATTERN)
    for written, printed in CANONICAL:
        assert pattern.match(printed), printed
        if isinstance(written, str):
            assert pattern.match(written), written
    for bad in ("abc", "1.2.3", "12 GB", "1Gb"):
        assert not pattern.match(bad)


ISVC_YAML = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris}
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://kfserving-examples/models/sklearn/1.0/model
      resources:
        requests: {cpu: 0.1, memory: 1e9}
        limits: {cpu: 1, memory: 2Gi, nvidia.com/gpu: 1}
"""


def test_isvc_resources_written_as_yaml_numbers_are_kept_as_kubernetes_prints_them() -> None:
    (doc,) = load_documents(ISVC_YAML)
    assert doc["spec"]["predictor"]["model"]["resources"]["requests"] == {
        "cpu": 0.1,
        "memory": 1e9,  # a number, as kubectl reads YAML, not the string "1e9"
    }
    out = default(parse_object(doc)).to_dict()
    resources = out["spec"]["predictor"]["model"]["resources"]
    assert resources == {
        "requests": {"cpu": "100m", "memory": "1G"},
        "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    # Printed again, read again: the same.
    assert parse_object(out).to_dict()["spec"]["predictor"]["model"]["resources"] == resources


def test_quantity_that_is_not_one_is_refused_naming_the_field() -> None:
    (doc,) = load_documents(ISVC_YAML.replace("cpu: 0.1", "cpu: lots"))
    with pytest.raises(WharfValidationError) as caught:
        parse_object(doc)
    assert "spec.predictor.model.resources.requests.cpu" in str(caught.value)
    assert "not a Kubernetes quantity" in str(caught.value)


def test_runtime_template_in_a_quantity_is_kept() -> None:
    doc = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "vllm"},
        "spec": {
            "supportedModelFormats": [{"name": "vllm"}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "vllm",
                    "resources": {"requests": {"cpu": 4, "nvidia.com/gpu": "{{.GPUs}}"}},
                }
            ],
        },
    }
    resources = parse_object(doc).to_dict()["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "4", "nvidia.com/gpu": "{{.GPUs}}"}}


def test_kserve_quantity_fields_read_numbers() -> None:
    (cache, group, trained) = load_documents(
        """
apiVersion: serving.kserve.io/v1alpha1
kind: LocalModelCache
metadata: {name: llama}
spec:
  sourceModelUri: hf://meta-llama/Llama-3.2-1B
  modelSize: 1.5e+10
  nodeGroups: [gpu]
---
apiVersion: serving.kserve.io/v1alpha1
kind: LocalModelNodeGroup
metadata: {name: gpu}
spec:
  storageLimit: 1e12
  persistentVolumeSpec: {accessModes: [ReadWriteOnce]}
  persistentVolumeClaimSpec: {accessModes: [ReadWriteOnce]}
---
apiVersion: serving.kserve.io/v1alpha1
kind: TrainedModel
metadata: {name: tm}
spec:
  inferenceService: mms
  model: {storageUri: "gs://m", framework: sklearn, memory: 268435456}
"""
    )
    assert parse_object(cache).to_dict()["spec"]["modelSize"] == "15G"
    assert parse_object(group).to_dict()["spec"]["storageLimit"] == "1T"
    assert parse_object(trained).to_dict()["spec"]["model"]["memory"] == "268435456"


def test_kserve_quantity_fields_have_the_quantity_schema_in_the_crds() -> None:
    schema = {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }
    assert _crd_properties("serving.kserve.io_localmodelcaches.yaml", "spec")["modelSize"] == (
        schema
    )
    group = _crd_properties("serving.kserve.io_localmodelnodegroups.yaml", "spec")
    assert group["storageLimit"] == schema
    status = _crd_properties("serving.kserve.io_localmodelnodegroups.yaml", "status")
    assert status["used"] == status["available"] == schema
    model = _crd_properties("serving.kserve.io_trainedmodels.yaml", "spec", "model")
    assert model["memory"] == schema


# --- LocalModelCache's older singular nodeGroup -------------------------------------------------


def _cache(spec: dict[str, Any], kind: str = "LocalModelCache") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "llama"}
    if kind == "LocalModelNamespaceCache":
        metadata["namespace"] = "team-a"
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"sourceModelUri": "hf://meta-llama/Llama-3.2-1B", "modelSize": "3Gi", **spec},
    }


def test_singular_node_group_is_normalised_to_node_groups() -> None:
    cache = parse_object(_cache({"nodeGroup": "workers"}))
    validate(cache)
    spec = cache.to_dict()["spec"]
    assert spec["nodeGroups"] == ["workers"]
    assert "nodeGroup" not in spec
    assert parse_object(cache.to_dict()).to_dict() == cache.to_dict()


def test_singular_and_plural_node_groups_are_merged() -> None:
    both = parse_object(_cache({"nodeGroup": "a100", "nodeGroups": ["h100"]})).to_dict()
    assert both["spec"]["nodeGroups"] == ["a100", "h100"]
    same = parse_object(_cache({"nodeGroup": "h100", "nodeGroups": ["h100"]})).to_dict()
    assert same["spec"]["nodeGroups"] == ["h100"]


def test_cache_without_any_node_group_is_refused_naming_the_field() -> None:
    for spec in ({}, {"nodeGroups": []}, {"nodeGroup": ""}):
        with pytest.raises(WharfValidationError) as caught:
            parse_object(_cache(spec))
        assert caught.value.field_path == "spec.nodeGroups", spec


def test_crd_keeps_the_singular_node_group_for_the_model_layer() -> None:
    for file in (
        "serving.kserve.io_localmodelcaches.yaml",
        "serving.kserve.io_localmodelnamespacecaches.yaml",
    ):
        crd = yaml.safe_load((CRDS / file).read_text())
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert spec["properties"]["nodeGroup"] == {"type": "string"}, file
        assert spec["properties"]["nodeGroups"]["minItems"] == 1, file
        assert spec["required"] == ["sourceModelUri"], file


# --- LocalModelNamespaceCache -------------------------------------------------------------------


def test_namespace_cache_is_a_namespaced_kind_with_the_cache_spec() -> None:
    doc = _cache(
        {"nodeGroups": ["workers"], "serviceAccountName": "hf-reader", "modelSize": 1.5e10},
        kind="LocalModelNamespaceCache",
    )
    cache = parse_object(doc)
    assert isinstance(cache, LocalModelNamespaceCache)
    validate(default(cache))
    out = cache.to_dict()
    assert out["metadata"]["namespace"] == "team-a"
    assert out["spec"] == {
        "sourceModelUri": "hf://meta-llama/Llama-3.2-1B",
        "modelSize": "15G",
        "nodeGroups": ["workers"],
        "serviceAccountName": "hf-reader",
    }
    info = find("localmodelnamespacecaches")
    assert info is not None
    assert (info.kind, info.scope) == ("LocalModelNamespaceCache", "Namespaced")


def test_namespace_cache_source_uri_is_immutable() -> None:
    old = parse_object(_cache({"nodeGroups": ["w"]}, kind="LocalModelNamespaceCache"))
    new_doc = _cache({"nodeGroups": ["w"]}, kind="LocalModelNamespaceCache")
    new_doc["spec"]["sourceModelUri"] = "hf://other/model"
    with pytest.raises(WharfValidationError) as caught:
        validate_update(old, parse_object(new_doc))
    assert caught.value.field_path == "spec.sourceModelUri"


def test_namespace_cache_crd_is_namespaced_with_a_status_subresource() -> None:
    crd = yaml.safe_load((CRDS / "serving.kserve.io_localmodelnamespacecaches.yaml").read_text())
    assert crd["metadata"]["name"] == "localmodelnamespacecaches.serving.kserve.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "LocalModelNamespaceCache"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["storage"]) == ("v1alpha1", True)
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"nodeStatus", "copies", "inferenceServices"} <= set(status)
    kustomization = yaml.safe_load((CRDS / "kustomization.yaml").read_text())
    assert "serving.kserve.io_localmodelnamespacecaches.yaml" in kustomization["resources"]
