"""The third-party CRDs the tests check Wharf's objects against are the real ones, and the schema
check rejects what the API server would (unknown fields, missing required ones)."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from wharf_e2e.crds import crd_schemas, fixture_crd_files, load_crd, strict_schema

# The real CRDs come from e2e/cluster/third-party-crds.sh, part of scripts/test's set-up.
pytestmark = pytest.mark.setup_tools

# The kinds Wharf's controller creates, at the versions it writes (and the alpha InferencePool
# that clusters may still hold).
WHARF_CREATES = [
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("serving.knative.dev/v1", "Service"),
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
    ("inference.networking.k8s.io/v1", "InferencePool"),
    ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"),
]


def _route(**rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "n"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "svc", "port": 80}], **rule}],
        },
    }


@pytest.mark.parametrize(("api_version", "kind"), WHARF_CREATES)
def test_each_kind_has_the_real_schema_not_a_stub(api_version: str, kind: str) -> None:
    spec = crd_schemas()[(api_version, kind)]["properties"]["spec"]
    # a stub leaves spec open; the real CRDs type it field by field
    assert not spec.get("x-kubernetes-preserve-unknown-fields")
    assert len(spec["properties"]) >= 2


def test_every_fixture_is_a_crd_once() -> None:
    names = [load_crd(path)["metadata"]["name"] for path in fixture_crd_files()]
    assert len(names) == len(set(names))
    assert "httproutes.gateway.networking.k8s.io" in names
    assert "issuers.cert-manager.io" in names  # the stub of the kind not fetched


def test_a_valid_route_passes() -> None:
    jsonschema.validate(_route(), crd_schemas()[("gateway.networking.k8s.io/v1", "HTTPRoute")])


def test_an_unknown_field_is_rejected_as_strict_field_validation_does() -> None:
    schema = crd_schemas()[("gateway.networking.k8s.io/v1", "HTTPRoute")]
    with pytest.raises(jsonschema.ValidationError, match="weigth"):
        jsonschema.validate(_route(weigth=10), schema)


def test_a_value_outside_the_real_schema_is_rejected() -> None:
    schema = crd_schemas()[("gateway.networking.k8s.io/v1", "HTTPRoute")]
    route = _route()
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(route, schema)


def test_a_scaled_object_needs_its_target() -> None:
    schema = crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")]
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "s"},
        "spec": {"triggers": [{"type": "prometheus", "metadata": {"query": "q"}}]},
    }
    with pytest.raises(jsonschema.ValidationError, match="scaleTargetRef"):
        jsonschema.validate(scaled, schema)
    scaled["spec"]["scaleTargetRef"] = {"name": "d"}
    jsonschema.validate(scaled, schema)


def test_strict_schema_keeps_open_what_the_crd_leaves_open() -> None:
    schema = strict_schema(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "pod": {
                            "type": "object",
                            "x-kubernetes-embedded-resource": True,
                            "properties": {"spec": {"type": "object"}},
                        },
                    },
                    "anyOf": [{"properties": {"open": {}}, "required": ["open"]}],
                }
            },
        }
    )
    ok = {
        "apiVersion": "x/v1",
        "kind": "K",
        "metadata": {"name": "k", "anything": 1},
        "spec": {
            "open": {"whatever": 1},
            "labels": {"a": "b"},
            "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"x": 1}},
        },
    }
    jsonschema.validate(ok, schema)
    with pytest.raises(jsonschema.ValidationError, match="extra"):
        jsonschema.validate({**ok, "spec": {**ok["spec"], "extra": 1}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**ok, "spec": {**ok["spec"], "labels": {"a": 1}}}, schema)
