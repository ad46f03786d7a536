"""LLMInferenceService planning: presets merged as KServe merges them, then workloads.

`plan_llm_inference_service(llmisvc, configs, *, config=None) -> LLMPlan` is the entry point
both control planes call; see `plan.py` for the dataclasses it returns. Pure.
"""

from __future__ import annotations

from wharf_api.llm.combine import AppliedConfig, combine, well_known_config_names
from wharf_api.llm.errors import LLMPlanError
from wharf_api.llm.plan import (
    EngineSettings,
    LLMContainer,
    LLMPlan,
    LLMPod,
    LLMWorkload,
    LoraPlan,
    ParallelismPlan,
    RoutePlan,
    RouterPlan,
    ScalingPlan,
    SchedulerPlan,
    StorageMount,
    global_config_from,
    plan_llm_inference_service,
    scheduler_weights,
)
from wharf_api.llm.presets import builtin_configs
from wharf_api.llm.template_context import GlobalConfig

__all__ = [
    "AppliedConfig",
    "EngineSettings",
    "GlobalConfig",
    "LLMContainer",
    "LLMPlan",
    "LLMPlanError",
    "LLMPod",
    "LLMWorkload",
    "LoraPlan",
    "ParallelismPlan",
    "RoutePlan",
    "RouterPlan",
    "ScalingPlan",
    "SchedulerPlan",
    "StorageMount",
    "builtin_configs",
    "combine",
    "global_config_from",
    "plan_llm_inference_service",
    "scheduler_weights",
    "well_known_config_names",
]
