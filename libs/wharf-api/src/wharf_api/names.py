"""Names both control planes give a resource's parts: hosts, paths, Services, revisions, labels.

KServe derives them from the `ingress` key of `inferenceservice-config` (`domainTemplate`,
`ingressDomain`, `pathTemplate`, `urlScheme`) and from fixed suffixes (`-predictor`,
`-transformer`, `-explainer`); the controller puts them on Kubernetes objects, `wharf up` uses
them for its ingress table, and the router resolves `serviceName` with them. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ComponentName = Literal["predictor", "transformer", "explainer"]
COMPONENTS: tuple[ComponentName, ...] = ("predictor", "transformer", "explainer")

DEFAULT_DOMAIN = "example.com"
DEFAULT_NAMESPACE = "default"
# KServe's defaults in config/configmap/inferenceservice.yaml
DEFAULT_DOMAIN_TEMPLATE = "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}"
LOCAL_PATH_TEMPLATE = "/serving/{{ .Namespace }}/{{ .Name }}"
CLUSTER_DOMAIN = "cluster.local"

# Labels KServe puts on the objects of an InferenceService (constants.go)
ISVC_LABEL = "serving.kserve.io/inferenceservice"
COMPONENT_LABEL = "component"
APP_LABEL = "app"
GRAPH_LABEL = "serving.kserve.io/inferencegraph"
LLM_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "wharf"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"

_FIELD = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_DOTTED = re.compile(r"^\.(Name|Namespace|IngressDomain)$|^\.(Labels|Annotations)\.([\w./-]+)$")
_INDEX = re.compile(r'^index\s+\.(Labels|Annotations)\s+"([^"]*)"$')


class TemplateError(ValueError):
    """A domain or path template uses a field KServe does not define."""


@dataclass(frozen=True)
class TemplateValues:
    """KServe's DomainTemplateValues: what `domainTemplate` and `pathTemplate` may use."""

    name: str
    namespace: str
    ingress_domain: str = DEFAULT_DOMAIN
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def render_template(template: str, values: TemplateValues) -> str:
    """Fill `{{ .Name }}`, `{{ .Namespace }}`, `{{ .IngressDomain }}`, `{{ .Labels.k }}`,
    `{{ .Annotations.k }}` and `{{ index .Labels "k" }}`; a missing key is empty, as in Go."""

    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        dotted = _DOTTED.match(expr)
        if dotted and dotted.group(1):
            return {
                "Name": values.name,
                "Namespace": values.namespace,
                "IngressDomain": values.ingress_domain,
            }[dotted.group(1)]
        indexed = _INDEX.match(expr)
        if dotted:
            table, key = dotted.group(2), dotted.group(3)
        elif indexed:
            table, key = indexed.group(1), indexed.group(2)
        else:
            raise TemplateError(f"unsupported template field {match.group(0)!r} in {template!r}")
        mapping = values.labels if table == "Labels" else values.annotations
        return mapping.get(key, "")

    return _FIELD.sub(value, template)


def service_host(
    name: str,
    namespace: str,
    domain: str = DEFAULT_DOMAIN,
    template: str = DEFAULT_DOMAIN_TEMPLATE,
) -> str:
    """The external host of a service: `{name}-{namespace}.{domain}` with KServe's template."""
    return render_template(template, TemplateValues(name, namespace, domain)).lower()


def component_service_name(name: str, component: ComponentName) -> str:
    """`{isvc}-predictor`, `{isvc}-transformer`, `{isvc}-explainer` (KServe's names)."""
    return f"{name}-{component}"


def component_host(
    name: str,
    component: str,
    namespace: str,
    domain: str = DEFAULT_DOMAIN,
    template: str = DEFAULT_DOMAIN_TEMPLATE,
) -> str:
    """One component's host: the domain template applied to `{isvc}-{component}`."""
    return service_host(f"{name}-{component}", namespace, domain, template)


def service_path(
    name: str, namespace: str, template: str = LOCAL_PATH_TEMPLATE, domain: str = DEFAULT_DOMAIN
) -> str:
    """The path prefix of a service under the shared ingress (KServe's `pathTemplate`)."""
    return render_template(template, TemplateValues(name, namespace, domain)).rstrip("/")


def revision_name(service_name: str, number: int) -> str:
    """Knative's revision names: `{isvc}-predictor-00001`."""
    return f"{service_name}-{number:05d}"


def cluster_local_host(service: str, namespace: str, cluster_domain: str = CLUSTER_DOMAIN) -> str:
    """The in-cluster DNS name of a Service: `{service}.{namespace}.svc.cluster.local`."""
    return f"{service}.{namespace}.svc.{cluster_domain}"


def cluster_url(service: str, namespace: str, *, scheme: str = "http", port: int = 80) -> str:
    """How a pod reaches a Service in the cluster (the router's `serviceName` steps)."""
    suffix = "" if port == 80 and scheme == "http" else f":{port}"
    return f"{scheme}://{cluster_local_host(service, namespace)}{suffix}"


def local_url(ingress: str, namespace: str, service: str) -> str:
    """How a local process reaches a service through `wharf up`'s ingress: by path, so the
    service keeps its traffic split, autoscaling and activator."""
    return f"{ingress.rstrip('/')}{service_path(service, namespace)}"


def isvc_labels(name: str, component: ComponentName) -> dict[str, str]:
    """Labels of a component's objects, as KServe sets them (selectors use the first two)."""
    return {
        ISVC_LABEL: name,
        COMPONENT_LABEL: component,
        APP_LABEL: f"isvc.{component_service_name(name, component)}",
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def selector_labels(name: str, component: ComponentName) -> dict[str, str]:
    """The subset of `isvc_labels` that selects a component's pods (immutable on Deployments)."""
    return {ISVC_LABEL: name, COMPONENT_LABEL: component}


def graph_labels(name: str) -> dict[str, str]:
    return {GRAPH_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}


# ---- Kubernetes name rules (apimachinery's validation) ---------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253


def dns1123_label_error(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label (namespaces), or None."""
    if len(value) > LABEL_MAX:
        return f"{value[:20]!r}... must be no more than {LABEL_MAX} characters"
    if not _DNS1123_LABEL.match(value):
        return (
            f"{value!r} must be a DNS-1123 label: lower case alphanumeric characters or '-', "
            "starting and ending with an alphanumeric character"
        )
    return None


def dns1123_subdomain_error(value: str) -> str | None:
    """Why `value` is not a DNS-1123 subdomain (most object names), or None."""
    if len(value) > SUBDOMAIN_MAX:
        return f"{value[:20]!r}... must be no more than {SUBDOMAIN_MAX} characters"
    if not _DNS1123_SUBDOMAIN.match(value):
        return (
            f"{value!r} must be a DNS-1123 subdomain: lower case alphanumeric characters, "
            "'-' or '.', starting and ending with an alphanumeric character"
        )
    return None


def dns1035_label_error(value: str) -> str | None:
    """Why `value` is not a DNS-1035 label (names that become Service names), or None."""
    if len(value) > LABEL_MAX:
        return f"{value[:20]!r}... must be no more than {LABEL_MAX} characters"
    if not _DNS1035_LABEL.match(value):
        return (
            f"{value!r} must be a DNS-1035 label: lower case alphanumeric characters or '-', "
            "starting with a letter and ending with an alphanumeric character"
        )
    return None
