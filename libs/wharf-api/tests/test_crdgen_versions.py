"""Kinds served at versions of different shapes get one schema per version and a conversion
webhook; every other kind has one shape and no conversion stanza."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from wharf_api.crdgen.catalog import CONVERT_PATH
from wharf_api.crdgen.render import render_crds


def _by_kind() -> dict[str, dict[str, Any]]:
    crds = [yaml.load(t, Loader=yaml.CSafeLoader) for n, t in render_crds().items()]
    return {c["spec"]["names"]["kind"]: c for c in crds if c.get("kind") != "Kustomization"}


@pytest.mark.parametrize("kind", ["LLMInferenceService", "LLMInferenceServiceConfig"])
def test_llm_kinds_have_a_schema_per_version_and_a_conversion_webhook(kind: str) -> None:
    crd = _by_kind()[kind]
    schemas = {
        v["name"]: v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        for v in crd["spec"]["versions"]
    }
    assert "kvCacheOffloading" in schemas["v1alpha2"]
    assert "kvCacheOffloading" not in schemas["v1alpha1"]
    assert "kvCacheOffloading" not in schemas["v1alpha1"]["prefill"]["properties"]
    assert "criticality" in schemas["v1alpha1"]["model"]["properties"]
    assert "criticality" not in schemas["v1alpha2"]["model"]["properties"]
    assert "confidential" in schemas["v1alpha2"]["model"]["properties"]
    conversion = crd["spec"]["conversion"]
    assert conversion["strategy"] == "Webhook"
    assert conversion["webhook"]["conversionReviewVersions"] == ["v1"]
    assert conversion["webhook"]["clientConfig"]["service"]["path"] == CONVERT_PATH


def test_single_shape_kinds_have_no_conversion() -> None:
    for kind, crd in _by_kind().items():
        if not kind.startswith("LLMInferenceService"):
            assert "conversion" not in crd["spec"], kind
