"""An InferenceGraph's status from its router Deployment (pure).

As KServe's raw graph reconciler: Ready when the router Deployment is available, and the URL
set then. Where KServe only logs and requeues (a step's InferenceService missing or without an
address), the Ready condition says so here, naming the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wharf_api.graph import Unresolved
from wharf_controller.status import deployment_ready

JSON = dict[str, Any]
STANDARD = "Standard"

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
) -> JSON:
    """`.status` of a graph: `deployment` is the observed router Deployment (None before it
    exists); `unresolved` the steps whose InferenceService cannot be reached yet."""
    doc: JSON = {"observedGeneration": generation, "deploymentMode": STANDARD}
    if unresolved:
        reason = SERVICE_NOT_READY if all(u.found for u in unresolved) else SERVICE_NOT_FOUND
        message = "; ".join(u.message() for u in unresolved)
        doc["conditions"] = [_ready_condition("False", reason, message, now, previous)]
        return doc
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
