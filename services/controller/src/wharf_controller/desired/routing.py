"""How requests reach a service from outside: a Gateway API HTTPRoute (`ingress.enableGatewayApi`)
or an Ingress, with KServe's host `{name}-{namespace}.{domain}` (pure).

With `ingress.pathTemplate` set, an InferenceService's HTTPRoute also serves the rendered path
(`/serving/{namespace}/{name}` say) on the shared `ingressDomain` host, the prefix stripped before
the request reaches the service: what KServe's path-based rule does. An Ingress has no portable
way to strip a prefix (and KServe's raw Ingress ignores `pathTemplate`), so it keeps its host
rule only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.names import TemplateError, service_path
from wharf_api.plan import ServicePlan
from wharf_controller.desired.meta import child

JSON = dict[str, Any]
SERVICE_PORT = 80
# what KServe's url.ParseRequestURI check and Gateway API's path validation refuse in a path
_BAD_PATH = re.compile(r"[\s?#]|//|/\./|/\.\./|%2f|/\.{1,2}$", re.IGNORECASE)


class RouteError(ValueError):
    """`ingress.pathTemplate` renders no usable path; the message names the service and key."""


def url_path(plan: ServicePlan, config: InferenceServiceConfig) -> str | None:
    """The path prefix `ingress.pathTemplate` gives the service, without a trailing `/`; None
    when the template is empty. Like KServe's GenerateUrlPath: `{{ .Name }}` and
    `{{ .Namespace }}`, the result a plain absolute path (no scheme, host, query or fragment)."""
    template = config.ingress.path_template
    if not template:
        return None
    where = f"InferenceService {plan.name}: ingress.pathTemplate {template!r}"
    try:
        path = service_path(plan.name, plan.namespace, template, config.ingress.ingress_domain)
    except TemplateError as exc:
        raise RouteError(f"{where}: {exc}") from None
    if not path.startswith("/") or _BAD_PATH.search(path):
        raise RouteError(f"{where} renders {path!r}: not a plain absolute path")
    return path


def _gateway(config: InferenceServiceConfig, default_namespace: str) -> JSON:
    namespace, _, name = config.ingress.kserve_ingress_gateway.rpartition("/")
    return {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": name,
        "namespace": namespace or default_namespace,
    }


def _rule(plan: ServicePlan, config: InferenceServiceConfig, prefix: str) -> JSON:
    rule: JSON = {
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
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
    if prefix != "/":
        # the service serves /v1/models/...: the path prefix goes before it gets the request
        rule["filters"] = [
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            }
        ]
    timeout = plan.entry.timeout_seconds
    if timeout and not config.ingress.disable_http_route_timeout:
        rule["timeouts"] = {"request": f"{timeout}s"}
    return rule


def expected_http_route(
    plan: ServicePlan,
    labels: Mapping[str, str],
    owner: JSON | None,
    config: InferenceServiceConfig,
    *,
    path: str | None = None,
) -> JSON:
    """The route of the service's host; with `path` (see `url_path`), also that path on the
    shared `ingressDomain` host, as KServe adds it."""
    obj = child(
        "gateway.networking.k8s.io/v1", "HTTPRoute", plan.name, plan.namespace, labels, owner
    )
    hostnames = [plan.host]
    rules = [_rule(plan, config, "/")]
    if path is not None:
        if config.ingress.ingress_domain not in hostnames:
            hostnames.append(config.ingress.ingress_domain)
        rules.append(_rule(plan, config, path))
    obj["spec"] = {
        "parentRefs": [_gateway(config, plan.namespace)],
        "hostnames": hostnames,
        "rules": rules,
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
