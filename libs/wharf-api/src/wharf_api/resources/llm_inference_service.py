"""LLMInferenceService, `serving.kserve.io` served at v1alpha1 and v1alpha2, stored at v1alpha2
(short name `llmisvc`).

These are the stored (v1alpha2) types; v1alpha1's shape is in `llm_inference_service_v1alpha1`,
and `wharf_api.conversion` converts between them.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field

from wharf_api.k8s import LocalObjectReference, PersistentVolumeClaimSpec, PodSpec
from wharf_api.quantity import Quantity
from wharf_api.resources._base import Addressable, Condition, KServeModel, Resource


class ConfidentialSpec(KServeModel):
    enabled: bool | None = None
    resource_id: str | None = None


class LLMModelSpec(KServeModel):
    uri: str | None = None
    name: str | None = None
    lora: LoraSpec | None = None
    confidential: ConfidentialSpec | None = None


# KServe's LoRA adapters are LLMModelSpecs (uri, name, ...)
LoraAdapter = LLMModelSpec


class LoraSpec(KServeModel):
    adapters: list[LLMModelSpec] | None = None
    max_rank: int | None = None
    max_adapters: int | None = None
    max_cpu_adapters: int | None = None


LLMModelSpec.model_rebuild()


class ParallelismSpec(KServeModel):
    tensor: int | None = None
    pipeline: int | None = None
    data: int | None = None
    data_local: int | None = None
    # KServe's JSON name is `dataRPCPort` (the camel-case generator would write `dataRpcPort`);
    # the old spelling is still read so manifests written for earlier Wharf versions keep it.
    data_rpc_port: int | None = Field(
        default=None,
        validation_alias=AliasChoices("dataRPCPort", "dataRpcPort", "data_rpc_port"),
        serialization_alias="dataRPCPort",
    )
    expert: bool | None = None


class ScalingSpec(KServeModel):
    min_replicas: int | None = None
    max_replicas: int | None = None
    wva: dict[str, Any] | None = None
    keda: dict[str, Any] | None = None


class StorageInitializerSpec(KServeModel):
    enabled: bool | None = None


class RolloutStrategy(KServeModel):
    max_unavailable: int | str | None = None
    max_surge: int | str | None = None


class EmptyDirTierSpec(KServeModel):
    size: Quantity


class PVCRefTierSpec(KServeModel):
    name: str
    path: str | None = None


class PVCTierSpec(KServeModel):
    spec: PersistentVolumeClaimSpec | None = None
    ref: PVCRefTierSpec | None = None


class FileSystemTierSpec(KServeModel):
    empty_dir: EmptyDirTierSpec | None = None
    pvc: PVCTierSpec | None = None


class SecondaryTierSpec(KServeModel):
    file_system: FileSystemTierSpec | None = None


class KVCacheOffloadingSpec(KServeModel):
    cpu: Quantity
    eviction_policy: str | None = None
    secondary: list[SecondaryTierSpec] | None = None


class WorkloadSpec(KServeModel):
    replicas: int | None = None
    scaling: ScalingSpec | None = None
    parallelism: ParallelismSpec | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    template: PodSpec | None = None
    worker: PodSpec | None = None
    kv_cache_offloading: KVCacheOffloadingSpec | None = None
    rollout_strategy: RolloutStrategy | None = None


class UntypedObjectReference(KServeModel):
    name: str | None = None
    namespace: str | None = None


class GatewayObjectReference(UntypedObjectReference):
    section_name: str | None = None


class HTTPRouteSpec(KServeModel):
    refs: list[LocalObjectReference] | None = None
    spec: dict[str, Any] | None = None


class RouteSpec(KServeModel):
    http: HTTPRouteSpec | None = None
    group: str | None = None
    weight: int | None = None


class GatewaySpec(KServeModel):
    refs: list[GatewayObjectReference] | None = None


class IngressSpec(KServeModel):
    refs: list[UntypedObjectReference] | None = None


class InferencePoolSpec(KServeModel):
    spec: dict[str, Any] | None = None
    ref: LocalObjectReference | None = None


class ConfigMapKeySelector(KServeModel):
    name: str | None = None
    key: str | None = None
    optional: bool | None = None


class SchedulerConfig(KServeModel):
    inline: dict[str, Any] | None = None
    ref: ConfigMapKeySelector | None = None


class TokenizerSpec(KServeModel):
    template: PodSpec | None = None


class SchedulerSpec(KServeModel):
    pool: InferencePoolSpec | None = None
    template: PodSpec | None = None
    config: SchedulerConfig | None = None
    replicas: int | None = None
    tokenizer: TokenizerSpec | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class RouterSpec(KServeModel):
    route: RouteSpec | None = None
    gateway: GatewaySpec | None = None
    ingress: IngressSpec | None = None
    scheduler: SchedulerSpec | None = None


class TracingSpec(KServeModel):
    exporter_endpoint: str | None = None
    sampler: str | None = None
    sampler_arg: str | None = None
    exporter: str | None = None


class LLMInferenceServiceSpec(WorkloadSpec):
    model: LLMModelSpec | None = None
    storage_initializer: StorageInitializerSpec | None = None
    prefill: WorkloadSpec | None = None
    router: RouterSpec | None = None
    tracing: TracingSpec | None = None
    base_refs: list[LocalObjectReference] | None = None


class AppliedConfig(KServeModel):
    name: str
    namespace: str | None = None
    source: str | None = None


class LLMInferenceServiceStatus(KServeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    # duckv1.Status annotations: KServe pins the well-known config names here
    annotations: dict[str, str] | None = None
    url: str | None = None
    address: Addressable | None = None
    addresses: list[dict[str, Any]] | None = None
    router: dict[str, Any] | None = None
    workloads: dict[str, Any] | None = None
    applied_configs: list[AppliedConfig] | None = None


class LLMInferenceService(Resource):
    plural = "llminferenceservices"
    singular = "llminferenceservice"
    short_names = ("llmisvc",)
    served_versions = ("v1alpha1", "v1alpha2")
    storage_version = "v1alpha2"

    api_version: str = "serving.kserve.io/v1alpha2"
    kind: str = "LLMInferenceService"
    spec: LLMInferenceServiceSpec
    status: LLMInferenceServiceStatus | None = None
