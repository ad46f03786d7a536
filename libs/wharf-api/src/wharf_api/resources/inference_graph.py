"""InferenceGraph, `serving.kserve.io/v1alpha1` (short name `ig`)."""

from __future__ import annotations

from typing import Literal

from wharf_api.k8s import Affinity, ResourceRequirements, Toleration
from wharf_api.resources._base import Condition, KServeModel, Resource

RouterType = Literal["Sequence", "Splitter", "Ensemble", "Switch"]


class InferenceStep(KServeModel):
    name: str | None = None
    node_name: str | None = None
    service_name: str | None = None
    service_url: str | None = None
    data: str | None = None
    # rewrite `{"predictions": [...]}` into `{"instances": [...]}` before the call (V1 chaining)
    map_predictions_to_instances: bool | None = None
    weight: int | None = None
    condition: str | None = None
    dependency: Literal["Soft", "Hard"] | None = None


class InferenceRouter(KServeModel):
    router_type: RouterType | None = None
    steps: list[InferenceStep] | None = None


class RouterTimeouts(KServeModel):
    server_read: int | None = None
    server_write: int | None = None
    server_idle: int | None = None
    service_client: int | None = None


class InferenceGraphSpec(KServeModel):
    nodes: dict[str, InferenceRouter]
    resources: ResourceRequirements | None = None
    affinity: Affinity | None = None
    timeout: int | None = None
    router_timeouts: RouterTimeouts | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_target: int | None = None
    scale_metric: str | None = None
    tolerations: list[Toleration] | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    service_account_name: str | None = None


class InferenceGraphStatus(KServeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    url: str | None = None
    deployment_mode: str | None = None


class InferenceGraph(Resource):
    plural = "inferencegraphs"
    singular = "inferencegraph"
    short_names = ("ig",)
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "InferenceGraph"
    spec: InferenceGraphSpec
    status: InferenceGraphStatus | None = None
