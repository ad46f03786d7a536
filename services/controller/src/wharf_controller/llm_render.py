"""From an LLMInferenceService and the LLMInferenceServiceConfigs a cluster holds to its plan and
its children (pure): used by the controller and by `wharf-controller render`.

Which configs a service sees is KServe's lookup: a config in the service's namespace before one
of the same name in the system namespace (`kserve`), then Wharf's built-in presets (inside
`wharf_api.llm`). A config written without a namespace (a file for `kubectl apply`) lands in
the service's namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wharf_api import parse_object, validate
from wharf_api.config import InferenceServiceConfig
from wharf_api.llm import LLMPlan, plan_llm_inference_service
from wharf_api.llm.presets import SYSTEM_NAMESPACE
from wharf_api.names import DEFAULT_NAMESPACE
from wharf_api.resources import LLMInferenceService, LLMInferenceServiceConfig
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_controller.desired.llm_inference_service import LLMInputs, expected_llm_children

JSON = dict[str, Any]


def parse_llm(doc: Mapping[str, Any]) -> LLMInferenceService:
    obj = parse_object(dict(doc))
    if not isinstance(obj, LLMInferenceService):
        raise ValueError(f"not an LLMInferenceService: {doc.get('kind')}")
    validate(obj)
    return obj


def parse_llm_config(doc: Mapping[str, Any]) -> LLMInferenceServiceConfig:
    obj = parse_object(dict(doc))
    if not isinstance(obj, LLMInferenceServiceConfig):
        raise ValueError(f"not an LLMInferenceServiceConfig: {doc.get('kind')}")
    return obj


def configs_for(
    namespace: str,
    configs: Iterable[LLMInferenceServiceConfig],
    system_namespace: str = SYSTEM_NAMESPACE,
) -> dict[str, LLMInferenceServiceConfig]:
    """The configs a service in `namespace` may name, by name (its own namespace wins)."""
    system: dict[str, LLMInferenceServiceConfig] = {}
    local: dict[str, LLMInferenceServiceConfig] = {}
    for cfg in configs:
        ns = cfg.metadata.namespace
        if ns is None or ns == namespace:
            local[cfg.name] = cfg
        elif ns == system_namespace:
            system[cfg.name] = cfg
    return {**system, **local}


def render_llm_service(
    llmisvc: LLMInferenceService,
    configs: Iterable[LLMInferenceServiceConfig],
    config: InferenceServiceConfig,
    *,
    storage_containers: Sequence[ClusterStorageContainer] = (),
    owner: JSON | None = None,
    inference_pool_api: bool = True,
    gateway_api: bool = True,
    system_namespace: str = SYSTEM_NAMESPACE,
) -> tuple[LLMPlan, LLMInputs, list[JSON]]:
    """The plan, the inputs of the desired objects, and the objects. Raises LLMPlanError,
    LLMDesiredError (both ValueErrors naming the object and field)."""
    namespace = llmisvc.metadata.namespace or DEFAULT_NAMESPACE
    plan = plan_llm_inference_service(
        llmisvc, configs_for(namespace, configs, system_namespace), config=config
    )
    inputs = LLMInputs(
        plan=plan,
        config=config,
        storage_containers=storage_containers,
        owner=owner,
        inference_pool_api=inference_pool_api,
        gateway_api=gateway_api,
    )
    return plan, inputs, expected_llm_children(inputs)
