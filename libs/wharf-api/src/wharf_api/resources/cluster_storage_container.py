"""ClusterStorageContainer, `serving.kserve.io/v1alpha1` (cluster-scoped)."""

from __future__ import annotations

from typing import Literal

from wharf_api.k8s import Container
from wharf_api.resources._base import KServeModel, Resource


class SupportedUriFormat(KServeModel):
    prefix: str | None = None
    regex: str | None = None


class StorageContainerSpec(KServeModel):
    container: Container
    supported_uri_formats: list[SupportedUriFormat] | None = None
    workload_type: Literal["initContainer", "localModelDownloadJob"] | None = None
    supports_multi_model_download: bool | None = None


class ClusterStorageContainer(Resource):
    plural = "clusterstoragecontainers"
    singular = "clusterstoragecontainer"
    scope = "Cluster"
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "ClusterStorageContainer"
    spec: StorageContainerSpec
    disabled: bool | None = None
    status: None = None
