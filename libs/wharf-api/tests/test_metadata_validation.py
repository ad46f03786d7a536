"""Names and namespaces are checked as the API server checks them, with the field path,
before anything uses them as a folder, a host or a label."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import parse_object, validation_errors
from wharf_api.names import dns1035_label_error, dns1123_label_error, dns1123_subdomain_error


def isvc(name: str | None, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if name is not None:
        meta["name"] = name
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": {"sklearn": {"storageUri": "s3://b/m"}}},
    }


def errors(doc: dict[str, Any]) -> dict[str, str]:
    return {e.field_path: e.message for e in validation_errors(parse_object(doc))}


@pytest.mark.parametrize(
    "namespace",
    ["../../../elsewhere/escape", "a/b", "UPPER", "-lead", "trail-", "dots.not.allowed", "x" * 64],
)
def test_bad_namespaces_are_rejected_with_the_field(namespace: str) -> None:
    assert "metadata.namespace" in errors(isvc("iris", namespace))


@pytest.mark.parametrize("name", ["../x", "a/b", "Iris", "1abc", "a.b", "x" * 64, "a_b"])
def test_bad_isvc_names_are_rejected(name: str) -> None:
    assert "metadata.name" in errors(isvc(name))


def test_a_name_is_required() -> None:
    assert errors(isvc(None)) == {"metadata.name": "a name is required"}


def test_good_names_pass() -> None:
    assert errors(isvc("iris-v2", "team-a")) == {}


def test_other_kinds_allow_dns_subdomain_names() -> None:
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "kserve.sklearn-1"},
        "spec": {"supportedModelFormats": [{"name": "sklearn"}], "containers": [{"name": "c"}]},
    }
    assert "metadata.name" not in errors(runtime)
    runtime["metadata"]["name"] = "../etc"
    assert "metadata.name" in errors(runtime)


def test_rules() -> None:
    assert dns1123_label_error("ok-1") is None
    assert dns1123_label_error("a" * 63) is None
    assert dns1123_subdomain_error("a.b-c.d") is None
    assert dns1035_label_error("9lives") is not None
    assert "DNS-1123 label" in (dns1123_label_error("..") or "")
