"""LocalModelCache, `serving.kserve.io/v1alpha1` (cluster-scoped)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from wharf_api.quantity import Quantity
from wharf_api.resources._base import KServeModel, Resource


class LocalModelStorage(KServeModel):
    key: str | None = None
    parameters: dict[str, str] | None = None


def _optional_node_groups(schema: dict[str, Any]) -> None:
    # The CRD must let a manifest with only the older `nodeGroup` through to the model layer,
    # which moves it into `nodeGroups` (and refuses a spec with neither).
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r != "nodeGroups"]


class LocalModelCacheSpec(KServeModel):
    """The spec of LocalModelCache and LocalModelNamespaceCache."""

    model_config = ConfigDict(json_schema_extra=_optional_node_groups)

    source_model_uri: str
    model_size: Quantity | None = None
    node_groups: list[str] = Field(min_length=1)
    # KServe's older singular spelling; read into `nodeGroups` and never written back.
    node_group: str | None = Field(default=None, exclude=True)
    service_account_name: str | None = None
    storage: LocalModelStorage | None = None

    @model_validator(mode="before")
    @classmethod
    def _node_group_into_node_groups(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        key = "nodeGroup" if "nodeGroup" in data else "node_group"
        single = data.get(key)
        if not isinstance(single, str) or not single:
            return data
        out = {k: v for k, v in data.items() if k != key}
        groups_key = "node_groups" if "node_groups" in out else "nodeGroups"
        groups = out.get(groups_key)
        if groups is None:
            out[groups_key] = [single]
        elif isinstance(groups, list) and single not in groups:
            out[groups_key] = [single, *groups]
        return out


class ModelCopies(KServeModel):
    available: int | None = None
    total: int | None = None
    failed: int | None = None


class NamespacedName(KServeModel):
    name: str | None = None
    namespace: str | None = None


class LocalModelCacheStatus(KServeModel):
    node_status: dict[str, str] | None = None
    copies: ModelCopies | None = None
    inference_services: list[NamespacedName] | None = None
    llm_inference_services: list[NamespacedName] | None = None


class LocalModelCache(Resource):
    plural = "localmodelcaches"
    singular = "localmodelcache"
    scope = "Cluster"
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "LocalModelCache"
    spec: LocalModelCacheSpec
    status: LocalModelCacheStatus | None = None
