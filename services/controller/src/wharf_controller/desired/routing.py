"""How requests reach a service from outside: a Gateway API HTTPRoute (`ingress.enableGatewayApi`)
or an Ingress, with KServe's host `{name}-{namespace}.{domain}` (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.plan import ServicePlan
from wharf_controller.desired.meta import child

JSON = dict[str, Any]
SERVICE_PORT = 80


def _gateway(config: InferenceServiceConfig, default_namespace: str) -> JSON:
    namespace, _, name = config.ingress.kserve_ingress_gateway.rpartition("/")
    return {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": name,
        "namespace": namespace or default_namespace,
    }


def expected_http_route(
    plan: ServicePlan, labels: Mapping[str, str], owner: JSON | None, config: InferenceServiceConfig
) -> JSON:
    obj = child(
        "gateway.networking.k8s.io/v1", "HTTPRoute", plan.name, plan.namespace, labels, owner
    )
    rule: JSON = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [
            {
                "group": "",
                "kind": "Service",
                "name": plan.entry.service_name,
                "port": SERVICE_PORT,
                "weight": 1,
            }
        ],
    }
    timeout = plan.entry.timeout_seconds
    if timeout and not config.ingress.disable_http_route_timeout:
        rule["timeouts"] = {"request": f"{timeout}s"}
    obj["spec"] = {
        "parentRefs": [_gateway(config, plan.namespace)],
        "hostnames": [plan.host],
        "rules": [rule],
    }
    return obj


def expected_ingress(
    plan: ServicePlan, labels: Mapping[str, str], owner: JSON | None, config: InferenceServiceConfig
) -> JSON:
    obj = child("networking.k8s.io/v1", "Ingress", plan.name, plan.namespace, labels, owner)
    spec: JSON = {
        "rules": [
            {
                "host": plan.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {
                                    "name": plan.entry.service_name,
                                    "port": {"number": SERVICE_PORT},
                                }
                            },
                        }
                    ]
                },
            }
        ]
    }
    if config.ingress.ingress_class_name:
        spec["ingressClassName"] = config.ingress.ingress_class_name
    obj["spec"] = spec
    return obj
