"""An LLMInferenceService's status from its observed children (pure).

Conditions carry KServe's names: `PresetsCombined`, `MainWorkloadReady`, `PrefillWorkloadReady`
(with a prefill workload), `WorkloadsReady`, `SchedulerWorkloadReady` (with a scheduler),
`InferencePoolReady` and `HTTPRoutesReady` (when those are created), `RouterReady` (with a
router) and `Ready`, which is True when every other one is. A Deployment is ready when it has
rolled out its generation and has an available replica; a LeaderWorkerSet when its groups are
ready (its `Available` condition, or `readyReplicas` up to `replicas`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wharf_api.llm import LLMPlan
from wharf_api.names import cluster_url
from wharf_controller.status import deployment_ready

JSON = dict[str, Any]
Observed = Mapping[str, Any] | None


@dataclass(frozen=True)
class LLMObserved:
    """The children the status depends on, as the cache holds them (None: not there)."""

    workloads: Mapping[str, Observed]  # by workload name
    scheduler: Observed = None  # the router's Deployment
    inference_pool: Observed = None
    http_route: Observed = None


def leader_worker_set_ready(lws: Observed) -> bool:
    if lws is None:
        return False
    spec, status = lws.get("spec") or {}, lws.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    if wanted == 0:
        return False
    available = any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return available or int(status.get("readyReplicas") or 0) >= wanted


def _workload_ready(obj: Observed) -> tuple[bool, str]:
    if obj is None:
        return False, "not created yet"
    kind, name = obj.get("kind", "Deployment"), obj["metadata"]["name"]
    ready = leader_worker_set_ready(obj) if kind == "LeaderWorkerSet" else deployment_ready(obj)
    status = obj.get("status") or {}
    wanted = (obj.get("spec") or {}).get("replicas", 1)
    have = status.get("readyReplicas") or status.get("availableReplicas") or 0
    return ready, f"{kind} {name}: {have} of {wanted} ready"


def _condition(type_: str, ok: bool, reason: str, message: str) -> JSON:
    out: JSON = {"type": type_, "status": "True" if ok else "False"}
    if not ok:
        out["reason"] = reason
        out["message"] = message[:1024]
    return out


def llm_conditions(
    plan: LLMPlan, observed: LLMObserved, *, pool_expected: bool, route_expected: bool
) -> list[JSON]:
    """The conditions without times (pure decision)."""
    out = [_condition("PresetsCombined", True, "", "")]
    all_ready = True
    for w in plan.workloads:
        ready, message = _workload_ready(observed.workloads.get(w.name))
        type_ = "MainWorkloadReady" if w.component == "main" else "PrefillWorkloadReady"
        out.append(_condition(type_, ready, "WorkloadNotReady", message))
        all_ready = all_ready and ready
    out.append(
        _condition("WorkloadsReady", all_ready, "WorkloadNotReady", "a workload is not ready")
    )
    router = plan.router
    scheduler = router.scheduler if router is not None else None
    router_parts: list[bool] = []
    if scheduler is not None:
        ready, message = _workload_ready(observed.scheduler)
        out.append(_condition("SchedulerWorkloadReady", ready, "SchedulerNotReady", message))
        router_parts.append(ready)
    if pool_expected:
        ok = observed.inference_pool is not None
        out.append(_condition("InferencePoolReady", ok, "NotCreated", "no InferencePool yet"))
        router_parts.append(ok)
    if route_expected:
        ok = observed.http_route is not None
        out.append(_condition("HTTPRoutesReady", ok, "NotCreated", "no HTTPRoute yet"))
        router_parts.append(ok)
    if router is not None:
        ok = all(router_parts)
        out.append(_condition("RouterReady", ok, "RouterNotReady", "a router part is not ready"))
    failing = [c["type"] for c in out if c["status"] != "True"]
    out.append(_condition("Ready", not failing, "NotReady", "not ready: " + ", ".join(failing)))
    return out


def _with_times(conditions: Sequence[JSON], previous: Mapping[str, Any], now: str) -> list[JSON]:
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    out = []
    for c in conditions:
        old = before.get(c["type"])
        same = old is not None and old.get("status") == c["status"]
        since = old.get("lastTransitionTime") if same and old is not None else None
        out.append({**c, "lastTransitionTime": since or now})
    return out


def llm_status(
    plan: LLMPlan,
    observed: LLMObserved,
    generation: int,
    now: str,
    previous: Mapping[str, Any],
    *,
    entry_service: str,
    entry_port: int,
    pool_expected: bool,
    route_expected: bool,
) -> JSON:
    """`.status`: conditions, `url`, `address.url`, `observedGeneration`, `appliedConfigs`, and
    the pinned preset names in `annotations` (as KServe pins them)."""
    address = cluster_url(entry_service, plan.namespace, port=entry_port)
    # through the gateway the path names the service; without a route the Service is the URL
    url = f"{plan.url}{plan.path_prefix}" if route_expected else address
    conditions = llm_conditions(
        plan, observed, pool_expected=pool_expected, route_expected=route_expected
    )
    doc: JSON = {
        "observedGeneration": generation,
        "conditions": _with_times(conditions, previous, now),
        "url": url,
        "address": {"url": address},
        "appliedConfigs": [
            {"name": a.name, "namespace": a.namespace, "source": a.source}
            for a in plan.applied_configs
        ],
    }
    pinned = {**(previous.get("annotations") or {}), **plan.status_annotations}
    if pinned:
        doc["annotations"] = pinned
    return doc
