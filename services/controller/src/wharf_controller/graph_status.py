"""An InferenceGraph's status from its router Deployment, or in Knative mode from its Knative
Service (pure).

As KServe's raw graph reconciler: Ready when the router Deployment is available, and the URL
set then. As its Knative one: Ready and the URL are the Knative Service's. Where KServe only logs and requeues (a step's InferenceService missing or without an
address), the Ready condition says so here, naming the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wharf_api.graph import Unresolved
from wharf_controller.status import deployment_ready

JSON = dict[str, Any]
STANDARD = "Standard"
KNATIVE = "Knative"
# the Knative Service's own conditions a graph shows beside Ready, as KServe copies them
KNATIVE_CONDITIONS = ("ConfigurationsReady", "RoutesReady")

SERVICE_NOT_FOUND = "ServiceNotFound"
SERVICE_NOT_READY = "ServiceNotReady"
ROUTER_NOT_READY = "RouterNotReady"


def _ready_condition(
    status: str, reason: str | None, message: str | None, now: str, previous: Mapping[str, Any]
) -> JSON:
    old = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond: JSON = {"type": "Ready", "status": status, "lastTransitionTime": since or now}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message[:1024]
    return cond


def graph_status(
    *,
    generation: int,
    now: str,
    previous: Mapping[str, Any],
    url: str,
    deployment: Mapping[str, Any] | None,
    unresolved: Sequence[Unresolved] = (),
    mode: str = STANDARD,
) -> JSON:
    """`.status` of a graph: `deployment` is the observed router Deployment (None before it
    exists); `unresolved` the steps whose InferenceService cannot be reached yet."""
    doc: JSON = {"observedGeneration": generation, "deploymentMode": mode}
    if unresolved:
        return _unresolved(doc, unresolved, now, previous)
    if deployment_ready(deployment):
        doc["conditions"] = [_ready_condition("True", None, None, now, previous)]
        doc["url"] = url
        return doc
    name = deployment["metadata"]["name"] if deployment else "the router Deployment"
    doc["conditions"] = [
        _ready_condition(
            "False", ROUTER_NOT_READY, f"Deployment {name} is not available yet", now, previous
        )
    ]
    return doc


def _unresolved(
    doc: JSON, unresolved: Sequence[Unresolved], now: str, previous: Mapping[str, Any]
) -> JSON:
    reason = SERVICE_NOT_READY if all(u.found for u in unresolved) else SERVICE_NOT_FOUND
    message = "; ".join(u.message() for u in unresolved)
    doc["conditions"] = [_ready_condition("False", reason, message, now, previous)]
    return doc


def _knative_conditions(ksvc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = (ksvc.get("status") or {}).get("conditions") or []
    return {str(c.get("type")): c for c in conditions if isinstance(c, Mapping)}


def _copied(cond: Mapping[str, Any]) -> JSON:
    out: JSON = {"type": cond["type"], "status": str(cond.get("status") or "Unknown")}
    for key in ("lastTransitionTime", "reason", "message", "severity"):
        if cond.get(key):
            out[key] = str(cond[key])[:1024]
    return out


def graph_knative_status(
    *,
    generation: int,
    now: str,
    previous: Mapping[str, Any],
    ksvc: Mapping[str, Any] | None,
    unresolved: Sequence[Unresolved] = (),
) -> JSON:
    """`.status` of a graph in Knative mode from its observed Knative Service (None before it
    exists). Ready, with Knative's reason and message when False, and the URL only once Knative
    has observed the current template and calls it Ready; Knative's `ConfigurationsReady` and
    `RoutesReady` are shown beside it."""
    doc: JSON = {"observedGeneration": generation, "deploymentMode": KNATIVE}
    if unresolved:
        return _unresolved(doc, unresolved, now, previous)
    if ksvc is None:
        message = "the Knative Service is not created yet"
        doc["conditions"] = [_ready_condition("False", ROUTER_NOT_READY, message, now, previous)]
        return doc
    name = ksvc["metadata"]["name"]
    kstatus = ksvc.get("status") or {}
    if int(kstatus.get("observedGeneration") or 0) < int(ksvc["metadata"].get("generation") or 0):
        # what Knative says is about an older template
        message = f"Knative Service {name} has not observed its latest template yet"
        doc["conditions"] = [_ready_condition("False", ROUTER_NOT_READY, message, now, previous)]
        return doc
    found = _knative_conditions(ksvc)
    ready = found.get("Ready")
    copied = [_copied(found[t]) for t in KNATIVE_CONDITIONS if t in found]
    if ready is not None and ready.get("status") == "True" and kstatus.get("url"):
        doc["conditions"] = [_ready_condition("True", None, None, now, previous), *copied]
        doc["url"] = str(kstatus["url"])
        return doc
    reason = str((ready or {}).get("reason") or ROUTER_NOT_READY)
    message = str((ready or {}).get("message") or f"Knative Service {name} is not ready yet")
    doc["conditions"] = [_ready_condition("False", reason, message, now, previous), *copied]
    return doc
