"""Pydantic models of Wharf's KServe-compatible resources, one module per kind."""

from wharf_api.resources._base import (
    GROUP,
    Condition,
    InlineK8sModel,
    KServeModel,
    ObjectMeta,
    Resource,
)
from wharf_api.resources.cluster_serving_runtime import ClusterServingRuntime
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_api.resources.inference_graph import InferenceGraph
from wharf_api.resources.inference_service import InferenceService, ModelSpec, PredictorSpec
from wharf_api.resources.llm_inference_service import LLMInferenceService
from wharf_api.resources.llm_inference_service_config import LLMInferenceServiceConfig
from wharf_api.resources.local_model_cache import LocalModelCache
from wharf_api.resources.local_model_namespace_cache import LocalModelNamespaceCache
from wharf_api.resources.local_model_node import LocalModelNode
from wharf_api.resources.local_model_node_group import LocalModelNodeGroup
from wharf_api.resources.serving_runtime import ServingRuntime, ServingRuntimeSpec
from wharf_api.resources.trained_model import TrainedModel

ALL_RESOURCES: tuple[type[Resource], ...] = (
    InferenceService,
    ServingRuntime,
    ClusterServingRuntime,
    InferenceGraph,
    ClusterStorageContainer,
    LocalModelCache,
    LocalModelNamespaceCache,
    LocalModelNode,
    LocalModelNodeGroup,
    TrainedModel,
    LLMInferenceService,
    LLMInferenceServiceConfig,
)

__all__ = [
    "ALL_RESOURCES",
    "GROUP",
    "ClusterServingRuntime",
    "ClusterStorageContainer",
    "Condition",
    "InferenceGraph",
    "InferenceService",
    "InlineK8sModel",
    "KServeModel",
    "LLMInferenceService",
    "LLMInferenceServiceConfig",
    "LocalModelCache",
    "LocalModelNamespaceCache",
    "LocalModelNode",
    "LocalModelNodeGroup",
    "ModelSpec",
    "ObjectMeta",
    "PredictorSpec",
    "Resource",
    "ServingRuntime",
    "ServingRuntimeSpec",
    "TrainedModel",
]
