"""The plan of an LLMInferenceService: its workloads (main, optional prefill), each single-node
(a Deployment's pods) or multi-node (LeaderWorkerSet groups), with containers, engine args,
storage and ports, and the router parts (route, gateway, scheduler).

The controller renders a plan as Deployments, LeaderWorkerSets, Services, an InferencePool
and an HTTPRoute; `wharf up` as worker processes behind its router. Ports and paths in a plan
are the container's (8000, `/mnt/models`, `/mnt/lora/NAME`); a multi-node pod runs
`wharf-llm-worker multinode`, which reads `LWS_LEADER_ADDRESS`, `LWS_GROUP_SIZE` and
`LWS_WORKER_INDEX` from the environment a LeaderWorkerSet gives each pod (and `wharf up` gives
each rank the same way).

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from wharf_api.config import InferenceServiceConfig
from wharf_api.k8s import Container, EnvVar, PodSpec
from wharf_api.llm import presets
from wharf_api.llm.combine import combine, pinned_config_names
from wharf_api.llm.engine_args import with_engine_args, with_tracing
from wharf_api.llm.errors import LLMPlanError
from wharf_api.llm.plan_types import (
    JSON,
    MAIN_CONTAINER,
    EngineSettings,
    LLMContainer,
    LLMPlan,
    LLMPod,
    LLMWorkload,
    LoraPlan,
    ParallelismPlan,
    RoutePlan,
    RouterPlan,
    ScalingPlan,
    SchedulerPlan,
    StorageMount,
)
from wharf_api.llm.scheduler_config import default_scheduler_config, gateway_weights
from wharf_api.llm.template_context import GlobalConfig, child_name
from wharf_api.llm.worker_cli import (
    ENGINE_ARGS_SEPARATOR,
    MODEL_DIR,
    MODEL_FLAG,
    PORT_FLAG,
    SERVED_MODEL_NAME_FLAG,
    WORKER_PORT,
    Role,
    is_worker_command,
)
from wharf_api.names import DEFAULT_DOMAIN_TEMPLATE, DEFAULT_NAMESPACE, service_host
from wharf_api.plan import arg_value
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


def _engine(pod: LLMPod, model_name: str) -> EngineSettings:
    main = pod.main
    if is_worker_command(main.command):
        command = list(main.command)
        cut = command.index(ENGINE_ARGS_SEPARATOR) if ENGINE_ARGS_SEPARATOR in command else None
        own = command[:cut] if cut is not None else command
        engine_args = (*command[cut + 1 :], *main.args) if cut is not None else main.args
        port = arg_value(own, PORT_FLAG)
        served = arg_value(own, SERVED_MODEL_NAME_FLAG)
        return EngineSettings(
            port=int(port) if port and port.isdigit() else WORKER_PORT,
            served_model_names=(served or model_name,),
            model=arg_value(own, MODEL_FLAG) or MODEL_DIR,
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
        planned = with_engine_args(planned, w.parallelism, lora, namespace)
        return with_tracing(planned, tracing, namespace, name, role_suffix)

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
            pod=_scheduler_pod(
                _pod(s.template, where, "spec.router.scheduler.template") if s.template else None,
                config if s.config is not None and s.config.inline is not None else None,
                where,
            ),
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


def is_gateway_command(command: Sequence[str]) -> bool:
    """`wharf-router gateway ...`: Wharf's router as the scheduler."""
    return (
        len(command) >= 2
        and command[0].rsplit("/", 1)[-1] == presets.ROUTER_COMMAND
        and command[1] == "gateway"
    )


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _scheduler_pod(pod: LLMPod | None, inline: JSON | None, service: str) -> LLMPod | None:
    """The scheduler's pod with an inline EndpointPickerConfig's weights as the gateway's
    `--weights` (a `--weights` the template already gives wins)."""
    if pod is None or inline is None:
        return pod
    try:
        weights = gateway_weights(inline)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise LLMPlanError(
            service, f"spec.router.scheduler.config.inline.{field}", message
        ) from exc
    containers = []
    for c in pod.containers:
        argv = (*c.command, *c.args)
        wanted = c.name == MAIN_CONTAINER and is_gateway_command(c.command)
        if wanted and not _has_flag(argv, "--weights"):
            c = dataclasses.replace(c, command=(*c.command, "--weights", weights))
        containers.append(c)
    return dataclasses.replace(pod, containers=tuple(containers))


def scheduler_weights(plan: LLMPlan) -> str | None:
    """The `--weights` the plan's router runs with (from an inline scheduler config), for a
    control plane that builds the gateway's command itself (`wharf up`); None: the defaults."""
    scheduler = plan.router.scheduler if plan.router is not None else None
    if scheduler is None or scheduler.pod is None:
        return None
    main = next((c for c in scheduler.pod.containers if c.name == MAIN_CONTAINER), None)
    if main is None or not is_gateway_command(main.command):
        return None
    return arg_value((*main.command, *main.args), "--weights")


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
