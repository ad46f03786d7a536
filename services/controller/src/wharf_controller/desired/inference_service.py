"""Every child of an InferenceService (pure).

Standard mode: per component a Deployment (a LeaderWorkerSet for a multi-node predictor), a
Service, an HPA or a KEDA ScaledObject (or none) and a PodDisruptionBudget when minReplicas > 1;
and one HTTPRoute or Ingress for the service. Knative mode: per component a Knative Service
(Knative makes the revisions, their Services, routes and autoscaling)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wharf_api.autoscaling import standard_autoscaler
from wharf_api.config import InferenceServiceConfig
from wharf_api.multinode import MultiNodeError, worker_container, worker_pod_fields
from wharf_api.names import ISVC_LABEL, MANAGED_BY, MANAGED_BY_LABEL, isvc_labels, selector_labels
from wharf_api.plan import ComponentPlan, ServicePlan
from wharf_api.resources import InferenceService
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_controller.desired.knative import expected_knative_service
from wharf_controller.desired.leader_worker_set import expected_leader_worker_set
from wharf_controller.desired.routing import (
    RouteError,
    expected_http_route,
    expected_ingress,
    url_path,
)
from wharf_controller.desired.scaling import expected_hpa, expected_scaled_object
from wharf_controller.desired.storage import CredentialRefs, pod_storage
from wharf_controller.desired.workload import (
    WorkloadError,
    expected_deployment,
    expected_pdb,
    expected_service,
    render_container,
)

JSON = dict[str, Any]


class DesiredError(ValueError):
    """The resource cannot be rendered; the message names the field."""


@dataclass(frozen=True)
class Inputs:
    """Everything the children of one InferenceService depend on."""

    isvc: InferenceService  # defaulted
    plan: ServicePlan
    config: InferenceServiceConfig
    storage_containers: Sequence[ClusterStorageContainer] = ()
    credentials: CredentialRefs | None = None
    owner: JSON | None = None  # the owner reference (None when rendering offline)
    mode: str = "Standard"  # or "Knative"
    # the InferenceService's status as stored: each component's last rolled-out revision
    status: Mapping[str, Any] | None = None
    # the selected runtime's `workerSpec` (camelCase JSON), for a multi-node predictor
    runtime_worker: Mapping[str, Any] | None = None


def service_labels(name: str) -> dict[str, str]:
    """Labels of the objects that belong to the whole service (the route)."""
    return {ISVC_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}


def _component_children(inputs: Inputs, comp: ComponentPlan) -> list[JSON]:
    isvc, config, owner = inputs.isvc, inputs.config, inputs.owner
    namespace = inputs.plan.namespace
    labels = isvc_labels(isvc.name, comp.component)
    selector = selector_labels(isvc.name, comp.component)
    annotations: Mapping[str, str] = isvc.metadata.annotations or {}
    storage = pod_storage(
        comp.storage if comp.component == "predictor" else (),
        config,
        inputs.storage_containers,
        inputs.credentials,
    )
    spec = getattr(isvc.spec, comp.component)
    strategy = spec.deployment_strategy if spec is not None else None
    knative = inputs.mode == "Knative"
    if knative and comp.worker is not None:
        raise WorkloadError(
            f"spec.{comp.component}.workerSpec: multi-node predictors run in Standard mode only"
        )
    multi_node = comp.worker is not None
    autoscaler = standard_autoscaler(comp.scaling, annotations, multi_node=multi_node)
    deployment = expected_deployment(
        comp,
        namespace,
        labels,
        selector,
        owner,
        config,
        storage,
        replicas=comp.scaling.min_replicas if autoscaler in ("none",) else None,
        strategy=strategy.model_dump(by_alias=True, exclude_none=True, mode="json")
        if strategy is not None and not knative
        else None,
    )
    if knative:
        rolled = ((inputs.status or {}).get("components") or {}).get(comp.component) or {}
        return [
            expected_knative_service(
                comp,
                deployment,
                annotations,
                latest_rolledout=rolled.get("latestRolledoutRevision"),
            )
        ]
    workload = _leader_worker_set(inputs, comp, deployment) if multi_node else deployment
    out = [workload, expected_service(comp, namespace, labels, selector, owner)]
    if autoscaler == "hpa":
        out.append(expected_hpa(comp, namespace, labels, owner, config))
    elif autoscaler == "keda":
        out.append(expected_scaled_object(comp, namespace, labels, owner, config))
    if comp.scaling.min_replicas > 1:
        out.append(expected_pdb(comp, namespace, labels, selector, owner))
    return out


def _leader_worker_set(inputs: Inputs, comp: ComponentPlan, deployment: JSON) -> JSON:
    assert comp.worker is not None
    try:
        worker = worker_container(
            comp.component,
            comp.worker,
            inputs.runtime_worker,
            lambda c: render_container(c, comp, inputs.config),
        )
    except MultiNodeError as exc:
        raise WorkloadError(str(exc)) from None
    return expected_leader_worker_set(
        comp,
        inputs.isvc.name,
        deployment,
        worker,
        worker_pod_fields(comp.worker, inputs.runtime_worker),
        inputs.runtime_worker,
    )


def expected_children(inputs: Inputs) -> list[JSON]:
    """The objects, in the order they are applied (workloads before the route)."""
    children: list[JSON] = []
    try:
        for comp in inputs.plan.components:
            children += _component_children(inputs, comp)
    except WorkloadError as exc:
        raise DesiredError(f"InferenceService {inputs.isvc.name}: {exc}") from None
    ingress = inputs.config.ingress
    # Knative mode: each component's Knative Service is routed by Knative itself
    if not ingress.disable_ingress_creation and inputs.mode != "Knative":
        labels = service_labels(inputs.isvc.name)
        if ingress.enable_gateway_api:
            try:
                path = url_path(inputs.plan, inputs.config)
            except RouteError as exc:
                raise DesiredError(str(exc)) from None
            children.append(
                expected_http_route(inputs.plan, labels, inputs.owner, inputs.config, path=path)
            )
        else:
            children.append(expected_ingress(inputs.plan, labels, inputs.owner, inputs.config))
    return children
