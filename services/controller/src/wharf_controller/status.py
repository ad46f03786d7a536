"""An InferenceService's status from its observed Deployments (pure), through wharf_api.status.

In Standard mode a component has no revisions: its Deployment stands for its one revision,
ready when the rollout of the current generation is complete (no pod of an older template
left) and a replica is available.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from wharf_api.names import cluster_url
from wharf_api.plan import ServicePlan
from wharf_api.status import (
    ComponentObservation,
    Condition,
    RevisionObservation,
    service_status,
    status_document,
)
from wharf_api.traffic import RolloutState, TrafficTarget, after_traffic

JSON = dict[str, Any]
INVALID_SPEC = "InvalidSpec"


def leader_worker_set_ready(lws: Mapping[str, Any]) -> bool:
    """Every group of a multi-node predictor up (LeaderWorkerSet counts ready groups)."""
    spec, status = lws.get("spec") or {}, lws.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    return wanted > 0 and int(status.get("readyReplicas") or 0) >= wanted


def deployment_ready(deployment: Mapping[str, Any] | None) -> bool:
    """A Deployment (or a multi-node predictor's LeaderWorkerSet) rolled out and available."""
    if deployment is None:
        return False
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    status = deployment.get("status") or {}
    if "leaderWorkerTemplate" in spec:
        return leader_worker_set_ready(deployment)
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    wanted = int(spec.get("replicas", 1))
    if wanted == 0:
        return False
    updated = int(status.get("updatedReplicas") or 0)
    # `replicas` counts the old template's pods too: while any is left, an available replica
    # may be an old one, still serving the previous model
    return (
        updated >= wanted
        and int(status.get("replicas") or 0) <= updated
        and int(status.get("availableReplicas") or 0) >= 1
    )


def observe(component: str, deployment: Mapping[str, Any] | None) -> ComponentObservation:
    name = deployment["metadata"]["name"] if deployment else None
    if name is None:
        return ComponentObservation(component, RolloutState())
    ready = deployment_ready(deployment)
    rollout = RolloutState(
        latest_created=name,
        latest_ready=name if ready else None,
        latest_rolledout=name if ready else None,
    )
    traffic = (TrafficTarget(name, 100, "latest", True),) if ready else ()
    return ComponentObservation(component, rollout, traffic, RevisionObservation(name, 1, ready))


def _previous(status: Mapping[str, Any]) -> list[Condition]:
    return [
        Condition(
            c["type"],
            c["status"],
            c.get("lastTransitionTime", ""),
            c.get("reason"),
            c.get("message"),
        )
        for c in status.get("conditions") or []
    ]


def standard_status(
    plan: ServicePlan,
    deployments: Mapping[str, Mapping[str, Any] | None],
    generation: int,
    now: str,
    previous: Mapping[str, Any],
    runtime: tuple[str | None, str | None] = (None, None),
) -> JSON:
    """`.status` for the plan, given each component's observed Deployment (or None)."""
    observations = [observe(c.component, deployments.get(c.component)) for c in plan.components]
    status = service_status(observations, generation, now, _previous(previous))
    entry = plan.entry
    raw = status_document(status, plan.url, cluster_url(entry.service_name, plan.namespace))
    doc: JSON = _without_nulls(raw)
    doc["deploymentMode"] = "Standard"
    name, kind = runtime
    if name and kind == "ServingRuntime":
        doc["servingRuntimeName"] = name
    elif name and kind == "ClusterServingRuntime":
        doc["clusterServingRuntimeName"] = name
    return doc


def failed_status(
    reason: str, message: str, generation: int, now: str, previous: Mapping[str, Any], mode: str
) -> JSON:
    """Status of a resource that cannot be reconciled (invalid spec, no runtime, other mode)."""
    before = {c.type: c for c in _previous(previous)}
    old = before.get("Ready")
    since = old.last_transition_time if old is not None and old.status == "False" else now
    doc: JSON = {
        "observedGeneration": generation,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "lastTransitionTime": since,
                "reason": reason,
                "message": message[:1024],
            }
        ],
    }
    if mode:
        doc["deploymentMode"] = mode
    return doc


def _without_nulls(value: Any) -> Any:
    # the API server drops nulls from a stored status: leave them out to compare like with like
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _knative_condition(ksvc: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (ksvc.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            found: Mapping[str, Any] = cond
            return found
    return None


def observe_knative(
    component: str, ksvc: Mapping[str, Any] | None, previous: Mapping[str, Any]
) -> ComponentObservation:
    """A component as its Knative Service reports it. The rolled-out revisions are KServe's
    bookkeeping (kept in the InferenceService's status): a latest ready revision that receives
    100% becomes the latest rolled-out one, the one before it the previous."""
    before = ((previous.get("components") or {}).get(component)) or {}
    state = RolloutState(
        latest_rolledout=before.get("latestRolledoutRevision"),
        previous_rolledout=before.get("previousRolledoutRevision"),
    )
    if ksvc is None:
        return ComponentObservation(component, state)
    kstatus = ksvc.get("status") or {}
    meta = ksvc["metadata"]
    if int(kstatus.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        # Knative has not seen the latest template yet: nothing it says is about it
        return ComponentObservation(component, state)
    created = kstatus.get("latestCreatedRevisionName")
    ready = kstatus.get("latestReadyRevisionName")
    state = replace(state, latest_created=created, latest_ready=ready)
    traffic = tuple(
        TrafficTarget(
            str(t.get("revisionName") or ""),
            int(t.get("percent") or 0),
            t.get("tag") or "latest",
            bool(t.get("latestRevision")),
        )
        for t in kstatus.get("traffic") or []
        if t.get("revisionName")
    )
    state = after_traffic(state, traffic)
    cond = _knative_condition(ksvc, "Ready")
    failure = None
    if cond is not None and cond.get("status") == "False":
        failure = (str(cond.get("reason") or "NotReady"), str(cond.get("message") or ""))
    latest = RevisionObservation(created, 0, created == ready, failure=failure) if created else None
    return ComponentObservation(component, state, traffic, latest)


def knative_status(
    plan: ServicePlan,
    services: Mapping[str, Mapping[str, Any] | None],
    generation: int,
    now: str,
    previous: Mapping[str, Any],
    runtime: tuple[str | None, str | None] = (None, None),
) -> JSON:
    """`.status` in Knative mode, from each component's observed Knative Service: revisions,
    traffic and URL per component; the service's URL is the entry component's."""
    observations = [
        observe_knative(c.component, services.get(c.component), previous) for c in plan.components
    ]
    status = service_status(observations, generation, now, _previous(previous))
    entry = services.get(plan.entry.component) or {}
    kstatus = entry.get("status") or {}
    url = kstatus.get("url")
    address = (kstatus.get("address") or {}).get("url")
    doc: JSON = _without_nulls(status_document(status, url, address))
    for comp in plan.components:
        ksvc = services.get(comp.component) or {}
        comp_url = (ksvc.get("status") or {}).get("url")
        if comp_url and comp.component in doc["components"]:
            doc["components"][comp.component]["url"] = comp_url
    doc["deploymentMode"] = "Knative"
    name, kind = runtime
    if name and kind == "ServingRuntime":
        doc["servingRuntimeName"] = name
    elif name and kind == "ClusterServingRuntime":
        doc["clusterServingRuntimeName"] = name
    return doc
