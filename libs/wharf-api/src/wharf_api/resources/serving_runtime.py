"""ServingRuntime, `serving.kserve.io/v1alpha1` (namespaced). Its spec is shared with
ClusterServingRuntime."""

from __future__ import annotations

from pydantic import Field

from wharf_api.k8s import EnvVar
from wharf_api.resources._base import KServeModel, Resource
from wharf_api.resources.inference_service import PodSpecFields, ProtocolVersion


class SupportedModelFormat(KServeModel):
    name: str
    version: str | None = None
    auto_select: bool | None = None
    priority: int | None = Field(default=None, ge=1)


class ServingRuntimeWorkerSpec(PodSpecFields):
    pipeline_parallel_size: int | None = None
    tensor_parallel_size: int | None = None


class StorageHelper(KServeModel):
    disabled: bool | None = None


class BuiltInAdapter(KServeModel):
    server_type: str | None = None
    runtime_management_port: int | None = None
    mem_buffer_bytes: int | None = None
    model_loading_timeout_millis: int | None = None
    env: list[EnvVar] | None = None


class ServingRuntimeSpec(PodSpecFields):
    """The runtime spec; its inline ServingRuntimePodSpec keeps unknown PodSpec fields."""

    supported_model_formats: list[SupportedModelFormat] | None = None
    protocol_versions: list[ProtocolVersion] | None = None
    multi_model: bool | None = None
    disabled: bool | None = None
    worker_spec: ServingRuntimeWorkerSpec | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    grpc_endpoint: str | None = None
    grpc_data_endpoint: str | None = None
    http_data_endpoint: str | None = None
    replicas: int | None = None
    storage_helper: StorageHelper | None = None
    built_in_adapter: BuiltInAdapter | None = None


class ServingRuntimeStatus(KServeModel):
    pass


class ServingRuntime(Resource):
    plural = "servingruntimes"
    singular = "servingruntime"
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "ServingRuntime"
    spec: ServingRuntimeSpec
    status: ServingRuntimeStatus | None = None
