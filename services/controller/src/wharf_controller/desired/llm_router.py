"""The router of an LLMInferenceService (pure): `wharf-router gateway` as the scheduler, finding
the workload pods through the Kubernetes API (a ServiceAccount with a Role that may only get,
list and watch pods in the namespace), its Service, and the way in: an InferencePool and an
HTTPRoute where the Gateway API (Inference Extension) is installed, the Service otherwise.

Names and labels are KServe's (`{name}-kserve-router-scheduler`, `{name}-epp-service`,
`{name}-epp-sa`, `{name}-epp-role`, `{name}-epp-rb`, `{name}-inference-pool`,
`{name}-kserve-route`). Wharf's router is an HTTP gateway, not an Envoy ext-proc endpoint
picker, so the HTTPRoute sends requests to the router's Service (which does the scheduling and
the prefill/decode hand-off) where KServe's sends them to the InferencePool; the InferencePool
is still created, for the tools that read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.llm import LLMContainer, LLMPlan, LLMPod, SchedulerPlan
from wharf_api.llm.plan_types import MAIN_CONTAINER
from wharf_api.llm.presets import ROLE_LABEL, ROUTER_IMAGE, ROUTER_PORT
from wharf_api.llm.template_context import child_name
from wharf_api.llm.tracing_env import with_scheduler_tracing
from wharf_api.resources.llm_inference_service import TracingSpec
from wharf_controller.desired.llm_router_peers import (
    peer_exchange,
    with_peer_exchange,
)
from wharf_controller.desired.llm_workload import (
    COMPONENT_LABEL,
    NAME_LABEL,
    PART_OF,
    PART_OF_LABEL,
    owned_labels,
    pod_spec,
)
from wharf_controller.desired.meta import child
from wharf_controller.desired.storage import PodStorage

JSON = dict[str, Any]
SCHEDULER_COMPONENT = "llminferenceservice-router-scheduler"
ROUTE_COMPONENT = "llminferenceservice-router"
WORKLOAD_LABEL = "kserve.io/component"
GIE_GROUP = "inference.networking.k8s.io"
GIE_API_VERSION = f"{GIE_GROUP}/v1"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
ROUTER_COMMAND = "wharf-router"


def scheduler_labels(name: str) -> dict[str, str]:
    return {COMPONENT_LABEL: SCHEDULER_COMPONENT, NAME_LABEL: name, PART_OF_LABEL: PART_OF}


def names(name: str) -> dict[str, str]:
    return {
        "deployment": child_name(name, "-kserve-router-scheduler"),
        "service": child_name(name, "-epp-service"),
        "service_account": child_name(name, "-epp-sa"),
        "role": child_name(name, "-epp-role"),
        "role_binding": child_name(name, "-epp-rb"),
        "route": child_name(name, "-kserve-route"),
    }


def pool_selector(plan: LLMPlan, scheduler: SchedulerPlan) -> dict[str, str]:
    """The labels of the pods the router picks from: the pool's selector, else the workloads'."""
    selector = ((scheduler.pool or {}).get("selector") or {}).get("matchLabels")
    if isinstance(selector, Mapping) and selector:
        return {str(k): str(v) for k, v in selector.items()}
    return {NAME_LABEL: plan.name, PART_OF_LABEL: PART_OF, WORKLOAD_LABEL: "workload"}


def pool_port(plan: LLMPlan, scheduler: SchedulerPlan) -> int:
    ports = (scheduler.pool or {}).get("targetPorts") or []
    first = ports[0].get("number") if ports and isinstance(ports[0], Mapping) else None
    return int(first) if isinstance(first, int) else plan.main.serving_port


def default_router_command(plan: LLMPlan, scheduler: SchedulerPlan) -> list[str]:
    """`wharf-router gateway` watching the pool's pods, for a scheduler without a template
    (the scheduler preset's template gives the same flags as Go templates)."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(pool_selector(plan, scheduler).items()))
    return [
        ROUTER_COMMAND,
        "gateway",
        "--port",
        str(ROUTER_PORT),
        "--kube-selector",
        selector,
        "--kube-namespace",
        plan.namespace,
        "--role-label",
        ROLE_LABEL,
        "--kube-port",
        str(pool_port(plan, scheduler)),
    ]


def _default_pod(plan: LLMPlan, scheduler: SchedulerPlan) -> LLMPod:
    return LLMPod(
        containers=(
            LLMContainer(
                name=MAIN_CONTAINER,
                image=ROUTER_IMAGE,
                command=tuple(default_router_command(plan, scheduler)),
                args=(),
                ports=({"containerPort": ROUTER_PORT, "name": "http", "protocol": "TCP"},),
                extra={"readinessProbe": {"httpGet": {"path": "/health", "port": ROUTER_PORT}}},
            ),
        ),
        service_account_name=names(plan.name)["service_account"],
    )


def _router_pod(plan: LLMPlan, scheduler: SchedulerPlan) -> tuple[LLMPod, int]:
    pod = scheduler.pod or _default_pod(plan, scheduler)
    # spec.tracing: the engines' exporter and sampler, so a request is one trace through both
    tracing = TracingSpec.model_validate(plan.tracing) if plan.tracing is not None else None
    pod = with_scheduler_tracing(pod, tracing, plan.namespace, plan.name)
    main = pod.main
    ports = [p["containerPort"] for p in main.ports if isinstance(p.get("containerPort"), int)]
    port = int(ports[0]) if ports else ROUTER_PORT
    account = pod.service_account_name or names(plan.name)["service_account"]
    return dataclasses.replace(pod, service_account_name=account), port


def expected_scheduler(
    plan: LLMPlan, scheduler: SchedulerPlan, owner: JSON | None, config: InferenceServiceConfig
) -> list[JSON]:
    """The router's ServiceAccount, Role, RoleBinding, Deployment and Service; with the peer
    exchange (`llm_router_peers`), its token Secret (without the token: the adapter draws it
    when it creates the Secret)."""
    n, ns = names(plan.name), plan.namespace
    labels = owned_labels(scheduler_labels(plan.name))
    pod, port = _router_pod(plan, scheduler)
    exchange = peer_exchange(pod, plan.name, port)
    if exchange is not None:
        pod = with_peer_exchange(pod, exchange, ns, scheduler_labels(plan.name))
    account = pod.service_account_name or n["service_account"]
    spec = pod_spec(pod, "spec.router.scheduler.template", PodStorage(), config)
    # the router reads pods with its token, whatever the cluster's default for model pods
    spec["automountServiceAccountToken"] = True
    template_labels = {**(scheduler.labels or {}), **labels}
    template: JSON = {"metadata": {"labels": template_labels}, "spec": spec}
    if scheduler.annotations:
        template["metadata"]["annotations"] = dict(scheduler.annotations)
    deployment = child("apps/v1", "Deployment", n["deployment"], ns, labels, owner)
    deployment["spec"] = {
        "replicas": scheduler.replicas,
        "selector": {"matchLabels": scheduler_labels(plan.name)},
        "template": template,
    }
    service = child("v1", "Service", n["service"], ns, labels, owner)
    service["spec"] = {
        "type": "ClusterIP",
        "selector": scheduler_labels(plan.name),
        "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
    }
    out: list[JSON] = []
    if account == n["service_account"]:
        # only the account the controller names is its own; a user's is left alone
        out.append(child("v1", "ServiceAccount", account, ns, labels, owner))
    role = child("rbac.authorization.k8s.io/v1", "Role", n["role"], ns, labels, owner)
    role["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = child(
        "rbac.authorization.k8s.io/v1", "RoleBinding", n["role_binding"], ns, labels, owner
    )
    binding["roleRef"] = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": n["role"],
    }
    binding["subjects"] = [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
    peers: list[JSON] = []
    if exchange is not None:
        secret = child("v1", "Secret", exchange.secret, ns, labels, owner)
        secret["type"] = "Opaque"
        # the token never changes once drawn: the controller creates the Secret only when it
        # is absent and never writes it again
        secret["immutable"] = True
        peers = [secret]
    return [*out, role, binding, *peers, deployment, service]


def router_port(plan: LLMPlan, scheduler: SchedulerPlan) -> int:
    return _router_pod(plan, scheduler)[1]


def expected_inference_pool(
    plan: LLMPlan, scheduler: SchedulerPlan, owner: JSON | None
) -> JSON | None:
    """KServe's InferencePool `{name}-inference-pool` (none when the service names its own)."""
    if scheduler.pool_ref is not None:
        return None
    labels = owned_labels(
        {COMPONENT_LABEL: ROUTE_COMPONENT, NAME_LABEL: plan.name, PART_OF_LABEL: PART_OF}
    )
    obj = child(
        GIE_API_VERSION, "InferencePool", scheduler.pool_name, plan.namespace, labels, owner
    )
    pool = dict(scheduler.pool or {})
    pool.setdefault("selector", {"matchLabels": pool_selector(plan, scheduler)})
    pool.setdefault("targetPorts", [{"number": pool_port(plan, scheduler)}])
    pool.setdefault(
        "endpointPickerRef",
        {
            "kind": "Service",
            "name": names(plan.name)["service"],
            "port": {"number": router_port(plan, scheduler)},
            "failureMode": "FailOpen",
        },
    )
    obj["spec"] = pool
    return obj


def _backend(ref: Mapping[str, Any], pool: str, service: str, port: int) -> JSON:
    if ref.get("kind") == "InferencePool" and ref.get("name") == pool:
        # Wharf's router schedules itself: the route goes to it, not to an ext-proc pool
        out = {"group": "", "kind": "Service", "name": service, "port": port}
        if "weight" in ref:
            out["weight"] = ref["weight"]
        return out
    return dict(ref)


def expected_http_route(
    plan: LLMPlan, owner: JSON | None, entry_service: str, entry_port: int
) -> JSON | None:
    """The managed HTTPRoute `{name}-kserve-route` from the plan's route spec."""
    router = plan.router
    if router is None or router.route is None or not router.route.managed:
        return None
    spec = dict(router.route.http_spec or {})
    pool = router.scheduler.pool_name if router.scheduler is not None else ""
    rules = []
    for rule in spec.get("rules") or []:
        rule = dict(rule)
        refs = rule.get("backendRefs") or []
        rule["backendRefs"] = [_backend(r, pool, entry_service, entry_port) for r in refs] or [
            {"group": "", "kind": "Service", "name": entry_service, "port": entry_port}
        ]
        rules.append(rule)
    if not rules:
        rules = [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": plan.path_prefix + "/"}}],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {
                            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                        },
                    }
                ],
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": entry_service, "port": entry_port}
                ],
            }
        ]
    spec["rules"] = rules
    labels = owned_labels(
        {COMPONENT_LABEL: ROUTE_COMPONENT, NAME_LABEL: plan.name, PART_OF_LABEL: PART_OF}
    )
    obj = child(
        GATEWAY_API_VERSION, "HTTPRoute", names(plan.name)["route"], plan.namespace, labels, owner
    )
    obj["spec"] = spec
    return obj
