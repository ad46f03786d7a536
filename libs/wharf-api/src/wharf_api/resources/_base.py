"""Shared base classes for Wharf's KServe-compatible resources."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "serving.kserve.io"

Scope = Literal["Namespaced", "Cluster"]


class KServeModel(BaseModel):
    """A KServe-owned type: typed fields; unknown fields are pruned, as the API server does."""

    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, alias_generator=to_camel, serialize_by_alias=True
    )


class InlineK8sModel(BaseModel):
    """A KServe type that inlines a Kubernetes type (PodSpec, Container): unknown fields kept."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, serialize_by_alias=True
    )


class ObjectMeta(BaseModel):
    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, serialize_by_alias=True
    )
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Condition(KServeModel):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    severity: str | None = None
    last_transition_time: str | None = None
    observed_generation: int | None = None


class Addressable(KServeModel):
    url: str | None = None
    name: str | None = None


class Resource(KServeModel):
    """A top-level resource. Class variables describe it for the registry and CRD generation."""

    group: ClassVar[str] = GROUP
    plural: ClassVar[str] = ""
    singular: ClassVar[str] = ""
    short_names: ClassVar[tuple[str, ...]] = ()
    scope: ClassVar[Scope] = "Namespaced"
    served_versions: ClassVar[tuple[str, ...]] = ()
    storage_version: ClassVar[str] = ""

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name or self.metadata.generate_name or ""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
