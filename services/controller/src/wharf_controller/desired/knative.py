"""A component's Knative Service in Knative mode (KServe's `Serverless`), pure.

The revision template is the pod the Standard mode's Deployment would run (same containers,
storage initializer and volumes); Knative makes a revision of each template change. The rules
are wharf_api's: the traffic split and its tags (`wharf_api.traffic.knative_traffic`) and the
autoscaling annotations (`wharf_api.autoscaling.knative_autoscaling_annotations`); this module
writes them into the Knative Service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wharf_api.autoscaling import knative_autoscaling_annotations
from wharf_api.plan import ComponentPlan
from wharf_api.traffic import KnativeTrafficTarget, knative_traffic, tag_routing
from wharf_controller.desired.meta import child

JSON = dict[str, Any]

KNATIVE_API_VERSION = "serving.knative.dev/v1"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
# Knative runs one serving port per revision; its name picks HTTP/1 or h2c
_ALLOWED_PORT_FIELDS = ("name", "containerPort", "protocol")


def traffic_json(targets: Sequence[KnativeTrafficTarget]) -> list[JSON]:
    """`spec.traffic` as Knative writes it, from wharf_api's targets."""
    out: list[JSON] = []
    for target in targets:
        entry: JSON = {"latestRevision": target.latest_revision}
        if target.revision_name is not None:
            entry["revisionName"] = target.revision_name
        entry["percent"] = target.percent
        if target.tag is not None:
            entry["tag"] = target.tag
        out.append(entry)
    return out


def _knative_container(container: JSON) -> JSON:
    out = dict(container)
    ports = [
        {k: v for k, v in p.items() if k in _ALLOWED_PORT_FIELDS} for p in out.get("ports", [])
    ]
    if ports:
        # Knative accepts one port; the gRPC one is served only where it is the first
        out["ports"] = ports[:1]
    return out


def expected_knative_service(
    plan: ComponentPlan,
    deployment: JSON,
    annotations: Mapping[str, str],
    *,
    latest_rolledout: str | None,
) -> JSON:
    """The Knative Service of a component, from the Deployment Standard mode would render
    (`deployment`: its metadata and pod template are reused) and the component's last
    rolled-out revision (from the InferenceService's status; None before the first)."""
    meta = deployment["metadata"]
    labels = {**meta["labels"], VISIBILITY_LABEL: "cluster-local"}
    obj = child(
        KNATIVE_API_VERSION,
        "Service",
        meta["name"],
        meta["namespace"],
        labels,
        (meta.get("ownerReferences") or [None])[0],
    )
    template = deployment["spec"]["template"]
    pod = dict(template["spec"])
    pod["containers"] = [_knative_container(c) for c in pod["containers"]]
    if plan.scaling.container_concurrency is not None:
        pod["containerConcurrency"] = plan.scaling.container_concurrency
    if plan.timeout_seconds is not None:
        pod["timeoutSeconds"] = plan.timeout_seconds
    template_meta: JSON = {
        "labels": dict(template["metadata"]["labels"]),
        "annotations": {
            **(template["metadata"].get("annotations") or {}),
            **knative_autoscaling_annotations(plan.scaling, annotations),
        },
    }
    targets = knative_traffic(
        plan.canary_traffic_percent, latest_rolledout, tags=tag_routing(annotations)
    )
    obj["spec"] = {
        "template": {"metadata": template_meta, "spec": pod},
        "traffic": traffic_json(targets),
    }
    return obj
