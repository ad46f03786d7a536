"""Updates: the deployment mode and a cache's source URI are immutable."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import WharfValidationError, default, parse_object, validate_update
from wharf_api.resources import Resource

MODE = "serving.kserve.io/deploymentMode"


def _isvc(mode: str | None, status_mode: str | None = None) -> Resource:
    doc: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m", "annotations": {MODE: mode} if mode else {}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
    }
    if status_mode:
        doc["status"] = {"deploymentMode": status_mode}
    return default(parse_object(doc))


def test_same_mode_under_its_legacy_name_is_no_change() -> None:
    validate_update(_isvc("Standard"), _isvc("RawDeployment"))


def test_changing_the_mode_is_rejected() -> None:
    with pytest.raises(WharfValidationError) as caught:
        validate_update(_isvc("Standard"), _isvc("Knative"))
    assert caught.value.field_path == f"metadata.annotations[{MODE}]"


def test_removing_the_mode_is_rejected() -> None:
    with pytest.raises(WharfValidationError, match="immutable"):
        validate_update(_isvc("Knative"), _isvc(None))


def test_mode_recorded_in_status_is_frozen() -> None:
    with pytest.raises(WharfValidationError, match="immutable"):
        validate_update(_isvc(None, status_mode="Standard"), _isvc("Serverless"))


def test_setting_a_mode_when_none_was_recorded_is_allowed() -> None:
    validate_update(_isvc(None), _isvc("Standard"))


def test_update_also_validates_the_new_object() -> None:
    bad = _isvc("Standard")
    bad.spec.predictor.min_replicas = -1  # type: ignore[attr-defined]
    with pytest.raises(WharfValidationError) as caught:
        validate_update(_isvc("Standard"), bad)
    assert caught.value.field_path == "spec.predictor.minReplicas"


def _cache(uri: str) -> Resource:
    return parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "LocalModelCache",
            "metadata": {"name": "c"},
            "spec": {"sourceModelUri": uri, "nodeGroups": ["g"]},
        }
    )


def test_cache_source_uri_is_immutable() -> None:
    validate_update(_cache("hf://a/b"), _cache("hf://a/b"))
    with pytest.raises(WharfValidationError) as caught:
        validate_update(_cache("hf://a/b"), _cache("hf://a/c"))
    assert caught.value.field_path == "spec.sourceModelUri"
