"""Where a `serviceName` step goes, pure: KServe's controller writes the InferenceService's
predict URL into `serviceUrl`; the router does the same for a step still named by service.

- `cluster` (the default): `http://{name}.{namespace}.svc.cluster.local` + predict path;
- `local` (`wharf up`): the local ingress, by path: `{ingress}/serving/{namespace}/{name}` +
  predict path, so the service keeps its traffic split, autoscaling and cold start.

The predict path is KServe's for the protocol: V1 `/v1/models/{name}:predict`, V2
`/v2/models/{name}/infer`; the model is named after the InferenceService, as KServe does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wharf_api.names import cluster_url, local_url
from wharf_api.resources.inference_graph import InferenceGraphSpec

Mode = Literal["cluster", "local"]
Protocol = Literal["v1", "v2"]


@dataclass(frozen=True)
class Resolution:
    mode: Mode = "cluster"
    namespace: str = "default"
    ingress: str = "http://127.0.0.1:8080"
    protocol: Protocol = "v1"


def predict_path(model: str, protocol: Protocol) -> str:
    return f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"


def service_url(name: str, how: Resolution) -> str:
    base = (
        cluster_url(name, how.namespace)
        if how.mode == "cluster"
        else local_url(how.ingress, how.namespace, name)
    )
    return base + predict_path(name, how.protocol)


def resolve_services(spec: InferenceGraphSpec, how: Resolution) -> InferenceGraphSpec:
    """A copy of the spec whose `serviceName` steps without a `serviceUrl` have one."""
    resolved = spec.model_copy(deep=True)
    for node in resolved.nodes.values():
        for step in node.steps or []:
            if step.service_name and not step.service_url:
                step.service_url = service_url(step.service_name, how)
    return resolved
