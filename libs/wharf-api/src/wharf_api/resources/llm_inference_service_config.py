"""LLMInferenceServiceConfig: a preset merged into LLMInferenceServices through `baseRefs`."""

from __future__ import annotations

from wharf_api.resources._base import Condition, KServeModel, Resource
from wharf_api.resources.llm_inference_service import (
    LLMInferenceServiceSpec,
    UntypedObjectReference,
)


class LLMInferenceServiceConfigStatus(KServeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    annotations: dict[str, str] | None = None
    # the services that use this config (KServe blocks deleting a config in use)
    referenced_by: list[UntypedObjectReference] | None = None


class LLMInferenceServiceConfig(Resource):
    plural = "llminferenceserviceconfigs"
    singular = "llminferenceserviceconfig"
    short_names = ("llmisvcconfig",)
    served_versions = ("v1alpha1", "v1alpha2")
    storage_version = "v1alpha2"

    api_version: str = "serving.kserve.io/v1alpha2"
    kind: str = "LLMInferenceServiceConfig"
    spec: LLMInferenceServiceSpec
    status: LLMInferenceServiceConfigStatus | None = None
