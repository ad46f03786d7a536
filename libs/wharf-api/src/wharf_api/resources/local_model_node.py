"""LocalModelNode, `serving.kserve.io/v1alpha1` (cluster-scoped, one per node)."""

from __future__ import annotations

from wharf_api.resources._base import KServeModel, Resource
from wharf_api.resources.local_model_cache import LocalModelStorage


class LocalModelInfo(KServeModel):
    source_model_uri: str
    model_name: str
    namespace: str | None = None
    node_group: str | None = None
    service_account_name: str | None = None
    storage: LocalModelStorage | None = None


class LocalModelNodeSpec(KServeModel):
    local_models: list[LocalModelInfo]


class LocalModelNodeStatus(KServeModel):
    # model name -> ModelDownloadPending | ModelDownloading | ModelDownloaded | ModelDownloadError
    model_status: dict[str, str] | None = None
    # Wharf's addition: model name -> the one-line reason of its ModelDownloadError.
    model_errors: dict[str, str] | None = None


class LocalModelNode(Resource):
    plural = "localmodelnodes"
    singular = "localmodelnode"
    scope = "Cluster"
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "LocalModelNode"
    spec: LocalModelNodeSpec
    status: LocalModelNodeStatus | None = None
