"""Manifests KServe rejects are rejected, and the error names the field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from wharf_api import WharfValidationError, default, load_documents, parse_object, validate

INVALID = sorted((Path(__file__).parent / "fixtures" / "invalid").glob("*.yaml"))


def _expected_path(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' header"
    return first.removeprefix("# expect: ").strip()


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_rejected_naming_the_field(path: Path) -> None:
    expected = _expected_path(path)
    (doc,) = load_documents(path)
    with pytest.raises(WharfValidationError) as caught:
        validate(default(parse_object(doc)))
    assert caught.value.field_path == expected
    assert expected in str(caught.value)
    assert caught.value.name == doc["metadata"]["name"]


def test_there_are_invalid_fixtures_for_each_rule() -> None:
    assert len(INVALID) >= 6


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(WharfValidationError, match="apiVersion"):
        parse_object({"apiVersion": "serving.kserve.io/v9", "kind": "InferenceService"})


def test_missing_spec_is_rejected() -> None:
    with pytest.raises(WharfValidationError) as caught:
        parse_object({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService"})
    assert caught.value.field_path == "spec"


def test_predictor_without_any_model_is_rejected() -> None:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "empty"},
        "spec": {"predictor": {"minReplicas": 1}},
    }
    with pytest.raises(WharfValidationError) as caught:
        validate(parse_object(doc))
    assert caught.value.field_path == "spec.predictor"


def test_model_plus_framework_is_rejected() -> None:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "both"},
        "spec": {
            "predictor": {"sklearn": {}, "model": {"modelFormat": {"name": "sklearn"}}},
        },
    }
    with pytest.raises(WharfValidationError) as caught:
        validate(default(parse_object(doc)))
    assert caught.value.field_path == "spec.predictor.model"
