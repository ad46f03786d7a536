"""Shapes of KServe manifests that KServe accepts and Wharf must keep: KServe's own JSON field
names, Kubernetes quantities written as YAML numbers, older spellings KServe still reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wharf_api import parse_object

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
