"""The JSON-schema -> structural-schema conversion behind the generated CRDs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from wharf_api.crdgen import (
    CrdSource,
    CrdVersion,
    build_crd,
    load_k8s_definitions,
    structural_schema,
)
from wharf_api.k8s import Container, Toleration


def _convert(model: type[BaseModel]) -> dict[str, Any]:
    return structural_schema(model.model_json_schema(by_alias=True), load_k8s_definitions())


def _walk(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every schema node below `schema` (not the maps of property names)."""
    found = [schema]
    for child in schema.get("properties", {}).values():
        found.extend(_walk(child))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found.extend(_walk(schema[key]))
    return found


class _Spec(BaseModel):
    name: str
    replicas: int | None = None
    ratio: float = 0.5
    mode: Literal["Standard", "Knative"] | None = None
    labels: dict[str, str] = {}
    anything: Any = None
    items: list[str] | None = None
    container: Container | None = None
    tolerations: list[Toleration] = []


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    known: str | None = None


def test_optional_fields_become_their_single_type() -> None:
    props = _convert(_Spec)["properties"]
    assert props["replicas"] == {"type": "integer"}
    assert props["ratio"] == {"type": "number"}
    assert props["mode"] == {"type": "string", "enum": ["Standard", "Knative"]}
    assert props["items"] == {"type": "array", "items": {"type": "string"}}
    assert _convert(_Spec)["required"] == ["name"]


def test_maps_and_untyped_fields_are_structural() -> None:
    props = _convert(_Spec)["properties"]
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert props["anything"] == {"x-kubernetes-preserve-unknown-fields": True}


def test_embedded_kubernetes_types_come_from_kubernetes_definitions() -> None:
    container = _convert(_Spec)["properties"]["container"]
    # Fields Wharf never typed are there because the schema is Kubernetes' own.
    assert {"livenessProbe", "readinessProbe", "securityContext", "image"} <= set(
        container["properties"]
    )
    assert container["required"] == ["name"]
    toleration = _convert(_Spec)["properties"]["tolerations"]["items"]
    assert set(toleration["properties"]) == {
        "effect",
        "key",
        "operator",
        "tolerationSeconds",
        "value",
    }


def test_quantities_are_int_or_string() -> None:
    container = _convert(_Spec)["properties"]["container"]
    limits = container["properties"]["resources"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"x-kubernetes-int-or-string": True}


def test_models_that_allow_extra_fields_preserve_them() -> None:
    schema = _convert(_Open)
    assert schema["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["properties"]["known"] == {"type": "string"}


def test_no_node_is_left_without_a_structural_type() -> None:
    nodes = _walk(_convert(_Spec))
    assert len(nodes) > 50  # the embedded Container is expanded
    for node in nodes:
        assert (
            isinstance(node.get("type"), str)
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ), node
        assert not {"$ref", "anyOf", "oneOf", "allOf", "default", "description"} & node.keys()


class _NoStatus(BaseModel):
    spec: _Open
    status: None = None


def test_a_kind_without_status_gets_no_status_property() -> None:
    crd = build_crd(
        CrdSource("example.com", "Thing", "things", [CrdVersion("v1", _NoStatus)]),
        load_k8s_definitions(),
    )
    properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert set(properties) == {"apiVersion", "kind", "metadata", "spec"}
