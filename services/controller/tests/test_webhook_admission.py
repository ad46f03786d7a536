"""The admission webhooks' decisions: AdmissionReview v1 in, response out (no server)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from wharf_controller.webhook.admission import (
    BadReview,
    json_patch,
    mutate_review,
    validate_review,
)

MODE = "serving.kserve.io/deploymentMode"


def _isvc(**predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "ns", "annotations": {MODE: "RawDeployment"}},
        "spec": {"predictor": predictor or {"sklearn": {"storageUri": "gs://b/iris"}}},
    }


def _review(obj: Any, operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    request: dict[str, Any] = {"uid": "u-1", "operation": operation, "object": obj}
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _apply(doc: Any, patch: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/remove/replace on objects (what the API server does with the patch)."""
    doc = copy.deepcopy(doc)
    for op in patch:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        target = doc
        for part in parents:
            target = target[part]
        if op["op"] == "remove":
            del target[last]
        else:
            assert op["op"] == "replace" or last not in target, op
            target[last] = op["value"]
    return doc


def _patched(review: dict[str, Any]) -> Any:
    response = mutate_review(review)["response"]
    assert response["allowed"] is True and response["uid"] == "u-1"
    patch = json.loads(base64.b64decode(response["patch"]))
    return _apply(review["request"]["object"], patch)


def test_defaulting_turns_a_framework_into_model_format_and_normalizes_the_mode() -> None:
    obj = _isvc()
    obj["spec"]["predictor"]["unknownButKept"] = {"x": 1}  # the API server's schema decides
    out = _patched(_review(obj))
    predictor = out["spec"]["predictor"]
    assert "sklearn" not in predictor
    assert predictor["model"]["modelFormat"]["name"] == "sklearn"
    assert predictor["model"]["storageUri"] == "gs://b/iris"
    assert predictor["model"]["protocolVersion"] == "v1"
    assert out["metadata"]["annotations"][MODE] == "Standard"
    assert predictor["unknownButKept"] == {"x": 1}


def test_an_object_defaulting_does_not_change_gets_no_patch() -> None:
    obj = _patched(_review(_isvc()))
    response = mutate_review(_review(obj))["response"]
    assert response == {"uid": "u-1", "allowed": True}


def test_an_invalid_inference_service_is_denied_naming_the_field() -> None:
    response = validate_review(_review(_isvc(minReplicas=1)))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert "spec.predictor" in response["status"]["message"]
    assert "iris" in response["status"]["message"]


def test_a_valid_inference_service_is_allowed() -> None:
    assert validate_review(_review(_isvc()))["response"] == {"uid": "u-1", "allowed": True}


def test_changing_the_deployment_mode_is_denied() -> None:
    old = _isvc()
    old["status"] = {"deploymentMode": "Standard"}
    new = _isvc()
    new["metadata"]["annotations"][MODE] = "Knative"
    response = validate_review(_review(new, "UPDATE", old))["response"]
    assert response["allowed"] is False
    assert f"metadata.annotations[{MODE}]" in response["status"]["message"]
    assert "immutable" in response["status"]["message"]


def test_the_same_mode_under_its_legacy_name_is_no_change() -> None:
    old = _isvc()
    old["metadata"]["annotations"][MODE] = "Standard"
    response = validate_review(_review(_isvc(), "UPDATE", old))["response"]
    assert response["allowed"] is True


def test_a_serving_runtime_is_validated() -> None:
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "Bad_Name"},
        "spec": {"supportedModelFormats": [{"name": "sklearn"}], "containers": []},
    }
    response = validate_review(_review(runtime))["response"]
    assert response["allowed"] is False and "metadata.name" in response["status"]["message"]


def test_a_v1alpha1_llm_inference_service_is_validated_as_stored() -> None:
    llm: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": "llm"},
        "spec": {
            "model": {"uri": "hf://o/m", "criticality": "Critical"},
            "replicas": 1,
            "scaling": {"maxReplicas": 2},
        },
    }
    response = validate_review(_review(llm))["response"]
    assert response["allowed"] is False and "spec.scaling" in response["status"]["message"]
    del llm["spec"]["scaling"]
    assert validate_review(_review(llm))["response"]["allowed"] is True


def test_delete_is_allowed_without_an_object() -> None:
    review = _review(None, "DELETE", _isvc())
    assert validate_review(review)["response"]["allowed"] is True
    assert mutate_review(review)["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "JSON object"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}, "apiVersion"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}},
            "request.uid",
        ),
    ],
)
def test_a_malformed_review_is_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(BadReview, match=field):
        validate_review(body)


def test_json_patch_escapes_keys_and_replaces_lists_whole() -> None:
    before = {"a/b": 1, "l": [1, 2], "gone": True}
    after = {"a/b": 2, "l": [1], "new~": {"x": 1}}
    patch = json_patch(before, after)
    assert {"op": "replace", "path": "/a~1b", "value": 2} in patch
    assert {"op": "replace", "path": "/l", "value": [1]} in patch
    assert {"op": "remove", "path": "/gone"} in patch
    assert {"op": "add", "path": "/new~0", "value": {"x": 1}} in patch
    assert _apply(before, patch) == after
