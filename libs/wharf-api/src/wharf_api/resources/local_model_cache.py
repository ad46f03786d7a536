"""LocalModelCache, `serving.kserve.io/v1alpha1` (cluster-scoped)."""

from __future__ import annotations

from pydantic import Field

from wharf_api.quantity import Quantity
from wharf_api.resources._base import KServeModel, Resource


class LocalModelStorage(KServeModel):
    key: str | None = None
    parameters: dict[str, str] | None = None


class LocalModelCacheSpec(KServeModel):
    source_model_uri: str
    model_size: Quantity | None = None
    node_groups: list[str] = Field(min_length=1)
    service_account_name: str | None = None
    storage: LocalModelStorage | None = None


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
