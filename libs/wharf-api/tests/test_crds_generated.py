"""The CRDs in deploy/base/crds are what the models generate, and are fit to apply."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from wharf_api.crdgen.__main__ import main as crdgen_main
from wharf_api.crdgen.render import render_crds

CRD_DIR = Path(__file__).resolve().parents[3] / "deploy" / "base" / "crds"
# kubectl's client-side apply keeps the whole object in an annotation limited to 256 KiB.
LAST_APPLIED_LIMIT = 262_144


@cache
def _crds() -> dict[str, dict[str, Any]]:
    return {
        name: yaml.load(text, Loader=yaml.CSafeLoader)
        for name, text in render_crds().items()
        if name != "kustomization.yaml"
    }


def test_checked_in_crds_are_fresh() -> None:
    assert crdgen_main([str(CRD_DIR), "--check"]) == 0, "run `make crds`"


def test_check_mode_notices_a_stale_file(tmp_path: Path) -> None:
    assert crdgen_main([str(tmp_path)]) == 0
    target = next(tmp_path.glob("serving.kserve.io_inferenceservices.yaml"))
    target.write_text(target.read_text().replace("isvc", "xsvc"))
    assert crdgen_main([str(tmp_path), "--check"]) == 1


def test_every_kind_has_a_crd() -> None:
    kinds = {crd["spec"]["names"]["kind"] for crd in _crds().values()}
    assert {
        "InferenceService",
        "ServingRuntime",
        "ClusterServingRuntime",
        "InferenceGraph",
        "ClusterStorageContainer",
        "LocalModelCache",
        "LocalModelNode",
        "LocalModelNodeGroup",
        "TrainedModel",
        "LLMInferenceService",
        "LLMInferenceServiceConfig",
    } <= kinds


def test_short_names_and_columns_match_kserve() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in _crds().values()}
    isvc = by_kind["InferenceService"]
    assert isvc["spec"]["names"]["shortNames"] == ["isvc"]
    assert "llmisvc" in by_kind["LLMInferenceService"]["spec"]["names"]["shortNames"]
    assert "ig" in by_kind["InferenceGraph"]["spec"]["names"]["shortNames"]
    columns = [c["name"] for c in isvc["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:2] == ["URL", "Ready"] and columns[-1] == "Age"


def test_llm_inference_service_serves_v1alpha1_and_stores_v1alpha2() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in _crds().values()}
    versions = {v["name"]: v for v in by_kind["LLMInferenceService"]["spec"]["versions"]}
    assert versions["v1alpha1"]["served"] is True
    assert versions["v1alpha2"]["storage"] is True
    assert [v["name"] for v in versions.values() if v["storage"]] == ["v1alpha2"]


def test_every_version_has_a_status_subresource_and_one_storage_version() -> None:
    for name, crd in _crds().items():
        versions = crd["spec"]["versions"]
        assert sum(v["storage"] for v in versions) == 1, name
        for version in versions:
            assert version["subresources"] == {"status": {}}, name
            schema = version["schema"]["openAPIV3Schema"]
            assert schema["properties"]["spec"]["type"] == "object", name


def test_crds_are_small_enough_for_client_side_apply() -> None:
    for name, crd in _crds().items():
        size = len(json.dumps(crd, separators=(",", ":")).encode())
        assert size < LAST_APPLIED_LIMIT, f"{name} is {size} bytes of JSON"
