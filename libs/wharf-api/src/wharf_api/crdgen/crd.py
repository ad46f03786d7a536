"""Build one CustomResourceDefinition (as a plain dict) from a resource's pydantic models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from wharf_api.crdgen.structural import structural_schema


@dataclass(frozen=True)
class CrdVersion:
    name: str
    model: type[BaseModel]
    served: bool = True
    storage: bool = True


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            out["priority"] = self.priority
        return out


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class CrdSource:
    group: str
    kind: str
    plural: str
    versions: Sequence[CrdVersion]
    scope: Literal["Namespaced", "Cluster"] = "Namespaced"
    short_names: Sequence[str] = ()
    categories: Sequence[str] = ("kserve", "wharf")
    columns: Sequence[PrinterColumn] = field(default=(AGE,))
    # `spec.conversion` (strategy Webhook) when the versions differ in shape; None: no conversion
    conversion: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"


def _object_schema(model: type[BaseModel], k8s_definitions: Mapping[str, Any]) -> dict[str, Any]:
    schema = structural_schema(
        model.model_json_schema(by_alias=True, mode="validation"), k8s_definitions
    )
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    }
    for part in ("spec", "status"):
        part_schema = schema.get("properties", {}).get(part)
        # A kind without a status (typed `None`) gets none: `type: null` is not structural.
        if part_schema is not None and part_schema.get("type") == "object":
            properties[part] = part_schema
    return {"type": "object", "properties": properties}


def build_crd(source: CrdSource, k8s_definitions: Mapping[str, Any]) -> dict[str, Any]:
    """Return the CRD for `source`, every version with its schema, status subresource, columns."""
    versions = []
    for version in source.versions:
        entry: dict[str, Any] = {
            "name": version.name,
            "served": version.served,
            "storage": version.storage,
            "schema": {"openAPIV3Schema": _object_schema(version.model, k8s_definitions)},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [c.as_dict() for c in source.columns],
        }
        versions.append(entry)
    names: dict[str, Any] = {
        "kind": source.kind,
        "listKind": f"{source.kind}List",
        "plural": source.plural,
        "singular": source.kind.lower(),
    }
    if source.short_names:
        names["shortNames"] = list(source.short_names)
    if source.categories:
        names["categories"] = list(source.categories)
    spec: dict[str, Any] = {
        "group": source.group,
        "names": names,
        "scope": source.scope,
        "versions": versions,
    }
    if source.conversion is not None:
        spec["conversion"] = dict(source.conversion)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": source.name},
        "spec": spec,
    }
