"""The plan of an InferenceService: its components, each with the container to run, its storage
and ports, and its scaling and traffic settings.

The controller renders a plan as Kubernetes objects and `wharf up` as local processes, so both
make the same decisions: which runtime, which container and args (runtime args first, then the
InferenceService's, with KServe's `{{.Name}}` placeholders filled in), which storage URI mounts at
`/mnt/models`, and how the transformer reaches the predictor. Ports and paths in a plan are those
of the container (HTTP 8080, gRPC 8081, `/mnt/models`); `wharf up` rebinds them for a place
where every process needs its own port and folder (`wharf_local.rebind`).

Pure: no I/O. `plan_inference_service` expects a defaulted, validated object.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePosixPath as Path
from typing import Any, Literal

from wharf_api.config import InferenceServiceConfig
from wharf_api.defaulting import predictor_model
from wharf_api.graph import arg_value, model_name
from wharf_api.k8s import Container, ContainerFields, EnvVar
from wharf_api.names import (
    DEFAULT_DOMAIN,
    DEFAULT_DOMAIN_TEMPLATE,
    DEFAULT_NAMESPACE,
    ComponentName,
    component_service_name,
    service_host,
)
from wharf_api.resources import (
    ClusterServingRuntime,
    InferenceService,
    ObjectMeta,
    ServingRuntime,
)
from wharf_api.resources.inference_service import (
    FRAMEWORKS,
    ComponentExtensionSpec,
    PodSpecFields,
    PredictorExtensionSpec,
    PredictorSpec,
)
from wharf_api.runtime_selection import select_runtime

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_NAMESPACE",
    "ComponentName",
    "ComponentPlan",
    "ContainerPlan",
    "PlanError",
    "PodPlan",
    "ScalingPlan",
    "ServicePlan",
    "StorageMount",
    "arg_value",
    "component_service_name",
    "plan_inference_service",
    "service_host",
    "substitute_placeholders",
]

MODEL_DIR = "/mnt/models"
HTTP_PORT = 8080
GRPC_PORT = 8081
# The command of Wharf's own model server: it batches and logs payloads in-process, so the
# plan turns `batcher` and `logger` into its flags instead of an agent sidecar.
MODEL_SERVER_COMMAND = "wharf-model-server"
DEFAULT_SCALE_METRIC = "concurrency"
# Knative's container-concurrency-target-default and requests-per-second-target-default
DEFAULT_SCALE_TARGETS: Mapping[str, int] = {"concurrency": 100, "rps": 200, "cpu": 80, "memory": 80}
STORAGE_URI_ENV = "STORAGE_URI"

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_INDEX = re.compile(r'^index\s+\.(Labels|Annotations)\s+"([^"]*)"$')
_DOTTED = re.compile(
    r"^\.(Name|Namespace|GenerateName)$|^\.(Labels|Annotations)\.([A-Za-z0-9_./-]+)$"
)
# what Go's text/template prints for a missing map key reached as `.Labels.key`
_GO_MISSING_KEY = "<no value>"


class PlanError(ValueError):
    """The object cannot be planned; the message names the object and the field."""


JSON = dict[str, Any]


@dataclass(frozen=True)
class ContainerPlan:
    """One container as it will run: after runtime merge and placeholder substitution.

    `env` holds literal values; `env_refs` the entries that read a Secret, ConfigMap or field
    (`valueFrom`), which a cluster resolves and `wharf up` resolves where it can. Resources,
    ports and volume mounts are kept as Kubernetes writes them, for a Deployment to render.
    """

    name: str
    image: str | None
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    env_refs: tuple[tuple[str, JSON], ...] = ()
    resources: JSON | None = None
    ports: tuple[JSON, ...] = ()
    volume_mounts: tuple[JSON, ...] = ()


@dataclass(frozen=True)
class PodPlan:
    """The pod-level fields of a component, as Kubernetes writes them (camelCase JSON)."""

    service_account_name: str | None = None
    node_selector: JSON | None = None
    tolerations: tuple[JSON, ...] = ()
    affinity: JSON | None = None
    image_pull_secrets: tuple[str, ...] = ()
    volumes: tuple[JSON, ...] = ()
    labels: JSON | None = None
    annotations: JSON | None = None
    # fields of the inline PodSpec the plan does not model (schedulerName, securityContext ...)
    extra: JSON | None = None


@dataclass(frozen=True)
class BatcherPlan:
    max_batch_size: int | None = None
    max_latency_ms: int | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class LoggerPlan:
    url: str | None
    mode: str = "all"
    metadata_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerPlan:
    """`predictor.workerSpec`: the worker pods of a multi-node predictor."""

    pipeline_parallel_size: int | None
    tensor_parallel_size: int | None
    pod: PodPlan
    container: ContainerPlan | None


@dataclass(frozen=True)
class ScalingPlan:
    min_replicas: int
    max_replicas: int
    metric: str
    target: int
    container_concurrency: int | None = None
    # KServe's scaleMetricType (Utilization, Value, AverageValue) and the `autoScaling` spec
    # (HPA/KEDA metrics and behavior) as written, for the controller to render
    metric_type: str | None = None
    auto_scaling: JSON | None = None


@dataclass(frozen=True)
class StorageMount:
    uri: str
    mount_path: str = MODEL_DIR


@dataclass(frozen=True)
class ComponentPlan:
    """One component (predictor, transformer or explainer) of a service."""

    component: ComponentName
    service_name: str
    container: ContainerPlan
    protocol: str
    scaling: ScalingPlan
    storage: tuple[StorageMount, ...] = ()
    http_port: int = HTTP_PORT
    grpc_port: int | None = GRPC_PORT
    runtime: str | None = None
    runtime_kind: str | None = None
    model_format: str | None = None
    canary_traffic_percent: int | None = None
    timeout_seconds: int | None = None
    pod: PodPlan = field(default_factory=PodPlan)
    batcher: BatcherPlan | None = None
    logger: LoggerPlan | None = None
    worker: WorkerPlan | None = None

    @property
    def storage_uri(self) -> str | None:
        return self.storage[0].uri if self.storage else None

    def revision_key(self) -> str:
        """A digest of what makes a new revision: the container, storage, ports and protocol.

        Scaling settings and the canary percent are left out, as Knative does for the
        autoscaler bounds it reads live and the traffic split, so changing them re-uses the
        running revision.
        """
        payload = {
            "container": asdict(self.container),
            "storage": [asdict(s) for s in self.storage],
            "ports": [self.http_port, self.grpc_port],
            "protocol": self.protocol,
            "pod": asdict(self.pod),
            "batcher": asdict(self.batcher) if self.batcher else None,
            "logger": asdict(self.logger) if self.logger else None,
            "worker": asdict(self.worker) if self.worker else None,
        }
        raw = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class ServicePlan:
    kind: str
    name: str
    namespace: str
    host: str
    components: tuple[ComponentPlan, ...] = field(default=())

    scheme: str = "http"
    # the name clients (and graph steps) use for the model: `wharf_api.graph.model_name`
    model_name: str = ""

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def component(self, name: ComponentName) -> ComponentPlan | None:
        return next((c for c in self.components if c.component == name), None)

    @property
    def entry(self) -> ComponentPlan:
        """The component that receives the service's requests (transformer, else predictor)."""
        return self.component("transformer") or self.components[0]


def substitute_placeholders(text: str, metadata: ObjectMeta, *, where: str = "") -> str:
    """Fill KServe's Go-template placeholders from the object's metadata.

    KServe executes a runtime container as a Go template over the InferenceService's
    ObjectMeta, nothing else. Supported: `{{.Name}}`, `{{.Namespace}}`, `{{.GenerateName}}`,
    `{{.Labels.key}}`, `{{.Annotations.key}}` and `{{index .Labels "key"}}`. A missing key prints
    as Go prints it: `<no value>` in the dotted form, an empty string through `index`. Any other
    field (`{{.TensorParallelSize}}`, `{{.StorageUri}}`) is an error naming `where`, as KServe's
    template fails on it ("can't evaluate field ... in type v1.ObjectMeta").
    """

    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        dotted = _DOTTED.match(expr)
        indexed = _INDEX.match(expr)
        if dotted and dotted.group(1) == "Name":
            return metadata.name or ""
        if dotted and dotted.group(1) == "Namespace":
            return metadata.namespace or DEFAULT_NAMESPACE
        if dotted and dotted.group(1) == "GenerateName":
            return metadata.generate_name or ""
        if dotted:
            mapping = metadata.labels if dotted.group(2) == "Labels" else metadata.annotations
            return (mapping or {}).get(dotted.group(3), _GO_MISSING_KEY)
        if indexed:
            mapping = metadata.labels if indexed.group(1) == "Labels" else metadata.annotations
            return (mapping or {}).get(indexed.group(2), "")
        raise PlanError(
            f"{where}: unsupported placeholder {match.group(0)!r}: KServe fills a runtime's "
            "placeholders from the InferenceService's metadata only (Name, Namespace, Labels, "
            "Annotations), so it cannot render this runtime either"
        )

    return _PLACEHOLDER.sub(value, text)


def _env_pairs(env: Sequence[EnvVar] | None) -> list[tuple[str, str]]:
    return [(e.name, e.value or "") for e in env or [] if e.value_from is None]


def _env_refs(env: Sequence[EnvVar] | None) -> list[tuple[str, JSON]]:
    return [(e.name, dict(e.value_from)) for e in env or [] if e.value_from is not None]


def _merge_env(base: Sequence[EnvVar] | None, over: Sequence[EnvVar] | None) -> list[EnvVar]:
    """By name, the InferenceService's entries win (KServe's strategic merge of env)."""
    merged: dict[str, EnvVar] = {e.name: e for e in base or []}
    merged.update({e.name: e for e in over or []})
    return list(merged.values())


def _merge_container(runtime: ContainerFields, override: ContainerFields | None) -> ContainerFields:
    """KServe's MergeRuntimeContainers: the InferenceService's fields win, args concatenate."""
    if override is None:
        return runtime
    return ContainerFields(
        name=override.name or runtime.name,
        image=override.image or runtime.image,
        command=override.command or runtime.command,
        args=[*(runtime.args or []), *(override.args or [])],
        env=_merge_env(runtime.env, override.env),
        ports=override.ports or runtime.ports,
        resources=override.resources or runtime.resources,
        volume_mounts=override.volume_mounts or runtime.volume_mounts,
    )


def _dump(model: Any) -> JSON:
    dumped: JSON = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


def _container_plan(fields: ContainerFields, metadata: ObjectMeta, where: str) -> ContainerPlan:
    def sub(text: str, part: str) -> str:
        return substitute_placeholders(text, metadata, where=f"{where}.{part}")

    return ContainerPlan(
        name=fields.name or "kserve-container",
        image=fields.image,
        command=tuple(sub(c, "command") for c in fields.command or []),
        args=tuple(sub(a, "args") for a in fields.args or []),
        env=tuple((k, sub(v, "env")) for k, v in _env_pairs(fields.env)),
        env_refs=tuple(_env_refs(fields.env)),
        resources=_dump(fields.resources) if fields.resources is not None else None,
        ports=tuple(_dump(p) for p in fields.ports or []),
        volume_mounts=tuple(_dump(v) for v in fields.volume_mounts or []),
    )


_POD_FIELDS = frozenset(
    {
        "containers",
        "initContainers",
        "volumes",
        "serviceAccountName",
        "nodeSelector",
        "tolerations",
        "affinity",
        "imagePullSecrets",
    }
)
# ComponentExtensionSpec's own fields: not part of the pod
_COMPONENT_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "scaleMetricType",
        "autoScaling",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "logger",
        "batcher",
        "labels",
        "annotations",
        "deploymentStrategy",
        "name",
        "model",
        "storageUris",
        "storageContainerName",
        "workerSpec",
        "pipelineParallelSize",
        "tensorParallelSize",
        "art",
        *FRAMEWORKS,
    }
)


def _pod_plan(
    spec: PodSpecFields, labels: JSON | None = None, annotations: JSON | None = None
) -> PodPlan:
    dumped = _dump(spec)
    extra = {k: v for k, v in dumped.items() if k not in _POD_FIELDS | _COMPONENT_FIELDS}
    return PodPlan(
        service_account_name=spec.service_account_name,
        node_selector=dict(spec.node_selector) if spec.node_selector else None,
        tolerations=tuple(_dump(t) for t in spec.tolerations or []),
        affinity=_dump(spec.affinity) if spec.affinity is not None else None,
        image_pull_secrets=tuple(r.name for r in spec.image_pull_secrets or [] if r.name),
        volumes=tuple(_dump(v) for v in spec.volumes or []),
        labels=labels,
        annotations=annotations,
        extra=extra or None,
    )


def _component_pod(comp: ComponentExtensionSpec) -> PodPlan:
    return _pod_plan(
        comp, dict(comp.labels) if comp.labels else None,
        dict(comp.annotations) if comp.annotations else None,
    )  # fmt: skip


def _batcher(comp: ComponentExtensionSpec) -> BatcherPlan | None:
    b = comp.batcher
    if b is None:
        return None
    return BatcherPlan(b.max_batch_size, b.max_latency, b.timeout)


def _logger(comp: ComponentExtensionSpec, config: InferenceServiceConfig) -> LoggerPlan | None:
    lg = comp.logger
    if lg is None:
        return None
    return LoggerPlan(
        url=lg.url or config.logger.default_url or None,
        mode=lg.mode or "all",
        metadata_headers=tuple(lg.metadata_headers or ()),
    )


def _worker(pred: PredictorSpec, metadata: ObjectMeta, where: str) -> WorkerPlan | None:
    ws = pred.worker_spec
    if ws is None:
        return None
    container = (
        _container_plan(ws.containers[0], metadata, f"{where}.workerSpec")
        if ws.containers
        else None
    )
    return WorkerPlan(
        pipeline_parallel_size=ws.pipeline_parallel_size,
        tensor_parallel_size=ws.tensor_parallel_size,
        pod=_pod_plan(ws),
        container=container,
    )


def in_process_flags(
    container: ContainerPlan, batcher: BatcherPlan | None, logger: LoggerPlan | None
) -> tuple[str, ...]:
    """Wharf's model server batches and logs in-process: the flags that turn `batcher` and
    `logger` on (KServe's agent flags). Other containers get none (they need the agent)."""
    if not container.command or Path(container.command[0]).name != MODEL_SERVER_COMMAND:
        return ()
    flags: list[str] = []
    if batcher is not None and arg_value(container.args, "--enable_batcher") is None:
        flags.append("--enable_batcher=true")
        if batcher.max_batch_size is not None:
            flags.append(f"--max_batchsize={batcher.max_batch_size}")
        if batcher.max_latency_ms is not None:
            flags.append(f"--max_latency={batcher.max_latency_ms}")
    if logger is not None and logger.url and arg_value(container.args, "--log_url") is None:
        flags += [f"--log_url={logger.url}", f"--log_mode={logger.mode}"]
    return tuple(flags)


def _ports(fields: ContainerFields) -> tuple[int, int | None]:
    args = fields.args or []
    http = arg_value(args, "--http_port")
    grpc = arg_value(args, "--grpc_port")
    declared = [p.container_port for p in fields.ports or []]
    http_port = int(http) if http and http.isdigit() else (declared[0] if declared else HTTP_PORT)
    grpc_port = int(grpc) if grpc and grpc.isdigit() else None
    return http_port, grpc_port


def _scaling(comp: ComponentExtensionSpec, config: InferenceServiceConfig) -> ScalingPlan:
    lo = comp.min_replicas if comp.min_replicas is not None else 1
    hi = comp.max_replicas or 0
    # KServe: a maxReplicas below minReplicas is raised to minReplicas; 0 stays "unbounded"
    # (each control plane decides what unbounded means: the HPA's cap, or one local process)
    if hi:
        hi = max(hi, lo)
    metric = comp.scale_metric or DEFAULT_SCALE_METRIC
    target = comp.scale_target or comp.container_concurrency or config.scale_target(metric)
    return ScalingPlan(
        min_replicas=lo,
        max_replicas=hi,
        metric=metric,
        target=target,
        container_concurrency=comp.container_concurrency or None,
        metric_type=comp.scale_metric_type,
        auto_scaling=_dump(comp.auto_scaling) if comp.auto_scaling is not None else None,
    )


def _storage(ext: PredictorExtensionSpec | None, pred: PredictorSpec | None) -> list[StorageMount]:
    if ext is not None and ext.storage_uri:
        return [StorageMount(ext.storage_uri)]
    uris = (ext.storage_uris if ext is not None else None) or (pred.storage_uris if pred else None)
    return [StorageMount(u.uri, u.mount_path or MODEL_DIR) for u in uris or []]


def _with_env_storage(
    storage: list[StorageMount], env: Sequence[tuple[str, str]]
) -> list[StorageMount]:
    # KServe's custom containers name their model with the STORAGE_URI env var
    uri = dict(env).get(STORAGE_URI_ENV)
    return storage or ([StorageMount(uri)] if uri else [])


def _first_container(comp: ComponentExtensionSpec, where: str) -> Container:
    if not comp.containers:
        raise PlanError(f"{where}.containers: a container is required")
    return comp.containers[0]


def _predictor_plan(
    isvc: InferenceService,
    runtimes: Sequence[ServingRuntime],
    cluster_runtimes: Sequence[ClusterServingRuntime],
    config: InferenceServiceConfig,
) -> ComponentPlan:
    pred = isvc.spec.predictor
    where = f"InferenceService {isvc.name}: spec.predictor"
    model = predictor_model(pred)
    runtime_name: str | None = None
    runtime_kind: str | None = None
    if model is not None:
        runtime_name, spec, is_cluster = select_runtime(isvc, runtimes, cluster_runtimes)
        runtime_kind = "ClusterServingRuntime" if is_cluster else "ServingRuntime"
        if not spec.containers:
            raise PlanError(f"{runtime_kind} {runtime_name}: spec.containers is empty")
        fields = _merge_container(spec.containers[0], model)
        protocol = model.protocol_version or "v1"
        storage = _storage(model, pred)
        fmt: str | None = model.model_format.name
    else:
        fields = _first_container(pred, where)
        protocol = "v1"
        storage = []
        fmt = None
    container = _container_plan(fields, isvc.metadata, where)
    batcher, logger = _batcher(pred), _logger(pred, config)
    container = _with_flags(container, in_process_flags(container, batcher, logger))
    http_port, grpc_port = _ports(fields)
    return ComponentPlan(
        component="predictor",
        service_name=component_service_name(isvc.name, "predictor"),
        container=container,
        protocol=protocol,
        scaling=_scaling(pred, config),
        storage=tuple(_with_env_storage(storage, container.env)),
        http_port=http_port,
        grpc_port=grpc_port,
        runtime=runtime_name,
        runtime_kind=runtime_kind,
        model_format=fmt,
        canary_traffic_percent=pred.canary_traffic_percent,
        timeout_seconds=pred.timeout,
        pod=_component_pod(pred),
        batcher=batcher,
        logger=logger,
        worker=_worker(pred, isvc.metadata, where),
    )


def _downstream_plan(
    isvc: InferenceService,
    component: Literal["transformer", "explainer"],
    comp: ComponentExtensionSpec,
    predictor: ComponentPlan,
    config: InferenceServiceConfig,
) -> ComponentPlan:
    """A transformer or custom explainer: its container plus KServe's wiring args."""
    where = f"InferenceService {isvc.name}: spec.{component}"
    fields = _first_container(comp, where)
    namespace = isvc.metadata.namespace or DEFAULT_NAMESPACE
    # KServe's transformer/explainer reconcilers append these, pointing at the predictor Service
    wiring = [
        f"--model_name={isvc.name}",
        f"--predictor_host={predictor.service_name}.{namespace}",
        f"--http_port={HTTP_PORT}",
    ]
    if predictor.protocol != "v1":
        wiring.append(f"--predictor_protocol={predictor.protocol}")
    args = list(fields.args or [])
    wiring = [w for w in wiring if arg_value(args, w.split("=", 1)[0]) is None]
    merged = ContainerFields.model_validate(
        {**fields.model_dump(exclude_none=True), "args": [*args, *wiring]}
    )
    container = _container_plan(merged, isvc.metadata, where)
    batcher, logger = _batcher(comp), _logger(comp, config)
    container = _with_flags(container, in_process_flags(container, batcher, logger))
    http_port, grpc_port = _ports(merged)
    return ComponentPlan(
        component=component,
        service_name=component_service_name(isvc.name, component),
        container=container,
        protocol="v1",
        scaling=_scaling(comp, config),
        storage=tuple(_with_env_storage([], container.env)),
        http_port=http_port,
        grpc_port=grpc_port,
        canary_traffic_percent=comp.canary_traffic_percent,
        timeout_seconds=comp.timeout,
        pod=_component_pod(comp),
        batcher=batcher,
        logger=logger,
    )


def plan_inference_service(
    isvc: InferenceService,
    runtimes: Sequence[ServingRuntime] = (),
    cluster_runtimes: Sequence[ClusterServingRuntime] = (),
    *,
    domain: str | None = None,
    config: InferenceServiceConfig | None = None,
) -> ServicePlan:
    """The components of a defaulted InferenceService: predictor, then transformer, explainer.

    `config` is the `inferenceservice-config` in force (KServe's defaults when None); `domain`,
    when given, overrides its `ingress.ingressDomain`.

    Raises `NoSupportingRuntimeError` when no runtime fits the predictor's model and
    `PlanError` when a component cannot be run (no container, bad placeholder).
    """
    config = config or InferenceServiceConfig()
    namespace = isvc.metadata.namespace or DEFAULT_NAMESPACE
    predictor = _predictor_plan(isvc, runtimes, cluster_runtimes, config)
    components = [predictor]
    if isvc.spec.transformer is not None:
        components.append(
            _downstream_plan(isvc, "transformer", isvc.spec.transformer, predictor, config)
        )
    explainer = isvc.spec.explainer
    if explainer is not None:
        if explainer.art is not None and not explainer.containers:
            raise PlanError(
                f"InferenceService {isvc.name}: spec.explainer.art: ART explainers need a "
                "runtime image and are not planned; give the explainer a container"
            )
        components.append(_downstream_plan(isvc, "explainer", explainer, predictor, config))
    return ServicePlan(
        kind=isvc.kind,
        name=isvc.name,
        namespace=namespace,
        host=service_host(
            isvc.name,
            namespace,
            domain or config.ingress.ingress_domain,
            config.ingress.domain_template or DEFAULT_DOMAIN_TEMPLATE,
        ),
        scheme=config.ingress.url_scheme or "http",
        components=tuple(components),
        model_name=model_name(isvc),
    )


def _with_flags(container: ContainerPlan, flags: Sequence[str]) -> ContainerPlan:
    return replace(container, args=(*container.args, *flags)) if flags else container
