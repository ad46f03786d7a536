"""The plan of an LLMInferenceService: its workloads (main, optional prefill), each single-node
(a Deployment's pods) or multi-node (LeaderWorkerSet groups), with containers, engine args,
storage and ports, and the router parts (route, gateway, scheduler).

The controller renders a plan as Deployments, LeaderWorkerSets, Services, an InferencePool
and an HTTPRoute; `wharf up` as worker processes behind its router. Ports and paths in a plan
are the container's (8000, `/mnt/models`, `/mnt/lora/NAME`); a multi-node command reads
`$(LWS_LEADER_ADDRESS)`, `$(LWS_GROUP_SIZE)` and `$(LWS_WORKER_INDEX)`, which a LeaderWorkerSet
sets and the kubelet expands, and which `wharf up` sets and expands the same way.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from wharf_api.config import InferenceServiceConfig
from wharf_api.k8s import Container, EnvVar, PodSpec
from wharf_api.llm import presets
from wharf_api.llm.combine import AppliedConfig, combine, pinned_config_names
from wharf_api.llm.errors import LLMPlanError
from wharf_api.llm.scheduler_config import default_scheduler_config
from wharf_api.llm.template_context import GlobalConfig, child_name
from wharf_api.llm.worker_cli import (
    ENGINE_ARGS_SEPARATOR,
    LORA_FLAG,
    MODEL_DIR,
    MODEL_FLAG,
    PORT_FLAG,
    SERVED_MODEL_NAME_FLAG,
    WORKER_PORT,
    Role,
    is_worker_command,
    with_worker_flags,
)
from wharf_api.names import DEFAULT_DOMAIN_TEMPLATE, DEFAULT_NAMESPACE, service_host
from wharf_api.resources import LLMInferenceService, LLMInferenceServiceConfig
from wharf_api.resources.llm_inference_service import (
    LLMInferenceServiceSpec,
    ParallelismSpec,
    TracingSpec,
    WorkloadSpec,
)

__all__ = [
    "EngineSettings",
    "LLMContainer",
    "LLMPlan",
    "LLMPod",
    "LLMWorkload",
    "LoraPlan",
    "ParallelismPlan",
    "RoutePlan",
    "RouterPlan",
    "ScalingPlan",
    "SchedulerPlan",
    "StorageMount",
    "global_config_from",
    "plan_llm_inference_service",
]

JSON = dict[str, Any]
MAIN_CONTAINER = "main"
LORA_ROOT = "/mnt/lora"
# KServe's LLM controller downloads or mounts these; Wharf's storage reads the others too
KSERVE_SCHEMES = ("hf", "s3", "pvc", "oci")
WHARF_SCHEMES = ("gs", "azure", "http", "https", "file")
LORA_SCHEMES = ("hf", "s3", "pvc")
MAX_ADAPTERS = 64
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
COMPONENT_LABEL = "app.kubernetes.io/component"
KSERVE_COMPONENT_LABEL = "kserve.io/component"
ROLE_LABEL = "llm-d.ai/role"
PART_OF = "llminferenceservice"
# KServe copies annotations with these prefixes from the service's metadata onto the pods
POD_ANNOTATION_PREFIXES = ("k8s.v1.cni.cncf.io", "kueue.x-k8s.io", "prometheus.io")
MODEL_ROUTING_ANNOTATION = "serving.kserve.io/model-based-routing-enabled"


# ---- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMContainer:
    """One container as it will run, after merge and template rendering.

    `env` holds literal values; `env_refs` the entries that read a Secret, ConfigMap or field.
    `extra` keeps the other Container fields (probes, securityContext, lifecycle, ...) as
    Kubernetes writes them, for the controller to render.
    """

    name: str
    image: str | None
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    env_refs: tuple[tuple[str, JSON], ...] = ()
    ports: tuple[JSON, ...] = ()
    resources: JSON | None = None
    volume_mounts: tuple[JSON, ...] = ()
    extra: JSON | None = None


@dataclass(frozen=True)
class LLMPod:
    """A pod template: containers (the engine's is named `main`) and pod-level fields."""

    containers: tuple[LLMContainer, ...]
    init_containers: tuple[LLMContainer, ...] = ()
    volumes: tuple[JSON, ...] = ()
    service_account_name: str | None = None
    node_selector: JSON | None = None
    tolerations: tuple[JSON, ...] = ()
    affinity: JSON | None = None
    termination_grace_period_seconds: int | None = None
    extra: JSON | None = None

    @property
    def main(self) -> LLMContainer:
        return next(c for c in self.containers if c.name == MAIN_CONTAINER)


@dataclass(frozen=True)
class EngineSettings:
    """What the engine of a workload serves, read from its `main` container.

    `worker` says whether it runs `wharf-llm-worker` (then `engine_args` are the vLLM args after
    `--`); for another command (a KServe preset's shell script) the port is the container's
    first port and `engine_args` its args.
    """

    port: int
    served_model_names: tuple[str, ...]
    model: str
    engine_args: tuple[str, ...]
    worker: bool


@dataclass(frozen=True)
class ParallelismPlan:
    tensor: int | None = None
    pipeline: int | None = None
    data: int | None = None
    data_local: int | None = None
    data_rpc_port: int | None = None
    expert: bool = False


@dataclass(frozen=True)
class ScalingPlan:
    """`scaling`: replicas between min and max, driven by WVA (HPA or KEDA) or KEDA triggers."""

    min_replicas: int
    max_replicas: int
    wva: JSON | None = None
    keda: JSON | None = None


@dataclass(frozen=True)
class StorageMount:
    """A URI to fetch (or a PVC to mount) at `mount_path`: the model, or a LoRA adapter."""

    uri: str
    mount_path: str
    kind: Literal["model", "lora"] = "model"
    name: str | None = None


@dataclass(frozen=True)
class LLMWorkload:
    """One workload: the main one (role `both`, or `decode` with a prefill pool) or `prefill`.

    Single-node: a Deployment `name` of `replicas` pods from `leader`. Multi-node: a
    LeaderWorkerSet `name` of `replicas` groups of `size` pods, the first from `leader` (None:
    every pod from `worker`) and the others from `worker`.
    """

    component: Literal["main", "prefill"]
    role: Role
    name: str
    kind: Literal["Deployment", "LeaderWorkerSet"]
    replicas: int
    size: int
    leader: LLMPod | None
    worker: LLMPod | None
    engine: EngineSettings
    # where the pod takes requests: the engine's port, or a routing sidecar's in front of it
    serving_port: int
    labels: JSON
    annotations: JSON
    worker_labels: JSON | None = None
    scaling: ScalingPlan | None = None
    parallelism: ParallelismPlan | None = None
    rollout: JSON | None = None
    kv_cache_offloading: JSON | None = None

    @property
    def multi_node(self) -> bool:
        return self.kind == "LeaderWorkerSet"

    def revision_key(self) -> str:
        """A digest of what needs new pods: everything but the replica count and scaling."""
        payload = dataclasses.asdict(self)
        for key in ("replicas", "scaling"):
            payload.pop(key)
        raw = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class LoraPlan:
    adapters: tuple[StorageMount, ...]
    max_rank: int | None = None
    max_adapters: int | None = None
    max_cpu_adapters: int | None = None


@dataclass(frozen=True)
class RoutePlan:
    """`router.route`: Wharf's managed HTTPRoute (`http_spec`), or the user's routes (`refs`)."""

    managed: bool
    refs: tuple[str, ...] = ()
    http_spec: JSON | None = None
    path_prefix: str = ""
    group: str | None = None
    weight: int | None = None


@dataclass(frozen=True)
class SchedulerPlan:
    """`router.scheduler`: the pool of the service's pods and the router that picks one.

    `config` is the scheduler configuration (the inline one, or the default for the shape of
    the service); `config_ref` a ConfigMap key the caller resolves instead when it is set.
    """

    pool_name: str
    pool: JSON | None
    pool_ref: str | None
    replicas: int
    config: JSON | None
    config_ref: JSON | None
    pod: LLMPod | None
    labels: JSON | None = None
    annotations: JSON | None = None


@dataclass(frozen=True)
class RouterPlan:
    route: RoutePlan | None
    gateway_refs: tuple[JSON, ...]
    ingress_refs: tuple[JSON, ...]
    scheduler: SchedulerPlan | None
    workload_service: str


@dataclass(frozen=True)
class LLMPlan:
    kind: str
    name: str
    namespace: str
    model_name: str
    model_uri: str
    host: str
    path_prefix: str
    workloads: tuple[LLMWorkload, ...]
    router: RouterPlan | None
    storage: tuple[StorageMount, ...]
    storage_initializer: bool
    lora: LoraPlan | None
    tracing: JSON | None
    applied_configs: tuple[AppliedConfig, ...]
    # KServe pins the well-known config names in status.annotations on first reconcile
    status_annotations: JSON = dataclasses.field(default_factory=dict)
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def main(self) -> LLMWorkload:
        return self.workloads[0]

    @property
    def prefill(self) -> LLMWorkload | None:
        return next((w for w in self.workloads if w.component == "prefill"), None)


# ---- building it --------------------------------------------------------------------------


def _dump(model: Any) -> JSON:
    dumped: JSON = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


_CONTAINER_FIELDS = {
    "name",
    "image",
    "command",
    "args",
    "env",
    "ports",
    "resources",
    "volumeMounts",
}
_POD_FIELDS = {
    "containers",
    "initContainers",
    "volumes",
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "terminationGracePeriodSeconds",
}


def _env(
    env: Sequence[EnvVar] | None,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, JSON], ...]]:
    literal = tuple((e.name, e.value or "") for e in env or [] if e.value_from is None)
    refs = tuple((e.name, dict(e.value_from)) for e in env or [] if e.value_from is not None)
    return literal, refs


def _container(c: Container, where: str) -> LLMContainer:
    if not c.name:
        raise LLMPlanError(where, "name", "a container needs a name")
    env, env_refs = _env(c.env)
    dumped = _dump(c)
    extra = {k: v for k, v in dumped.items() if k not in _CONTAINER_FIELDS}
    return LLMContainer(
        name=c.name,
        image=c.image,
        command=tuple(c.command or ()),
        args=tuple(c.args or ()),
        env=env,
        env_refs=env_refs,
        ports=tuple(_dump(p) for p in c.ports or []),
        resources=_dump(c.resources) if c.resources is not None else None,
        volume_mounts=tuple(_dump(v) for v in c.volume_mounts or []),
        extra=extra or None,
    )


def _pod(spec: PodSpec, service: str, path: str) -> LLMPod:
    containers = spec.containers or []
    if not any(c.name == MAIN_CONTAINER for c in containers):
        raise LLMPlanError(service, f"{path}.containers", "needs a container named 'main'")
    dumped = _dump(spec)
    extra = {k: v for k, v in dumped.items() if k not in _POD_FIELDS}
    grace = dumped.get("terminationGracePeriodSeconds")
    return LLMPod(
        containers=tuple(
            _container(c, f"{service}: {path}.containers[{i}]") for i, c in enumerate(containers)
        ),
        init_containers=tuple(
            _container(c, f"{service}: {path}.initContainers[{i}]")
            for i, c in enumerate(spec.init_containers or [])
        ),
        volumes=tuple(_dump(v) for v in spec.volumes or []),
        service_account_name=spec.service_account_name,
        node_selector=dict(spec.node_selector) if spec.node_selector else None,
        tolerations=tuple(_dump(t) for t in spec.tolerations or []),
        affinity=_dump(spec.affinity) if spec.affinity is not None else None,
        termination_grace_period_seconds=grace if isinstance(grace, int) else None,
        extra=extra or None,
    )


def _flag(values: Sequence[str], flag: str) -> str | None:
    found: str | None = None
    for i, arg in enumerate(values):
        if arg.startswith(flag + "="):
            found = arg[len(flag) + 1 :]
        elif arg == flag and i + 1 < len(values):
            found = values[i + 1]
    return found


def _engine(pod: LLMPod, model_name: str) -> EngineSettings:
    main = pod.main
    if is_worker_command(main.command):
        command = list(main.command)
        cut = command.index(ENGINE_ARGS_SEPARATOR) if ENGINE_ARGS_SEPARATOR in command else None
        own = command[:cut] if cut is not None else command
        engine_args = (*command[cut + 1 :], *main.args) if cut is not None else main.args
        port = _flag(own, PORT_FLAG)
        served = _flag(own, SERVED_MODEL_NAME_FLAG)
        return EngineSettings(
            port=int(port) if port and port.isdigit() else WORKER_PORT,
            served_model_names=(served or model_name,),
            model=_flag(own, MODEL_FLAG) or MODEL_DIR,
            engine_args=tuple(engine_args),
            worker=True,
        )
    declared = [p.get("containerPort") for p in main.ports]
    return EngineSettings(
        port=next((p for p in declared if isinstance(p, int)), WORKER_PORT),
        served_model_names=(model_name,),
        model=MODEL_DIR,
        engine_args=main.args,
        worker=False,
    )


def _serving_port(pod: LLMPod, engine: EngineSettings) -> int:
    # a native sidecar (an init container that keeps running) with a port fronts the engine,
    # as llm-d's routing sidecar does in KServe's decode preset
    for c in pod.init_containers:
        ports = [p.get("containerPort") for p in c.ports]
        if (c.extra or {}).get("restartPolicy") == "Always" and ports:
            port = ports[0]
            if isinstance(port, int):
                return port
    return engine.port


def _parallelism_args(p: ParallelismSpec | None) -> list[str]:
    if p is None:
        return []
    out: list[str] = []
    for flag, value in (
        ("--tensor-parallel-size", p.tensor),
        ("--pipeline-parallel-size", p.pipeline),
        ("--data-parallel-size", p.data),
        ("--data-parallel-size-local", p.data_local),
        ("--data-parallel-rpc-port", p.data_rpc_port),
    ):
        if value is not None:
            out += [flag, str(value)]
    if p.expert:
        out.append("--enable-expert-parallel")
    return out


def _without_given(extra: list[str], given: Sequence[str]) -> list[str]:
    """`extra` flags (with their values) that `given` does not already set."""
    out: list[str] = []
    i = 0
    while i < len(extra):
        flag = extra[i]
        takes_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        present = any(g == flag or g.startswith(flag + "=") for g in given)
        if not present:
            out += extra[i : i + (2 if takes_value else 1)]
        i += 2 if takes_value else 1
    return out


def _lora_limits(lora: LoraPlan) -> list[str]:
    out = []
    if lora.max_rank is not None:
        out.append(f"--max-lora-rank={lora.max_rank}")
    if lora.max_adapters is not None:
        out.append(f"--max-loras={lora.max_adapters}")
    if lora.max_cpu_adapters is not None:
        out.append(f"--max-cpu-loras={lora.max_cpu_adapters}")
    return out


def _kserve_lora_args(lora: LoraPlan, namespace: str) -> list[str]:
    """KServe's addLoRAVLLMArgs: its presets pass args through `eval`, so it quotes each
    JSON module, and registers each adapter under its publisher name too."""
    out = ["--enable-lora", *_lora_limits(lora), "--lora-modules"]
    for adapter in lora.adapters:
        for module_name in (adapter.name, f"publishers/{namespace}/models/{adapter.name}"):
            module = {"name": module_name, "path": adapter.mount_path}
            out.append(f"'{json.dumps(module, separators=(',', ':'))}'")
    return out


def _user_lora(c: LLMContainer) -> bool:
    additional = dict(c.env).get("VLLM_ADDITIONAL_ARGS", "")
    given = [*c.command, *c.args]
    worker_lora = any(a == LORA_FLAG or a.startswith(LORA_FLAG + "=") for a in given)
    return "--lora-modules" in additional or "--lora-modules" in " ".join(given) or worker_lora


def _with_engine_args(
    pod: LLMPod, parallelism: ParallelismSpec | None, lora: LoraPlan | None, namespace: str
) -> LLMPod:
    containers: list[LLMContainer] = []
    for c in pod.containers:
        if c.name != MAIN_CONTAINER:
            containers.append(c)
            continue
        worker = is_worker_command(c.command)
        given = [*c.command, *c.args]
        extra = _without_given(_parallelism_args(parallelism), given) if worker else []
        command = c.command
        if lora is not None and lora.adapters and not _user_lora(c):
            if worker:
                # the worker owns --lora-modules: adapters are its --lora flags
                flags = [f for a in lora.adapters for f in (LORA_FLAG, f"{a.name}={a.mount_path}")]
                command = tuple(with_worker_flags(c.command, flags))
                extra += _without_given(_lora_limits(lora), given)
            else:
                extra += _kserve_lora_args(lora, namespace)
        containers.append(
            LLMContainer(**{**c.__dict__, "command": command, "args": (*extra, *c.args)})
        )
    return _replace_containers(pod, tuple(containers))


def _with_tracing(
    pod: LLMPod, tracing: TracingSpec | None, namespace: str, name: str, role_suffix: str
) -> LLMPod:
    """KServe's injectServerTracing: vLLM's OTLP flags and the OTEL_* env on `main`."""
    if tracing is None or not tracing.exporter_endpoint:
        return pod
    endpoint = tracing.exporter_endpoint
    env = {
        "OTEL_SERVICE_NAME": "inference-server" + role_suffix,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_EXPORTER": tracing.exporter or "",
        "OTEL_TRACES_SAMPLER": tracing.sampler or "",
        "OTEL_TRACES_SAMPLER_ARG": tracing.sampler_arg or "",
        "OTEL_RESOURCE_ATTRIBUTES": (
            f"k8s.namespace.name={namespace},k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)"
            f",k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),llmisvc.name={name}"
        ),
    }
    refs = {
        "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME": {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}
        },
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
        },
    }
    containers = []
    for c in pod.containers:
        if c.name != MAIN_CONTAINER:
            containers.append(c)
            continue
        args = list(c.args)
        for flag, value in (
            ("--otlp-traces-endpoint", endpoint),
            ("--collect-detailed-traces", "all"),
        ):
            if not any(a == flag or a.startswith(flag + "=") for a in args):
                args += [flag, value]
        literal = {k: v for k, v in c.env if k not in refs}
        literal.update(env)
        from_refs = {k: v for k, v in c.env_refs if k not in env}
        from_refs.update(refs)
        containers.append(
            LLMContainer(
                **{
                    **c.__dict__,
                    "args": tuple(args),
                    "env": tuple(literal.items()),
                    "env_refs": tuple(from_refs.items()),
                }
            )
        )
    return _replace_containers(pod, tuple(containers))


def _replace_containers(pod: LLMPod, containers: tuple[LLMContainer, ...]) -> LLMPod:
    return LLMPod(**{**pod.__dict__, "containers": containers})


def _group_size(p: ParallelismSpec | None) -> int:
    """KServe's ParallelismSpec.GetSize: pods per LeaderWorkerSet group."""
    if p is None:
        return 1
    if (p.data or 0) > 0 or (p.data_local or 0) > 0:
        return max(max(p.data or 1, 1) // max(p.data_local or 1, 1), 1)
    if (p.pipeline or 0) > 0:
        return p.pipeline or 1
    return 1


def _validate_parallelism(w: WorkloadSpec, path: str, where: str) -> None:
    p = w.parallelism
    if w.worker is not None:
        dp = p is not None and ((p.data or 0) > 0 or (p.data_local or 0) > 0)
        pp = p is not None and (p.pipeline or 0) > 0
        if not dp and not pp:
            raise LLMPlanError(
                where,
                f"{path}.worker",
                "when worker is specified, parallelism must be configured for either data "
                "parallelism or pipeline parallelism",
            )
    if p is None:
        return
    if (p.pipeline or 0) > 0 and ((p.data or 0) > 0 or (p.data_local or 0) > 0):
        raise LLMPlanError(
            where,
            f"{path}.parallelism",
            "cannot set both pipeline parallelism and data parallelism (data or dataLocal)",
        )
    if (p.data is None) != (p.data_local is None):
        missing = "dataLocal" if p.data_local is None else "data"
        other = "data" if missing == "dataLocal" else "dataLocal"
        raise LLMPlanError(
            where, f"{path}.parallelism.{missing}", f"{missing} must be set when {other} is set"
        )
    for name, value in (
        ("tensor", p.tensor),
        ("pipeline", p.pipeline),
        ("data", p.data),
        ("dataLocal", p.data_local),
    ):
        if value is not None and value <= 0:
            raise LLMPlanError(where, f"{path}.parallelism.{name}", "must be greater than 0")
    if w.worker is None and _group_size(p) > 1 and (p.data or 0) > 0:
        raise LLMPlanError(
            where,
            f"{path}.worker",
            f"parallelism.data {p.data} over dataLocal {p.data_local} needs "
            f"{_group_size(p)} nodes: a multi-node workload needs a worker pod template",
        )


def _scaling(w: WorkloadSpec, path: str, where: str) -> tuple[int, ScalingPlan | None]:
    if w.replicas is not None and w.scaling is not None:
        raise LLMPlanError(where, f"{path}.scaling", "replicas and scaling are mutually exclusive")
    if w.replicas is not None and w.replicas < 0:
        raise LLMPlanError(where, f"{path}.replicas", "must be >= 0")
    if w.scaling is None:
        return (1 if w.replicas is None else w.replicas), None
    lo = w.scaling.min_replicas if w.scaling.min_replicas is not None else 1
    hi = w.scaling.max_replicas or lo
    if lo > hi:
        raise LLMPlanError(
            where, f"{path}.scaling.minReplicas", f"{lo} is greater than maxReplicas {hi}"
        )
    return lo, ScalingPlan(lo, hi, wva=w.scaling.wva, keda=w.scaling.keda)


def _labels(name: str, component: str, role: Role | None, workload: WorkloadSpec) -> JSON:
    labels = {COMPONENT_LABEL: component, NAME_LABEL: name, PART_OF_LABEL: PART_OF}
    if role is not None:
        labels[KSERVE_COMPONENT_LABEL] = "workload"
        labels[ROLE_LABEL] = role
    labels.update(workload.labels or {})
    return dict(sorted(labels.items()))


def _annotations(llmisvc: LLMInferenceService, workload: WorkloadSpec) -> JSON:
    meta = llmisvc.metadata.annotations or {}
    out = {k: v for k, v in meta.items() if k.startswith(POD_ANNOTATION_PREFIXES)}
    out.update(
        {k: v for k, v in (workload.annotations or {}).items() if k != MODEL_ROUTING_ANNOTATION}
    )
    return dict(sorted(out.items()))


def _workload(
    llmisvc: LLMInferenceService,
    w: WorkloadSpec,
    component: Literal["main", "prefill"],
    role: Role,
    model_name: str,
    lora: LoraPlan | None,
    tracing: TracingSpec | None,
    where: str,
) -> LLMWorkload:
    name, namespace = llmisvc.name, llmisvc.metadata.namespace or DEFAULT_NAMESPACE
    path = "spec" if component == "main" else "spec.prefill"
    _validate_parallelism(w, path, where)
    replicas, scaling = _scaling(w, path, where)
    multi = w.worker is not None
    role_suffix = "-prefill" if component == "prefill" else "-decode"

    def pod(spec: PodSpec, field_name: str) -> LLMPod:
        planned = _pod(spec, where, f"{path}.{field_name}")
        planned = _with_engine_args(planned, w.parallelism, lora, namespace)
        return _with_tracing(planned, tracing, namespace, name, role_suffix)

    leader = pod(w.template, "template") if w.template is not None else None
    worker = pod(w.worker, "worker") if w.worker is not None else None
    serving = leader or worker
    if serving is None:
        what = "the decode workload" if role == "decode" else f"the {component} workload"
        raise LLMPlanError(
            where,
            f"{path}.template",
            f"{what} has no pod template (no preset or baseRef gave one)",
        )
    engine = _engine(serving, model_name)
    suffix = {"main": "-kserve", "prefill": "-kserve-prefill"}[component]
    if multi:
        suffix = {"main": "-kserve-mn", "prefill": "-kserve-mn-prefill"}[component]
    base = "llminferenceservice-workload" + ("-prefill" if component == "prefill" else "")
    if multi:
        leader_component = "llminferenceservice-workload-leader" + (
            "-prefill" if component == "prefill" else ""
        )
        worker_component = "llminferenceservice-workload-worker" + (
            "-prefill" if component == "prefill" else ""
        )
        labels = _labels(name, leader_component, role, w)
        # without a leader template the workers are the pool's pods
        worker_labels = _labels(name, worker_component, role if leader is None else None, w)
    else:
        labels = _labels(name, base, role, w)
        worker_labels = None
    p = w.parallelism
    return LLMWorkload(
        component=component,
        role=role,
        name=child_name(name, suffix),
        kind="LeaderWorkerSet" if multi else "Deployment",
        replicas=replicas,
        size=_group_size(p) if multi else 1,
        leader=leader,
        worker=worker,
        engine=engine,
        serving_port=_serving_port(serving, engine),
        labels=labels,
        annotations=_annotations(llmisvc, w),
        worker_labels=worker_labels,
        scaling=scaling,
        parallelism=(
            ParallelismPlan(
                p.tensor, p.pipeline, p.data, p.data_local, p.data_rpc_port, bool(p.expert)
            )
            if p is not None
            else None
        ),
        rollout=_dump(w.rollout_strategy) if w.rollout_strategy is not None else None,
        kv_cache_offloading=(
            _dump(w.kv_cache_offloading) if w.kv_cache_offloading is not None else None
        ),
    )


def _scheme(uri: str) -> str | None:
    scheme, sep, _ = uri.partition("://")
    return scheme if sep else None


def _model_storage(
    spec: LLMInferenceServiceSpec, where: str
) -> tuple[str, tuple[StorageMount, ...], bool]:
    uri = spec.model.uri if spec.model is not None else None
    if not uri:
        raise LLMPlanError(where, "spec.model.uri", "is required")
    scheme = _scheme(uri)
    if scheme is None:
        raise LLMPlanError(where, "spec.model.uri", f"invalid model URI {uri!r} (no scheme://)")
    enabled = not (
        spec.storage_initializer is not None and spec.storage_initializer.enabled is False
    )
    if not enabled:
        return uri, (), False
    if scheme not in (*KSERVE_SCHEMES, *WHARF_SCHEMES):
        raise LLMPlanError(
            where,
            "spec.model.uri",
            f"unsupported scheme {scheme!r}; supported: "
            + ", ".join(f"{s}://" for s in (*KSERVE_SCHEMES, *WHARF_SCHEMES)),
        )
    return uri, (StorageMount(uri, MODEL_DIR, "model"),), True


def _safe_segment(name: str) -> str:
    out = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in name)
    return "adapter" if out in ("", ".", "..") else out


def _lora(
    spec: LLMInferenceServiceSpec, model_name: str, storage: bool, where: str
) -> LoraPlan | None:
    lora = spec.model.lora if spec.model is not None else None
    if lora is None:
        return None
    path = "spec.model.lora"
    for field_name, value in (
        ("maxRank", lora.max_rank),
        ("maxAdapters", lora.max_adapters),
        ("maxCpuAdapters", lora.max_cpu_adapters),
    ):
        if value is not None and value < 1:
            raise LLMPlanError(where, f"{path}.{field_name}", f"{field_name} must be at least 1")
    adapters = lora.adapters or []
    if len(adapters) > MAX_ADAPTERS:
        raise LLMPlanError(where, f"{path}.adapters", f"more than {MAX_ADAPTERS} adapters")
    seen: dict[str, int] = {}
    for i, adapter in enumerate(adapters):
        where_name = f"{path}.adapters[{i}].name"
        if not adapter.name:
            raise LLMPlanError(where, where_name, "adapter name is required")
        if adapter.name in (".", ".."):
            raise LLMPlanError(where, where_name, 'adapter name must not be "." or ".."')
        if adapter.name in seen:
            raise LLMPlanError(
                where, where_name, f"duplicate name (same as adapters[{seen[adapter.name]}])"
            )
        seen[adapter.name] = i
        if adapter.name == model_name:
            raise LLMPlanError(
                where, where_name, f"adapter name must differ from base model name {model_name!r}"
            )
        scheme = _scheme(adapter.uri or "")
        if scheme not in LORA_SCHEMES:
            raise LLMPlanError(
                where,
                f"{path}.adapters[{i}].uri",
                f"unsupported URI {adapter.uri!r} for a LoRA adapter; supported: hf://, s3://, pvc://",
            )
        if not storage:
            raise LLMPlanError(
                where,
                f"{path}.adapters[{i}].uri",
                "LoRA adapters need the storage initializer: do not set "
                "storageInitializer.enabled to false",
            )
    mounts = tuple(
        StorageMount(a.uri or "", f"{LORA_ROOT}/{_safe_segment(a.name or '')}", "lora", a.name)
        for a in sorted(adapters, key=lambda a: a.name or "")
    )
    return LoraPlan(mounts, lora.max_rank, lora.max_adapters, lora.max_cpu_adapters)


def _router(
    llmisvc: LLMInferenceService,
    spec: LLMInferenceServiceSpec,
    lora: LoraPlan | None,
    where: str,
) -> RouterPlan | None:
    router = spec.router
    if router is None:
        return None
    name, namespace = llmisvc.name, llmisvc.metadata.namespace or DEFAULT_NAMESPACE
    if router.ingress is not None and router.gateway is not None:
        raise LLMPlanError(
            where, "spec.router.ingress", "ingress and gateway are mutually exclusive"
        )
    route = None
    if router.route is not None:
        http = router.route.http
        refs = tuple(r.name or "" for r in (http.refs if http is not None else None) or [])
        route = RoutePlan(
            managed=not refs,
            refs=refs,
            http_spec=http.spec if http is not None and not refs else None,
            path_prefix=f"/{namespace}/{name}",
            group=router.route.group,
            weight=router.route.weight,
        )
    scheduler = None
    if router.scheduler is not None:
        s = router.scheduler
        if s.replicas is not None and s.replicas <= 0:
            raise LLMPlanError(where, "spec.router.scheduler.replicas", "must be greater than zero")
        if s.config is not None and s.config.inline is not None and s.config.ref is not None:
            raise LLMPlanError(where, "spec.router.scheduler.config", "set inline or ref, not both")
        pool_ref = s.pool.ref.name if s.pool is not None and s.pool.ref is not None else None
        config: JSON | None
        if s.config is not None and s.config.inline is not None:
            config = dict(s.config.inline)
        elif s.config is not None and s.config.ref is not None:
            config = None
        else:
            config = default_scheduler_config(
                disaggregated=spec.prefill is not None,
                lora=lora is not None and bool(lora.adapters),
            )
        scheduler = SchedulerPlan(
            pool_name=pool_ref or child_name(name, "-inference-pool"),
            pool=s.pool.spec if s.pool is not None and not pool_ref else None,
            pool_ref=pool_ref,
            replicas=s.replicas or 1,
            config=config,
            config_ref=_dump(s.config.ref) if s.config is not None and s.config.ref else None,
            pod=_pod(s.template, where, "spec.router.scheduler.template") if s.template else None,
            labels=dict(s.labels) if s.labels else None,
            annotations=dict(s.annotations) if s.annotations else None,
        )
    return RouterPlan(
        route=route,
        gateway_refs=tuple(
            _dump(r) for r in (router.gateway.refs if router.gateway else None) or []
        ),
        ingress_refs=tuple(
            _dump(r) for r in (router.ingress.refs if router.ingress else None) or []
        ),
        scheduler=scheduler,
        workload_service=child_name(name, "-kserve-workload-svc"),
    )


def global_config_from(config: InferenceServiceConfig) -> GlobalConfig:
    """KServe's LLM controller settings from `inferenceservice-config`'s `ingress` key."""
    ingress = config.ingress
    extra = ingress.model_extra or {}
    namespace, _, gateway = ingress.kserve_ingress_gateway.rpartition("/")
    return GlobalConfig(
        system_namespace=presets.SYSTEM_NAMESPACE,
        ingress_gateway_name=gateway,
        ingress_gateway_namespace=namespace or presets.SYSTEM_NAMESPACE,
        enable_tls=bool(extra.get("enableLLMInferenceServiceTLS", False)),
        model_based_routing_header_name=str(
            extra.get("modelBasedRoutingHeaderName") or "X-Gateway-Model-Name"
        ),
    )


def plan_llm_inference_service(
    llmisvc: LLMInferenceService,
    configs: Mapping[str, LLMInferenceServiceConfig],
    *,
    config: InferenceServiceConfig | None = None,
    config_prefix: str = presets.CONFIG_PREFIX,
) -> LLMPlan:
    """The plan of an LLMInferenceService.

    `configs` are the LLMInferenceServiceConfigs by name that `baseRefs` and the well-known
    presets may name (the service's namespace first, then `kserve`: the caller resolves that
    and passes one per name); a name not there falls back to Wharf's built-in preset.
    `config` is `inferenceservice-config` (KServe's defaults when None): its ingress gives the
    host, the gateway and whether TLS is on. Raises LLMPlanError naming the object and field.
    """
    config = config or InferenceServiceConfig()
    namespace = llmisvc.metadata.namespace or DEFAULT_NAMESPACE
    svc = llmisvc.model_copy(deep=True)
    svc.metadata.namespace = namespace
    where = f"LLMInferenceService {namespace}/{svc.name}"
    combined = combine(svc, configs, global_config=global_config_from(config), prefix=config_prefix)
    spec = combined.spec
    model_uri, storage, initializer = _model_storage(spec, where)
    lora = _lora(spec, combined.model_name, initializer, where)
    if lora is not None:
        storage = (*storage, *lora.adapters)
    main_role: Role = "decode" if spec.prefill is not None else "both"
    model_name, tracing = combined.model_name, spec.tracing
    workloads = [_workload(svc, spec, "main", main_role, model_name, lora, tracing, where)]
    if spec.prefill is not None:
        workloads.append(
            _workload(svc, spec.prefill, "prefill", "prefill", model_name, lora, tracing, where)
        )
    return LLMPlan(
        kind=svc.kind,
        name=svc.name,
        namespace=namespace,
        model_name=combined.model_name,
        model_uri=model_uri,
        host=service_host(
            svc.name,
            namespace,
            config.ingress.ingress_domain,
            config.ingress.domain_template or DEFAULT_DOMAIN_TEMPLATE,
        ),
        path_prefix=f"/{namespace}/{svc.name}",
        workloads=tuple(workloads),
        router=_router(svc, spec, lora, where),
        storage=storage,
        storage_initializer=initializer,
        lora=lora,
        tracing=_dump(spec.tracing) if spec.tracing is not None else None,
        applied_configs=combined.applied,
        status_annotations=pinned_config_names(svc, config_prefix),
        scheme=config.ingress.url_scheme or "http",
    )
