"""LLMInferenceService and LLMInferenceServiceConfig as served at `v1alpha1` (KServe's shape).

Only the CRD schema of the v1alpha1 version is generated from these; the API server converts
v1alpha1 objects to the stored v1alpha2 through the conversion webhook (`wharf_api.conversion`),
and the controller and the local runtime read v1alpha2 (`llm_inference_service`). Differences
from v1alpha2: `model.criticality` (and each adapter's); no `model.confidential`, no
`kvCacheOffloading`; the scheduler's pool spec in the Inference Extension's v1alpha2 shape; a
status without `workloads`, `appliedConfigs` or address origins.
"""

from __future__ import annotations

from typing import Any, Literal

from wharf_api.k8s import LocalObjectReference, PodSpec
from wharf_api.resources._base import Addressable, Condition, KServeModel, Resource
from wharf_api.resources.llm_inference_service import (
    ParallelismSpec,
    RolloutStrategy,
    ScalingSpec,
    StorageInitializerSpec,
    TracingSpec,
)
from wharf_api.resources.llm_inference_service import (
    RouterSpec as V1Alpha2RouterSpec,
)


class LLMModelSpec(KServeModel):
    uri: str | None = None
    name: str | None = None
    criticality: Literal["Critical", "Standard", "Sheddable"] | None = None
    lora: LoraSpec | None = None


class LoraSpec(KServeModel):
    adapters: list[LLMModelSpec] | None = None
    max_rank: int | None = None
    max_adapters: int | None = None
    max_cpu_adapters: int | None = None


LLMModelSpec.model_rebuild()


class WorkloadSpec(KServeModel):
    replicas: int | None = None
    scaling: ScalingSpec | None = None
    parallelism: ParallelismSpec | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    template: PodSpec | None = None
    worker: PodSpec | None = None
    rollout_strategy: RolloutStrategy | None = None


class LLMInferenceServiceSpec(WorkloadSpec):
    model: LLMModelSpec | None = None
    storage_initializer: StorageInitializerSpec | None = None
    prefill: WorkloadSpec | None = None
    # the pool spec inside is an open object in both versions; conversion reshapes it
    router: V1Alpha2RouterSpec | None = None
    tracing: TracingSpec | None = None
    base_refs: list[LocalObjectReference] | None = None


class LLMInferenceServiceStatus(KServeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    annotations: dict[str, str] | None = None
    url: str | None = None
    address: Addressable | None = None
    addresses: list[dict[str, Any]] | None = None  # duckv1.Addressable: url, name, CACerts, ...
    router: dict[str, Any] | None = None


class LLMInferenceServiceConfigStatus(KServeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    annotations: dict[str, str] | None = None


class LLMInferenceService(Resource):
    """Not registered: the registry's LLMInferenceService is the stored (v1alpha2) model."""

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "LLMInferenceService"
    spec: LLMInferenceServiceSpec
    status: LLMInferenceServiceStatus | None = None


class LLMInferenceServiceConfig(Resource):
    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "LLMInferenceServiceConfig"
    spec: LLMInferenceServiceSpec
    status: LLMInferenceServiceConfigStatus | None = None
