"""Every child of an LLMInferenceService (pure): its plan (`wharf_api.llm`) as workloads
(Deployments or LeaderWorkerSets) with a Service each, the router (`wharf-router gateway`) with
its RBAC and Service, and the way in (InferencePool + HTTPRoute, or a Service).

`expected_llm_children(inputs)` is the entry point; `entry_point(inputs)` says which Service
takes the traffic (for the status' address).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wharf_api import plan as isvc_plan
from wharf_api.config import InferenceServiceConfig
from wharf_api.llm import LLMPlan
from wharf_api.llm.template_context import child_name
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_controller.desired.llm_router import (
    expected_http_route,
    expected_inference_pool,
    expected_scheduler,
    names,
    router_port,
)
from wharf_controller.desired.llm_workload import (
    LLMWorkloadError,
    expected_workload,
    expected_workload_service,
)
from wharf_controller.desired.storage import CredentialRefs, PodStorage, pod_storage

JSON = dict[str, Any]


class LLMDesiredError(ValueError):
    """The service cannot be rendered; the message names the object and the field."""


@dataclass(frozen=True)
class LLMInputs:
    """Everything the children of one LLMInferenceService depend on."""

    plan: LLMPlan
    config: InferenceServiceConfig
    storage_containers: Sequence[ClusterStorageContainer] = ()
    credentials: CredentialRefs | None = None
    owner: JSON | None = None  # the owner reference (None when rendering offline)
    # which optional APIs the cluster serves (API discovery); offline renders assume both
    inference_pool_api: bool = True
    gateway_api: bool = True


@dataclass(frozen=True)
class EntryPoint:
    service: str
    port: int
    route: str | None  # the HTTPRoute's name when there is one


def _storage(inputs: LLMInputs) -> PodStorage:
    plan = inputs.plan
    if not plan.storage_initializer or not plan.storage:
        return PodStorage()
    mounts = [isvc_plan.StorageMount(m.uri, m.mount_path) for m in plan.storage]
    return pod_storage(mounts, inputs.config, inputs.storage_containers, inputs.credentials)


def entry_point(inputs: LLMInputs) -> EntryPoint:
    plan = inputs.plan
    router = plan.router
    scheduler = router.scheduler if router is not None else None
    if scheduler is not None:
        service, port = names(plan.name)["service"], router_port(plan, scheduler)
    else:
        service, port = _workload_service_name(plan), plan.main.serving_port
    managed = router is not None and router.route is not None and router.route.managed
    route = names(plan.name)["route"] if managed and inputs.gateway_api else None
    return EntryPoint(service, port, route)


def _workload_service_name(plan: LLMPlan) -> str:
    if plan.router is not None:
        return plan.router.workload_service
    return child_name(plan.name, "-kserve-workload-svc")


def expected_llm_children(inputs: LLMInputs) -> list[JSON]:
    """The objects, in the order they are applied (workloads, then the router, then the route)."""
    plan, owner, config = inputs.plan, inputs.owner, inputs.config
    where = f"{plan.kind} {plan.namespace}/{plan.name}"
    storage = _storage(inputs)
    out: list[JSON] = []
    try:
        for w in plan.workloads:
            out.append(expected_workload(w, plan.namespace, owner, config, storage))
            out.append(expected_workload_service(w, plan.namespace, owner))
    except LLMWorkloadError as exc:
        raise LLMDesiredError(f"{where}: {exc}") from None
    router = plan.router
    scheduler = router.scheduler if router is not None else None
    if scheduler is None:
        # no router: one Service in front of the main workload's pods is the entry point
        out.append(
            expected_workload_service(
                plan.main, plan.namespace, owner, name=_workload_service_name(plan)
            )
        )
    else:
        try:
            out += expected_scheduler(plan, scheduler, owner, config)
        except LLMWorkloadError as exc:
            raise LLMDesiredError(f"{where}: {exc}") from None
        if inputs.inference_pool_api:
            pool = expected_inference_pool(plan, scheduler, owner)
            if pool is not None:
                out.append(pool)
    entry = entry_point(inputs)
    if entry.route is not None:
        route = expected_http_route(plan, owner, entry.service, entry.port)
        if route is not None:
            out.append(route)
    return out
