"""LocalModelNamespaceCache, `serving.kserve.io/v1alpha1` (namespaced): a LocalModelCache that
only the InferenceServices of its own namespace use. Same spec and status as LocalModelCache;
the model agent downloads its models like a LocalModelCache's, with credentials from the
cache's own namespace."""

from __future__ import annotations

from wharf_api.resources._base import Resource
from wharf_api.resources.local_model_cache import LocalModelCacheSpec, LocalModelCacheStatus


class LocalModelNamespaceCache(Resource):
    plural = "localmodelnamespacecaches"
    singular = "localmodelnamespacecache"
    scope = "Namespaced"
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "LocalModelNamespaceCache"
    spec: LocalModelCacheSpec
    status: LocalModelCacheStatus | None = None
