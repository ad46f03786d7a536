"""Turn a pydantic JSON schema into a structural openAPIV3Schema that kube-apiserver accepts.

Structural means: every node has a single `type` (or is marked int-or-string / preserve-unknown),
no `$ref`, no `anyOf: [X, null]`, no `additionalProperties` beside `properties`. Embedded
Kubernetes types (marked by `K8S_DEFINITION_KEY`) are replaced by Kubernetes' own definitions.
List-type markers are dropped (a CRD's list-map keys must be required or defaulted, and defaults
are dropped too: the API server must not invent values the model layer did not).
Descriptions are dropped: they would make the CRDs as large as KServe's (about 2 MB) and force
server-side apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.k8s import K8S_DEFINITION_KEY

_KEPT_KEYS = (
    "enum",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "x-kubernetes-map-type",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
)
_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}

# Kubernetes types kept open (an object that keeps unknown fields) instead of expanded: large
# trees users rarely get wrong. Expanding them made InferenceService's CRD 330 KB of JSON, more
# than client-side apply can carry (256 KiB); the kubelet and the workload APIs validate them
# when the controller creates the pods anyway.
OPAQUE_K8S_DEFINITIONS = frozenset(
    {
        "io.k8s.api.core.v1.Affinity",
        "io.k8s.api.core.v1.EphemeralContainer",
        "io.k8s.api.core.v1.Lifecycle",
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "io.k8s.api.core.v1.PodSecurityContext",
        "io.k8s.api.core.v1.Probe",
        "io.k8s.api.core.v1.SecurityContext",
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        "io.k8s.api.core.v1.Volume",
    }
)
_INT_OR_STRING = {"x-kubernetes-int-or-string": True}
# Quantities: Wharf's own quantity fields (`wharf_api.quantity.Quantity`) carry the int-or-string
# schema with the quantity pattern that Kubernetes' code generators write, kept by
# `_int_or_string`. Quantities inside embedded Kubernetes types (a container's resources) stay
# plain int-or-string: runtimes put Go templates there (`nvidia.com/gpu: '{{.GPUs}}'`, as KServe's
# own vLLM runtime does), which the model layer keeps and the pattern would refuse.


class _Converter:
    def __init__(self, model_defs: Mapping[str, Any], k8s_defs: Mapping[str, Any]) -> None:
        self._model_defs = model_defs
        self._k8s_defs = k8s_defs

    def convert(self, node: Mapping[str, Any], stack: tuple[str, ...] = ()) -> dict[str, Any]:
        if node.get("x-kubernetes-int-or-string") is True:
            return _int_or_string(node)
        if K8S_DEFINITION_KEY in node:
            return self._k8s(str(node[K8S_DEFINITION_KEY]), stack)
        if "$ref" in node:
            return self._ref(str(node["$ref"]), stack)
        for combinator in ("anyOf", "oneOf", "allOf"):
            if combinator in node:
                return self._combined(node, node[combinator], stack)
        if "const" in node:
            return self._scalar({**node, "enum": [node["const"]]})
        kind = _single_type(node.get("type"))
        if kind == "object" or ("properties" in node and kind is None):
            return self._object(node, stack)
        if kind == "array":
            items = node.get("items")
            if not items:
                return {"type": "array", "items": dict(_PRESERVE)}
            out: dict[str, Any] = {"type": "array", "items": self.convert(items, stack)}
            out.update(_kept(node, exclude=("required",)))
            return out
        if kind is None:
            return dict(_PRESERVE)
        return self._scalar({**node, "type": kind})

    def _ref(self, ref: str, stack: tuple[str, ...]) -> dict[str, Any]:
        name = ref.rpartition("/")[2]
        if name in stack or name in OPAQUE_K8S_DEFINITIONS:  # recursive, or kept open
            return {"type": "object", **_PRESERVE}
        source = self._model_defs if name in self._model_defs else self._k8s_defs
        return self.convert(source[name], (*stack, name))

    def _k8s(self, definition: str, stack: tuple[str, ...]) -> dict[str, Any]:
        if definition not in self._k8s_defs:
            raise KeyError(f"unknown Kubernetes definition {definition!r}")
        if definition in stack or definition in OPAQUE_K8S_DEFINITIONS:
            return {"type": "object", **_PRESERVE}
        return self.convert(self._k8s_defs[definition], (*stack, definition))

    def _combined(
        self, node: Mapping[str, Any], options: list[Mapping[str, Any]], stack: tuple[str, ...]
    ) -> dict[str, Any]:
        real = [o for o in options if _single_type(o.get("type")) != "null" or "$ref" in o]
        types = {_single_type(o.get("type")) for o in real if "$ref" not in o}
        if len(real) == 1:
            merged = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "allOf")}
            return self.convert({**merged, **real[0]}, stack)
        if types and types <= {"string", "integer", "number"} and "string" in types:
            return dict(_INT_OR_STRING)
        if all(_single_type(o.get("type")) in ("integer", "number") for o in real):
            return {"type": "number"}
        return dict(_PRESERVE)

    def _object(self, node: Mapping[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        properties = node.get("properties") or {}
        if properties:
            out["properties"] = {
                name: self.convert(prop, stack) for name, prop in sorted(properties.items())
            }
            required = [r for r in node.get("required", []) if r in properties]
            if required:
                out["required"] = sorted(required)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping) and extra and not properties:
            out["additionalProperties"] = self.convert(extra, stack)
        elif (
            extra is True
            or (isinstance(extra, Mapping) and (extra or properties))
            or (not properties and extra is None)
        ):
            out.update(_PRESERVE)
        for key in ("x-kubernetes-map-type", "x-kubernetes-embedded-resource"):
            if key in node:
                out[key] = node[key]
        return out

    @staticmethod
    def _scalar(node: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": _single_type(node.get("type")) or _enum_type(node)}
        out.update(_kept(node, exclude=("required",)))
        if "enum" in out:
            out["enum"] = [v for v in out["enum"] if v is not None]
        if out["type"] == "number" and "format" in out and out["format"] not in ("double", "float"):
            del out["format"]
        return out


def _int_or_string(node: Mapping[str, Any]) -> dict[str, Any]:
    """An int-or-string node: the only anyOf a structural schema allows, and its pattern."""
    out: dict[str, Any] = {}
    if "pattern" in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        out["pattern"] = node["pattern"]
    out["x-kubernetes-int-or-string"] = True
    return out


def _single_type(value: Any) -> str | None:
    if isinstance(value, list):
        real = [v for v in value if v != "null"]
        return real[0] if len(real) == 1 else None
    return value if isinstance(value, str) else None


def _enum_type(node: Mapping[str, Any]) -> str:
    values = node.get("enum", [])
    if values and all(isinstance(v, bool) for v in values):
        return "boolean"
    if values and all(isinstance(v, int) for v in values):
        return "integer"
    return "string"


def _kept(node: Mapping[str, Any], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: node[k] for k in _KEPT_KEYS if k in node and k not in exclude}


def structural_schema(
    schema: Mapping[str, Any], k8s_definitions: Mapping[str, Any]
) -> dict[str, Any]:
    """Convert pydantic's JSON schema of one model (with its `$defs`) to a structural schema."""
    model_defs: Mapping[str, Any] = schema.get("$defs", {})
    return _Converter(model_defs, k8s_definitions).convert(schema)
