"""How an InferenceGraph's `serviceName` steps become URLs, for both control planes (pure).

KServe's graph reconciler writes each such step's `serviceUrl` as the InferenceService's
address plus the predict path of its entry component's protocol, with the model named as
`GetModelName` names it. The controller passes in-cluster addresses, `wharf up` the local
ingress's; the rest of the rule is here so that the two cannot name the model differently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wharf_api.resources import InferenceService
from wharf_api.resources.inference_graph import InferenceGraphSpec

MODEL_NAME_ARG = "--model_name"
MLSERVER_MODEL_NAME_ENV = "MLSERVER_MODEL_NAME"


def arg_value(args: Sequence[str], flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in `args`, else None (last one wins)."""
    found: str | None = None
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            found = arg[len(flag) + 1 :]
        elif arg == flag and i + 1 < len(args):
            found = args[i + 1]
    return found


def model_name(isvc: InferenceService) -> str:
    """KServe's `GetModelName`: `--model_name` of the transformer's container, else
    `MLSERVER_MODEL_NAME` or `--model_name` of the predictor's model, else `--model_name` of its
    first container, else the InferenceService's name."""
    spec = isvc.spec
    found: str | None = None
    if spec.transformer is not None and spec.transformer.containers:
        found = arg_value(spec.transformer.containers[0].args or [], MODEL_NAME_ARG)
        if found:
            return found
    model = spec.predictor.model
    if model is not None:
        for env in model.env or []:
            if env.name == MLSERVER_MODEL_NAME_ENV and env.value:
                return env.value
        found = arg_value(model.args or [], MODEL_NAME_ARG)
    elif spec.predictor.containers:
        found = arg_value(spec.predictor.containers[0].args or [], MODEL_NAME_ARG)
    return found or isvc.name


def predict_path(model: str, protocol: str) -> str:
    """KServe's predict path for a protocol (`constants.PredictPath`)."""
    return f"/v2/models/{model}/infer" if protocol.endswith("v2") else f"/v1/models/{model}:predict"


@dataclass(frozen=True)
class Endpoint:
    """Where a `serviceName` step's InferenceService answers: its address (None while it has
    none: KServe's "service is not ready"), the protocol of the component that takes its
    requests (transformer, else predictor), and the model's name from `model_name`."""

    address: str | None
    protocol: str = "v1"
    model: str | None = None  # None: the InferenceService's name


@dataclass(frozen=True)
class Unresolved:
    """A `serviceName` step whose InferenceService is missing or has no address yet."""

    field: str  # spec.nodes.root.steps[0].serviceName
    service: str
    found: bool  # the InferenceService exists (but has no address yet)

    def message(self) -> str:
        if not self.found:
            return f"{self.field}: InferenceService {self.service} not found"
        return f"{self.field}: InferenceService {self.service} is not ready (no address yet)"


def step_url(name: str, endpoint: Endpoint) -> str:
    """The `serviceUrl` of a step naming InferenceService `name` that answers at `endpoint`."""
    if not endpoint.address:
        raise ValueError(f"InferenceService {name} has no address")
    return endpoint.address.rstrip("/") + predict_path(endpoint.model or name, endpoint.protocol)


def resolve_steps(
    spec: InferenceGraphSpec, endpoints: Mapping[str, Endpoint | None]
) -> tuple[InferenceGraphSpec, list[Unresolved]]:
    """The spec the router runs: as KServe's controller, a `serviceName` step without a
    `serviceUrl` gets `step_url`. `endpoints` maps the namespace's InferenceServices; a name
    not in it does not exist."""
    resolved = spec.model_copy(deep=True)
    problems: list[Unresolved] = []
    for node_name, node in resolved.nodes.items():
        for i, step in enumerate(node.steps or []):
            name = step.service_name
            if not name or step.service_url:
                continue
            field = f"spec.nodes.{node_name}.steps[{i}].serviceName"
            found = endpoints.get(name)
            if found is None or not found.address:
                problems.append(Unresolved(field, name, found is not None))
                continue
            step.service_url = step_url(name, found)
    return resolved, problems
