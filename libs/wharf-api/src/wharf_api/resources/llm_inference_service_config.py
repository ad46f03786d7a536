"""LLMInferenceServiceConfig: a preset merged into LLMInferenceServices through `baseRefs`."""

from __future__ import annotations

from wharf_api.resources._base import Resource
from wharf_api.resources.llm_inference_service import LLMInferenceServiceSpec


class LLMInferenceServiceConfig(Resource):
    plural = "llminferenceserviceconfigs"
    singular = "llminferenceserviceconfig"
    short_names = ("llmisvcconfig",)
    served_versions = ("v1alpha1", "v1alpha2")
    storage_version = "v1alpha2"

    api_version: str = "serving.kserve.io/v1alpha2"
    kind: str = "LLMInferenceServiceConfig"
    spec: LLMInferenceServiceSpec
    status: None = None
