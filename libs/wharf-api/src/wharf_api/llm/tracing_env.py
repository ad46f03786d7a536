"""The `OTEL_*` environment an LLMInferenceService's `spec.tracing` gives its pods, pure.

KServe gives the same exporter, sampler and resource attributes (namespace, node, pod,
`llmisvc.name`) to the engines (injectServerTracing, `OTEL_SERVICE_NAME`
`inference-server-decode|-prefill`: `wharf_api.llm.engine_args.with_tracing`) and to the
scheduler (injectSchedulerTracing, `inference-scheduler`: `with_scheduler_tracing` here), so the
scheduler's spans and the engines' land in one trace: the scheduler passes its span's context on
in each call's `traceparent`.

The scheduler is Wharf's gateway (`wharf-router gateway`) or, in a template of the user's,
another scheduler such as llm-d's endpoint picker. The gateway reads only the environment
(`wharf_datapath.tracing`); llm-d's picker also needs `--tracing=true`, which KServe adds unless
a `--tracing`/`-tracing` flag is given, and so does this module for any command but the
gateway's (which has no such flag). As KServe's scheduler injection, a variable the container
already sets is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from wharf_api.llm.plan_types import JSON, MAIN_CONTAINER, LLMContainer, LLMPod
from wharf_api.llm.presets import ROUTER_COMMAND
from wharf_api.resources.llm_inference_service import TracingSpec

__all__ = [
    "NODE_NAME_ENV",
    "POD_NAME_ENV",
    "SCHEDULER_SERVICE_NAME",
    "SERVER_SERVICE_NAME",
    "TRACING_FLAG",
    "otel_env",
    "otel_env_refs",
    "with_scheduler_tracing",
]

SERVER_SERVICE_NAME = "inference-server"  # + "-decode" or "-prefill"
SCHEDULER_SERVICE_NAME = "inference-scheduler"
NODE_NAME_ENV = "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME"
POD_NAME_ENV = "OTEL_RESOURCE_ATTRIBUTES_POD_NAME"
TRACING_FLAG = "--tracing=true"


def otel_env(tracing: TracingSpec, namespace: str, name: str, service_name: str) -> dict[str, str]:
    """The literal `OTEL_*` variables; an unset field is written empty, as KServe writes it
    (Wharf's data path and the OpenTelemetry SDK read an empty value as unset)."""
    return {
        "OTEL_SERVICE_NAME": service_name,
        "OTEL_EXPORTER_OTLP_ENDPOINT": tracing.exporter_endpoint or "",
        "OTEL_TRACES_EXPORTER": tracing.exporter or "",
        "OTEL_TRACES_SAMPLER": tracing.sampler or "",
        "OTEL_TRACES_SAMPLER_ARG": tracing.sampler_arg or "",
        "OTEL_RESOURCE_ATTRIBUTES": (
            f"k8s.namespace.name={namespace},k8s.node.name=$({NODE_NAME_ENV})"
            f",k8s.pod.name=$({POD_NAME_ENV}),llmisvc.name={name}"
        ),
    }


def otel_env_refs() -> dict[str, JSON]:
    """The downward-API variables `OTEL_RESOURCE_ATTRIBUTES` refers to: the node and the pod.
    Kubernetes expands `$(VAR)` only for variables defined before, so these come first."""
    return {
        NODE_NAME_ENV: {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}},
        POD_NAME_ENV: {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
    }


def _is_gateway(command: Sequence[str]) -> bool:
    # as wharf_api.llm.plan.is_gateway_command (which imports this module's users)
    return (
        len(command) >= 2
        and command[0].rsplit("/", 1)[-1] == ROUTER_COMMAND
        and (command[1] == "gateway")
    )


def _has_tracing_flag(argv: Sequence[str]) -> bool:
    return any(
        a == flag or a.startswith(flag + "=") for a in argv for flag in ("--tracing", "-tracing")
    )


def _traced(c: LLMContainer, tracing: TracingSpec, namespace: str, name: str) -> LLMContainer:
    given = {k for k, _ in c.env} | {k for k, _ in c.env_refs}
    env = otel_env(tracing, namespace, name, SCHEDULER_SERVICE_NAME)
    refs = otel_env_refs()
    args = c.args
    if not _is_gateway(c.command) and not _has_tracing_flag((*c.command, *c.args)):
        args = (*args, TRACING_FLAG)
    return dataclasses.replace(
        c,
        args=args,
        env=(*c.env, *((k, v) for k, v in env.items() if k not in given)),
        env_refs=(*c.env_refs, *((k, v) for k, v in refs.items() if k not in given)),
    )


def with_scheduler_tracing(
    pod: LLMPod, tracing: TracingSpec | None, namespace: str, name: str
) -> LLMPod:
    """The scheduler's pod with `spec.tracing`'s environment (and flag) on its `main`
    container; unchanged without `spec.tracing` or a `main` container."""
    if tracing is None:
        return pod
    containers = tuple(
        _traced(c, tracing, namespace, name) if c.name == MAIN_CONTAINER else c
        for c in pod.containers
    )
    return dataclasses.replace(pod, containers=containers)
