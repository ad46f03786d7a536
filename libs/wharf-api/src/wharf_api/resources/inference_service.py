"""InferenceService, `serving.kserve.io/v1beta1` (short name `isvc`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from wharf_api.k8s import (
    ContainerFields,
    DeploymentStrategy,
    HorizontalPodAutoscalerBehavior,
    LocalObjectReference,
    PodFields,
    PodResourceClaim,
    PodSecurityContext,
    TopologySpreadConstraint,
)
from wharf_api.resources._base import (
    Addressable,
    Condition,
    InlineK8sModel,
    KServeModel,
    Resource,
)

FRAMEWORKS: tuple[str, ...] = (
    "sklearn",
    "xgboost",
    "lightgbm",
    "tensorflow",
    "pytorch",
    "onnx",
    "triton",
    "pmml",
    "paddle",
    "huggingface",
)

ProtocolVersion = Literal["v1", "v2", "grpc-v1", "grpc-v2"]
PROTOCOL_VERSIONS: tuple[str, ...] = ("v1", "v2", "grpc-v1", "grpc-v2")


class ModelFormat(KServeModel):
    name: str
    version: str | None = None


class StorageSpec(KServeModel):
    key: str | None = None
    path: str | None = None
    schema_path: str | None = None
    parameters: dict[str, str] | None = None


class StorageUri(KServeModel):
    uri: str
    mount_path: str | None = None


class ConfidentialSpec(KServeModel):
    enabled: bool | None = None
    resource_id: str | None = None


class PredictorExtensionSpec(InlineK8sModel, ContainerFields):
    """Storage and protocol settings plus an inline Container (unknown fields kept)."""

    storage_uri: str | None = None
    storage_uris: list[StorageUri] | None = None
    runtime_version: str | None = None
    protocol_version: ProtocolVersion | None = None
    storage: StorageSpec | None = None
    confidential: ConfidentialSpec | None = None


class ModelSpec(PredictorExtensionSpec):
    model_format: ModelFormat
    runtime: str | None = None


class MetricTarget(KServeModel):
    type: str | None = None
    value: int | float | str | None = None
    average_value: int | float | str | None = None
    average_utilization: int | None = None


class ResourceMetricSource(KServeModel):
    name: str
    target: MetricTarget | None = None


class ExternalMetric(KServeModel):
    backend: str | None = None
    server_address: str | None = None
    query: str | None = None
    namespace: str | None = None


class ExternalMetricSource(KServeModel):
    metric: ExternalMetric | None = None
    authentication_ref: dict[str, Any] | None = None
    target: MetricTarget | None = None


class PodMetric(KServeModel):
    backend: str | None = None
    server_address: str | None = None
    metric_names: list[str] | None = None
    query: str | None = None
    operation_over_time: str | None = None


class PodMetricSource(KServeModel):
    metric: PodMetric | None = None
    target: MetricTarget | None = None


class MetricsSpec(KServeModel):
    type: Literal["Resource", "External", "PodMetric"]
    resource: ResourceMetricSource | None = None
    external: ExternalMetricSource | None = None
    podmetric: PodMetricSource | None = Field(default=None, alias="podmetric")


class AutoScalingSpec(KServeModel):
    metrics: list[MetricsSpec] | None = None
    behavior: HorizontalPodAutoscalerBehavior | None = None


class LoggerSpec(KServeModel):
    url: str | None = None
    mode: Literal["all", "request", "response"] | None = None
    metadata_headers: list[str] | None = None
    metadata_annotations: list[str] | None = None
    marshaller_url: str | None = None
    batch_size: int | None = None
    batch_interval: str | None = None
    storage: dict[str, Any] | None = None


class Batcher(KServeModel):
    max_batch_size: int | None = None
    max_latency: int | None = None
    timeout: int | None = None


class PodSpecFields(InlineK8sModel, PodFields):
    """The inline PodSpec of a component: every PodSpec field optional, unknown ones kept."""

    image_pull_secrets: list[LocalObjectReference] | None = None
    scheduler_name: str | None = None
    priority_class_name: str | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] | None = None
    security_context: PodSecurityContext | None = None
    resource_claims: list[PodResourceClaim] | None = None


class ComponentExtensionSpec(PodSpecFields):
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_target: int | None = None
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = None
    scale_metric_type: Literal["Utilization", "Value", "AverageValue"] | None = None
    auto_scaling: AutoScalingSpec | None = None
    container_concurrency: int | None = None
    timeout: int | None = None
    canary_traffic_percent: int | None = None
    logger: LoggerSpec | None = None
    batcher: Batcher | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    deployment_strategy: DeploymentStrategy | None = None


class WorkerSpec(PodSpecFields):
    pipeline_parallel_size: int | None = None
    tensor_parallel_size: int | None = None


class PredictorSpec(ComponentExtensionSpec):
    name: str | None = None
    sklearn: PredictorExtensionSpec | None = None
    xgboost: PredictorExtensionSpec | None = None
    lightgbm: PredictorExtensionSpec | None = None
    tensorflow: PredictorExtensionSpec | None = None
    pytorch: PredictorExtensionSpec | None = None
    onnx: PredictorExtensionSpec | None = None
    triton: PredictorExtensionSpec | None = None
    pmml: PredictorExtensionSpec | None = None
    paddle: PredictorExtensionSpec | None = None
    huggingface: PredictorExtensionSpec | None = None
    model: ModelSpec | None = None
    storage_uris: list[StorageUri] | None = None
    storage_container_name: str | None = None
    worker_spec: WorkerSpec | None = None

    def frameworks_set(self) -> list[str]:
        return [f for f in FRAMEWORKS if getattr(self, f) is not None]


class ExplainerExtensionSpec(PredictorExtensionSpec):
    config: dict[str, str] | None = None


class TransformerSpec(ComponentExtensionSpec):
    pass


class ExplainerSpec(ComponentExtensionSpec):
    art: ExplainerExtensionSpec | None = None


class CanarySpec(KServeModel):
    predictor: PredictorSpec
    traffic_percent: int | None = None


class InferenceServiceSpec(KServeModel):
    predictor: PredictorSpec
    transformer: TransformerSpec | None = None
    explainer: ExplainerSpec | None = None
    canary: list[CanarySpec] | None = None


class TrafficTarget(KServeModel):
    tag: str | None = None
    revision_name: str | None = None
    configuration_name: str | None = None
    latest_revision: bool | None = None
    percent: int | None = None
    url: str | None = None


class ComponentStatusSpec(KServeModel):
    latest_ready_revision: str | None = None
    latest_created_revision: str | None = None
    previous_rolledout_revision: str | None = None
    latest_rolledout_revision: str | None = None
    traffic: list[TrafficTarget] | None = None
    url: str | None = None
    rest_url: str | None = Field(default=None, alias="restUrl")
    grpc_url: str | None = Field(default=None, alias="grpcUrl")
    address: Addressable | None = None


class ModelRevisionStates(KServeModel):
    active_model_state: str | None = None
    target_model_state: str | None = None


class FailureInfo(KServeModel):
    location: str | None = None
    reason: str | None = None
    message: str | None = None
    model_revision_name: str | None = None
    time: str | None = None
    exit_code: int | None = None


class ModelCopies(KServeModel):
    failed_copies: int | None = None
    total_copies: int | None = None


class ModelStatus(KServeModel):
    transition_status: str | None = None
    states: ModelRevisionStates | None = None
    last_failure_info: FailureInfo | None = None
    copies: ModelCopies | None = None


class CanaryStatus(KServeModel):
    name: str
    ready: bool | None = None
    traffic_percent: int | None = None
    model_status: ModelStatus | None = None


class InferenceServiceStatus(KServeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    url: str | None = None
    address: Addressable | None = None
    components: dict[str, ComponentStatusSpec] | None = None
    model_status: ModelStatus | None = None
    canary_statuses: list[CanaryStatus] | None = None
    deployment_mode: str | None = None
    serving_runtime_name: str | None = None
    cluster_serving_runtime_name: str | None = None


class InferenceService(Resource):
    plural = "inferenceservices"
    singular = "inferenceservice"
    short_names = ("isvc",)
    served_versions = ("v1beta1",)
    storage_version = "v1beta1"

    api_version: str = "serving.kserve.io/v1beta1"
    kind: str = "InferenceService"
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None
