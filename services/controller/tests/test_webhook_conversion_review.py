"""The conversion webhook's decision: ConversionReview v1 in, converted objects out."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api.conversion import MODEL_CRITICALITY_ANNOTATION
from wharf_controller.webhook.conversion_review import BadConversionReview, convert_review


def _llm(api_version: str = "serving.kserve.io/v1alpha1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "LLMInferenceService",
        "metadata": {"name": "llm", "namespace": "ns", "uid": "x"},
        "spec": {"model": {"uri": "hf://o/m", "criticality": "Standard"}},
    }


def _review(objects: list[Any], desired: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "r-1", "desiredAPIVersion": desired, "objects": objects},
    }


def test_objects_are_converted_to_the_desired_version() -> None:
    out = convert_review(_review([_llm(), _llm()], "serving.kserve.io/v1alpha2"))
    assert out["apiVersion"] == "apiextensions.k8s.io/v1" and out["kind"] == "ConversionReview"
    response = out["response"]
    assert response["uid"] == "r-1" and response["result"] == {"status": "Success"}
    first, second = response["convertedObjects"]
    assert second == first
    assert first["apiVersion"] == "serving.kserve.io/v1alpha2"
    assert first["metadata"]["annotations"][MODEL_CRITICALITY_ANNOTATION] == "Standard"
    assert first["metadata"]["uid"] == "x"  # metadata passes through: the API server checks it
    back = convert_review(_review([first], "serving.kserve.io/v1alpha1"))["response"]
    assert back["convertedObjects"] == [_llm()]


def test_one_unconvertible_object_fails_the_review_naming_it() -> None:
    wrong = {**_llm(), "kind": "InferenceService"}
    response = convert_review(_review([_llm(), wrong], "serving.kserve.io/v1alpha2"))["response"]
    assert response["result"]["status"] == "Failure"
    assert "kind" in response["result"]["message"]
    assert "convertedObjects" not in response


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("x", "JSON object"),
        ({"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview"}, "apiVersion"),
        ({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"}, "request"),
        (
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "ConversionReview",
                "request": {"uid": "u", "desiredAPIVersion": "v", "objects": "no"},
            },
            "request.objects",
        ),
    ],
)
def test_a_malformed_review_is_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(BadConversionReview, match=field):
        convert_review(body)
