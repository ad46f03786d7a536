"""LocalModelNodeGroup, `serving.kserve.io/v1alpha1` (cluster-scoped)."""

from __future__ import annotations

from wharf_api.k8s import PersistentVolumeClaimSpec, PersistentVolumeSpec
from wharf_api.quantity import Quantity
from wharf_api.resources._base import KServeModel, Resource


class LocalModelNodeGroupSpec(KServeModel):
    storage_limit: Quantity
    persistent_volume_spec: PersistentVolumeSpec
    persistent_volume_claim_spec: PersistentVolumeClaimSpec


class LocalModelNodeGroupStatus(KServeModel):
    used: Quantity | None = None
    available: Quantity | None = None


class LocalModelNodeGroup(Resource):
    plural = "localmodelnodegroups"
    singular = "localmodelnodegroup"
    scope = "Cluster"
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "LocalModelNodeGroup"
    spec: LocalModelNodeGroupSpec
    status: LocalModelNodeGroupStatus | None = None
