"""The well-known LLMInferenceServiceConfigs Wharf ships, under KServe's names.

KServe picks these configs from the shape of a service (see `selection.py`) and merges them
under the user's `baseRefs` and the service's own spec. Wharf ships configs with the same names
and the same roles, written for Wharf's parts: the main container runs `wharf-llm-worker` (see
`worker_cli.py`) on port 8000 and the model at `/mnt/models`, the decode pod has no llm-d
routing sidecar (Wharf's router does the prefill/decode hand-off itself, see
docs/adr/0007-llm-presets-run-wharf-workers.md) and the scheduler is Wharf's router. Values may
use KServe's Go templates (`{{ .Spec.Model.Name }}`, `{{ .ObjectMeta.Name }}`, ...), rendered as
KServe renders them. A config of the same name that the caller passes replaces a built-in one,
as a config in the service's namespace replaces KServe's in the `kserve` namespace.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from wharf_api.llm.worker_cli import (
    WORKER_IMAGE,
    WORKER_PORT,
    KVTransfer,
    Role,
    worker_command,
)
from wharf_api.resources import LLMInferenceServiceConfig

__all__ = [
    "CONFIG_PREFIX",
    "DECODE_TEMPLATE",
    "DECODE_WORKER_DATA_PARALLEL",
    "DECODE_WORKER_PIPELINE_PARALLEL",
    "PREFILL_TEMPLATE",
    "PREFILL_WORKER_DATA_PARALLEL",
    "PREFILL_WORKER_PIPELINE_PARALLEL",
    "ROUTER_ROUTE",
    "SCHEDULER",
    "SCHEDULER_LATENCY_PREDICTOR",
    "SYSTEM_NAMESPACE",
    "TEMPLATE",
    "TOKENIZER",
    "TRACING",
    "WELL_KNOWN",
    "WORKER_DATA_PARALLEL",
    "WORKER_PIPELINE_PARALLEL",
    "builtin_config",
    "builtin_configs",
]

JSON = dict[str, Any]

# KServe's LLM_INFERENCE_SERVICE_CONFIG_PREFIX default, and where its presets live
CONFIG_PREFIX = "kserve-"
SYSTEM_NAMESPACE = "kserve"

# Name suffixes, as KServe's config_merge.go spells them
TEMPLATE = "config-llm-template"
DECODE_TEMPLATE = "config-llm-decode-template"
PREFILL_TEMPLATE = "config-llm-prefill-template"
WORKER_DATA_PARALLEL = "config-llm-worker-data-parallel"
DECODE_WORKER_DATA_PARALLEL = "config-llm-decode-worker-data-parallel"
PREFILL_WORKER_DATA_PARALLEL = "config-llm-prefill-worker-data-parallel"
WORKER_PIPELINE_PARALLEL = "config-llm-worker-pipeline-parallel"
DECODE_WORKER_PIPELINE_PARALLEL = "config-llm-decode-worker-pipeline-parallel"
PREFILL_WORKER_PIPELINE_PARALLEL = "config-llm-prefill-worker-pipeline-parallel"
SCHEDULER = "config-llm-scheduler"
TOKENIZER = "config-llm-tokenizer"
SCHEDULER_LATENCY_PREDICTOR = "config-llm-scheduler-latency-predictor"
ROUTER_ROUTE = "config-llm-router-route"
TRACING = "config-llm-tracing"

# KServe's WellKnownDefaultConfigs (the pipeline-parallel names are chosen but not shipped by
# KServe; Wharf ships them, since its worker runs pipeline parallel across nodes)
WELL_KNOWN: tuple[str, ...] = (
    TEMPLATE,
    DECODE_TEMPLATE,
    PREFILL_TEMPLATE,
    WORKER_DATA_PARALLEL,
    DECODE_WORKER_DATA_PARALLEL,
    PREFILL_WORKER_DATA_PARALLEL,
    WORKER_PIPELINE_PARALLEL,
    DECODE_WORKER_PIPELINE_PARALLEL,
    PREFILL_WORKER_PIPELINE_PARALLEL,
    SCHEDULER,
    TOKENIZER,
    SCHEDULER_LATENCY_PREDICTOR,
    ROUTER_ROUTE,
    TRACING,
)

MODEL_NAME = "{{ .Spec.Model.Name }}"
ROUTER_IMAGE = "ghcr.io/wharf-serving/router:0.1.0"
# Wharf's router as the scheduler of a pool (`wharf-router gateway`, docs/router.md)
ROUTER_COMMAND = "wharf-router"
ROUTER_PORT = 8080
POOL_NAME = "{{ ChildName .ObjectMeta.Name `-inference-pool` }}"
# the workload pods of a service: the scheduler preset's pool selects them, and its router
# watches them (`--kube-selector`), reading each pod's role from `ROLE_LABEL`
POOL_SELECTOR = {
    "app.kubernetes.io/name": "{{ .ObjectMeta.Name }}",
    "app.kubernetes.io/part-of": "llminferenceservice",
    "kserve.io/component": "workload",
}
ROLE_LABEL = "llm-d.ai/role"
NIXL_SIDE_CHANNEL_HOST_ENV = "VLLM_NIXL_SIDE_CHANNEL_HOST"
GRACE_SECONDS = 60


def _probe(path: str, **timing: int) -> JSON:
    return {"httpGet": {"path": path, "port": WORKER_PORT, "scheme": "HTTP"}, **timing}


def _drain_timeout(role: Role, pod: str) -> str:
    # KServe's shutdownTimeout: the pod's terminationGracePeriodSeconds (60 when unset) less a
    # few seconds for the signal and exit, read from the service's own pod template
    if role == "prefill":
        return (
            f"{{{{ if .Spec.Prefill }}}}{{{{ shutdownTimeout .Spec.Prefill.{pod} 0 }}}}"
            "{{ else }}{{ shutdownTimeout nil 0 }}{{ end }}"
        )
    return f"{{{{ shutdownTimeout .Spec.{pod} 0 }}}}"


def _main(
    role: Role, kv_transfer: KVTransfer | None, multi_node: bool, pod: str = "Template"
) -> JSON:
    container: JSON = {
        "name": "main",
        "image": WORKER_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": worker_command(
            role,
            served_model_name=MODEL_NAME,
            kv_transfer=kv_transfer,
            multi_node=multi_node,
            drain_timeout=_drain_timeout(role, pod),
        ),
        "ports": [{"containerPort": WORKER_PORT, "name": "http", "protocol": "TCP"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"mountPath": "/dev/shm", "name": "dshm"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if kv_transfer == "nixl":
        # vLLM puts this host in the transfer parameters that the other side of the hand-off
        # connects to; its default, localhost, only works when both roles share a machine
        # (`wharf up` sets no pod IP, so there the default stays)
        container["env"] = [
            {
                "name": NIXL_SIDE_CHANNEL_HOST_ENV,
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
            }
        ]
    # only the pod that serves HTTP is probed: a multi-node worker rank has no server
    container["startupProbe"] = _probe("/health", failureThreshold=60, periodSeconds=10)
    container["livenessProbe"] = _probe("/health", periodSeconds=10, failureThreshold=10)
    container["readinessProbe"] = _probe("/health", periodSeconds=1, failureThreshold=2)
    return container


def _pod(container: JSON, shm: str) -> JSON:
    return {
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}],
        "terminationGracePeriodSeconds": GRACE_SECONDS,
    }


def _worker_pod(role: Role, kv_transfer: KVTransfer | None) -> JSON:
    container = _main(role, kv_transfer, multi_node=True, pod="Worker")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        del container[probe]
    return _pod(container, "8Gi")


def _workload(role: Role, kv_transfer: KVTransfer | None, multi_node: bool) -> JSON:
    shm = "8Gi" if multi_node else "1Gi"
    out: JSON = {"template": _pod(_main(role, kv_transfer, multi_node), shm)}
    if multi_node:
        out["worker"] = _worker_pod(role, kv_transfer)
    return out


def _route_rule(path: str) -> JSON:
    return {
        "name": "v1-" + path.replace("/", "-"),
        "backendRefs": [
            {
                "group": "inference.networking.k8s.io",
                "kind": "InferencePool",
                "name": POOL_NAME,
                "port": WORKER_PORT,
                "weight": 1,
            }
        ],
        "matches": [
            {
                "path": {
                    "type": "PathPrefix",
                    "value": f"/{{{{ .ObjectMeta.Namespace }}}}/{{{{ .ObjectMeta.Name }}}}/v1/{path}",
                }
            }
        ],
        "filters": [
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": f"/v1/{path}"}
                },
            }
        ],
        "timeouts": {"backendRequest": "0s", "request": "0s"},
    }


OPENAI_PATHS = ("completions", "chat/completions", "responses", "messages")


def _router_route() -> JSON:
    return {
        "router": {
            "route": {
                "http": {
                    "spec": {
                        "parentRefs": [
                            {
                                "group": "gateway.networking.k8s.io",
                                "kind": "Gateway",
                                "name": "{{ .GlobalConfig.IngressGatewayName }}",
                                "namespace": "{{ .GlobalConfig.IngressGatewayNamespace }}",
                            }
                        ],
                        "rules": [_route_rule(p) for p in OPENAI_PATHS],
                    }
                }
            }
        }
    }


def _scheduler() -> JSON:
    return {
        "router": {
            "scheduler": {
                "pool": {
                    "spec": {
                        "endpointPickerRef": {
                            "failureMode": "FailOpen",
                            "kind": "Service",
                            "name": "{{ ChildName .ObjectMeta.Name `-epp-service` }}",
                            "port": {"number": ROUTER_PORT},
                        },
                        "selector": {"matchLabels": dict(POOL_SELECTOR)},
                        "targetPorts": [{"number": WORKER_PORT}],
                    }
                },
                "template": {
                    "containers": [
                        {
                            "name": "main",
                            "image": ROUTER_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            # the gateway finds the pool's pods itself, by the pool's default
                            # selector (KServe's EPP gets `--pool-name` and reads the pool)
                            "command": [
                                ROUTER_COMMAND,
                                "gateway",
                                "--port",
                                str(ROUTER_PORT),
                                "--kube-selector",
                                ",".join(f"{k}={v}" for k, v in POOL_SELECTOR.items()),
                                "--kube-namespace",
                                "{{ .ObjectMeta.Namespace }}",
                                "--role-label",
                                ROLE_LABEL,
                                "--kube-port",
                                str(WORKER_PORT),
                            ],
                            "ports": [
                                {"containerPort": ROUTER_PORT, "name": "http", "protocol": "TCP"}
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": ROUTER_PORT},
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"cpu": "4", "memory": "4Gi"},
                            },
                        }
                    ],
                    "terminationGracePeriodSeconds": GRACE_SECONDS,
                },
            }
        }
    }


def _tracing() -> JSON:
    return {
        "tracing": {
            "exporterEndpoint": "http://otel-collector:4317",
            "sampler": "parentbased_traceidratio",
            "samplerArg": "0.05",
            "exporter": "otlp",
        }
    }


def _specs() -> dict[str, JSON]:
    def prefill(workload: JSON) -> JSON:
        return {"prefill": workload}

    return {
        TEMPLATE: _workload("both", None, multi_node=False),
        DECODE_TEMPLATE: _workload("decode", "nixl", multi_node=False),
        PREFILL_TEMPLATE: prefill(_workload("prefill", "nixl", multi_node=False)),
        WORKER_DATA_PARALLEL: _workload("both", None, multi_node=True),
        DECODE_WORKER_DATA_PARALLEL: _workload("decode", "nixl", multi_node=True),
        PREFILL_WORKER_DATA_PARALLEL: prefill(_workload("prefill", "nixl", multi_node=True)),
        WORKER_PIPELINE_PARALLEL: _workload("both", None, multi_node=True),
        DECODE_WORKER_PIPELINE_PARALLEL: _workload("decode", "nixl", multi_node=True),
        PREFILL_WORKER_PIPELINE_PARALLEL: prefill(_workload("prefill", "nixl", multi_node=True)),
        SCHEDULER: _scheduler(),
        # KServe runs a tokenizer pod and a latency-predictor sidecar for llm-d's scheduler
        # plugins that need them; Wharf's router tokenizes and predicts in-process, so these
        # names exist (a config of the same name still applies) and add nothing
        TOKENIZER: {},
        SCHEDULER_LATENCY_PREDICTOR: {},
        ROUTER_ROUTE: _router_route(),
        TRACING: _tracing(),
    }


@cache
def _builtin(prefix: str) -> dict[str, LLMInferenceServiceConfig]:
    out: dict[str, LLMInferenceServiceConfig] = {}
    for suffix, spec in _specs().items():
        name = prefix + suffix
        out[name] = LLMInferenceServiceConfig.model_validate(
            {
                "apiVersion": "serving.kserve.io/v1alpha2",
                "kind": "LLMInferenceServiceConfig",
                "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE},
                "spec": spec,
            }
        )
    return out


def builtin_config(name: str, prefix: str = CONFIG_PREFIX) -> LLMInferenceServiceConfig | None:
    """The built-in config of that name, shared: read it, do not change it."""
    return _builtin(prefix).get(name)


def builtin_configs(prefix: str = CONFIG_PREFIX) -> dict[str, LLMInferenceServiceConfig]:
    """Wharf's well-known configs by name (copies: callers may change them)."""
    return {name: cfg.model_copy(deep=True) for name, cfg in _builtin(prefix).items()}
