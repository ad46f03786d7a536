"""ClusterServingRuntime, `serving.kserve.io/v1alpha1` (cluster-scoped)."""

from __future__ import annotations

from wharf_api.resources._base import Resource
from wharf_api.resources.serving_runtime import ServingRuntimeSpec, ServingRuntimeStatus


class ClusterServingRuntime(Resource):
    plural = "clusterservingruntimes"
    singular = "clusterservingruntime"
    scope = "Cluster"
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "ClusterServingRuntime"
    spec: ServingRuntimeSpec
    status: ServingRuntimeStatus | None = None
