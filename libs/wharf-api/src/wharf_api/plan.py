"""The plan of an InferenceService: its components, each with the container to run, its storage
and ports, and its scaling and traffic settings.

The controller renders a plan as Kubernetes objects and `wharf up` as local processes, so both
make the same decisions: which runtime, which container and args (runtime args first, then the
InferenceService's, with KServe's `{{.Name}}` placeholders filled in), which storage URI mounts at
`/mnt/models`, and how the transformer reaches the predictor. Ports and paths in a plan are those
of the container (HTTP 8080, gRPC 8081, `/mnt/models`); `rebind_args` rewrites them for a place
where every process needs its own port and folder.

Pure: no I/O. `plan_inference_service` expects a defaulted, validated object.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from wharf_api.defaulting import predictor_model
from wharf_api.k8s import Container, ContainerFields, EnvVar
from wharf_api.resources import (
    ClusterServingRuntime,
    InferenceService,
    ObjectMeta,
    ServingRuntime,
)
from wharf_api.resources.inference_service import (
    ComponentExtensionSpec,
    PredictorExtensionSpec,
    PredictorSpec,
)
from wharf_api.runtime_selection import select_runtime

ComponentName = Literal["predictor", "transformer", "explainer"]

MODEL_DIR = "/mnt/models"
HTTP_PORT = 8080
GRPC_PORT = 8081
DEFAULT_DOMAIN = "example.com"
DEFAULT_NAMESPACE = "default"
DEFAULT_SCALE_METRIC = "concurrency"
# Knative's container-concurrency-target-default and requests-per-second-target-default
DEFAULT_SCALE_TARGETS: Mapping[str, int] = {"concurrency": 100, "rps": 200, "cpu": 80, "memory": 80}
STORAGE_URI_ENV = "STORAGE_URI"

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_INDEX = re.compile(r'^index\s+\.(Labels|Annotations)\s+"([^"]*)"$')
_DOTTED = re.compile(r"^\.(Name|Namespace)$|^\.(Labels|Annotations)\.([A-Za-z0-9_./-]+)$")


class PlanError(ValueError):
    """The object cannot be planned; the message names the object and the field."""


@dataclass(frozen=True)
class ContainerPlan:
    """One container as it will run: after runtime merge and placeholder substitution."""

    name: str
    image: str | None
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ScalingPlan:
    min_replicas: int
    max_replicas: int
    metric: str
    target: int
    container_concurrency: int | None = None


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

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def component(self, name: ComponentName) -> ComponentPlan | None:
        return next((c for c in self.components if c.component == name), None)

    @property
    def entry(self) -> ComponentPlan:
        """The component that receives the service's requests (transformer, else predictor)."""
        return self.component("transformer") or self.components[0]


def service_host(name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """KServe's default domain template `{{.Name}}-{{.Namespace}}.{{.IngressDomain}}`."""
    return f"{name}-{namespace}.{domain}"


def component_service_name(name: str, component: ComponentName) -> str:
    """`{isvc}-predictor`, `{isvc}-transformer`, `{isvc}-explainer` (KServe's names)."""
    return f"{name}-{component}"


def substitute_placeholders(text: str, metadata: ObjectMeta, *, where: str = "") -> str:
    """Fill KServe's Go-template placeholders from the object's metadata.

    Supported: `{{.Name}}`, `{{.Namespace}}`, `{{.Labels.key}}`, `{{.Annotations.key}}` and
    `{{index .Labels "key"}}`; a missing label or annotation becomes an empty string, as Go's
    templates print a missing map key; anything else is an error naming `where`.
    """

    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        dotted = _DOTTED.match(expr)
        indexed = _INDEX.match(expr)
        if dotted and dotted.group(1) == "Name":
            return metadata.name or ""
        if dotted and dotted.group(1) == "Namespace":
            return metadata.namespace or DEFAULT_NAMESPACE
        if dotted or indexed:
            table, key = dotted.group(2, 3) if dotted else indexed.group(1, 2)  # type: ignore[union-attr]
            mapping = metadata.labels if table == "Labels" else metadata.annotations
            return (mapping or {}).get(key, "")
        raise PlanError(f"{where}: unsupported placeholder {match.group(0)!r}")

    return _PLACEHOLDER.sub(value, text)


def _env_pairs(env: Sequence[EnvVar] | None) -> list[tuple[str, str]]:
    # valueFrom (secrets, field refs) has no meaning without a cluster; only literal values plan
    return [(e.name, e.value or "") for e in env or [] if e.value_from is None]


def _merge_env(base: list[tuple[str, str]], over: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged = dict(base)
    merged.update(over)
    return list(merged.items())


def _merge_container(runtime: ContainerFields, override: ContainerFields | None) -> ContainerFields:
    """KServe's MergeRuntimeContainers: the InferenceService's fields win, args concatenate."""
    if override is None:
        return runtime
    return ContainerFields(
        name=override.name or runtime.name,
        image=override.image or runtime.image,
        command=override.command or runtime.command,
        args=[*(runtime.args or []), *(override.args or [])],
        env=[
            EnvVar(name=k, value=v)
            for k, v in _merge_env(_env_pairs(runtime.env), _env_pairs(override.env))
        ],
        ports=override.ports or runtime.ports,
        resources=override.resources or runtime.resources,
        volume_mounts=override.volume_mounts or runtime.volume_mounts,
    )


def _container_plan(fields: ContainerFields, metadata: ObjectMeta, where: str) -> ContainerPlan:
    def sub(text: str, part: str) -> str:
        return substitute_placeholders(text, metadata, where=f"{where}.{part}")

    return ContainerPlan(
        name=fields.name or "kserve-container",
        image=fields.image,
        command=tuple(sub(c, "command") for c in fields.command or []),
        args=tuple(sub(a, "args") for a in fields.args or []),
        env=tuple((k, sub(v, "env")) for k, v in _env_pairs(fields.env)),
    )


def arg_value(args: Sequence[str], flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in `args`, else None (last one wins)."""
    found: str | None = None
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            found = arg[len(flag) + 1 :]
        elif arg == flag and i + 1 < len(args):
            found = args[i + 1]
    return found


def _ports(fields: ContainerFields) -> tuple[int, int | None]:
    args = fields.args or []
    http = arg_value(args, "--http_port")
    grpc = arg_value(args, "--grpc_port")
    declared = [p.container_port for p in fields.ports or []]
    http_port = int(http) if http and http.isdigit() else (declared[0] if declared else HTTP_PORT)
    grpc_port = int(grpc) if grpc and grpc.isdigit() else None
    return http_port, grpc_port


def _scaling(comp: ComponentExtensionSpec) -> ScalingPlan:
    lo = comp.min_replicas if comp.min_replicas is not None else 1
    hi = comp.max_replicas or 0
    # KServe: a maxReplicas below minReplicas (0 = unset) is raised to minReplicas; locally a
    # replica is a process, so "unbounded" means one replica unless the manifest asks for more
    hi = max(hi, lo, 1)
    metric = comp.scale_metric or DEFAULT_SCALE_METRIC
    target = comp.scale_target or comp.container_concurrency or DEFAULT_SCALE_TARGETS[metric]
    return ScalingPlan(
        min_replicas=lo,
        max_replicas=hi,
        metric=metric,
        target=target,
        container_concurrency=comp.container_concurrency or None,
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
    http_port, grpc_port = _ports(fields)
    return ComponentPlan(
        component="predictor",
        service_name=component_service_name(isvc.name, "predictor"),
        container=container,
        protocol=protocol,
        scaling=_scaling(pred),
        storage=tuple(_with_env_storage(storage, container.env)),
        http_port=http_port,
        grpc_port=grpc_port,
        runtime=runtime_name,
        runtime_kind=runtime_kind,
        model_format=fmt,
        canary_traffic_percent=pred.canary_traffic_percent,
        timeout_seconds=pred.timeout,
    )


def _downstream_plan(
    isvc: InferenceService,
    component: Literal["transformer", "explainer"],
    comp: ComponentExtensionSpec,
    predictor: ComponentPlan,
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
    http_port, grpc_port = _ports(merged)
    return ComponentPlan(
        component=component,
        service_name=component_service_name(isvc.name, component),
        container=container,
        protocol="v1",
        scaling=_scaling(comp),
        storage=tuple(_with_env_storage([], container.env)),
        http_port=http_port,
        grpc_port=grpc_port,
        canary_traffic_percent=comp.canary_traffic_percent,
        timeout_seconds=comp.timeout,
    )


def plan_inference_service(
    isvc: InferenceService,
    runtimes: Sequence[ServingRuntime] = (),
    cluster_runtimes: Sequence[ClusterServingRuntime] = (),
    *,
    domain: str = DEFAULT_DOMAIN,
) -> ServicePlan:
    """The components of a defaulted InferenceService: predictor, then transformer, explainer.

    Raises `NoSupportingRuntimeError` when no runtime fits the predictor's model and
    `PlanError` when a component cannot be run (no container, bad placeholder).
    """
    namespace = isvc.metadata.namespace or DEFAULT_NAMESPACE
    predictor = _predictor_plan(isvc, runtimes, cluster_runtimes)
    components = [predictor]
    if isvc.spec.transformer is not None:
        components.append(_downstream_plan(isvc, "transformer", isvc.spec.transformer, predictor))
    explainer = isvc.spec.explainer
    if explainer is not None:
        if explainer.art is not None and not explainer.containers:
            raise PlanError(
                f"InferenceService {isvc.name}: spec.explainer.art: ART explainers need a "
                "runtime image and are not planned; give the explainer a container"
            )
        components.append(_downstream_plan(isvc, "explainer", explainer, predictor))
    return ServicePlan(
        kind=isvc.kind,
        name=isvc.name,
        namespace=namespace,
        host=service_host(isvc.name, namespace, domain),
        components=tuple(components),
    )


def _rebind_flag(args: list[str], flag: str, value: str) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg.startswith(flag + "="):
            out.append(f"{flag}={value}")
        elif arg == flag and i + 1 < len(args):
            out += [flag, value]
            skip = True
        else:
            out.append(arg)
    return out


def rebind_args(
    args: Sequence[str],
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    model_dirs: Mapping[str, str] | None = None,
    predictor_host: str | None = None,
) -> tuple[str, ...]:
    """Container args for a place where ports and mount paths differ from the container's.

    `--http_port`, `--grpc_port` and `--predictor_host` get the new values (in either
    `--flag=v` or `--flag v` form) and every arg starting with a mount path (`/mnt/models`)
    gets the local folder instead; other args are kept as they are.
    """
    out = list(args)
    for flag, value in (
        ("--http_port", http_port),
        ("--grpc_port", grpc_port),
        ("--predictor_host", predictor_host),
    ):
        if value is not None:
            out = _rebind_flag(out, flag, str(value))
    for mount, local in sorted((model_dirs or {}).items(), key=lambda kv: -len(kv[0])):
        out = [_replace_mount(a, mount, local) for a in out]
    return tuple(out)


def _replace_mount(arg: str, mount: str, local: str) -> str:
    prefix, sep, value = arg.partition("=")
    target = value if sep else prefix
    if target == mount or target.startswith(mount.rstrip("/") + "/"):
        target = local + target[len(mount.rstrip("/")) :]
        return f"{prefix}={target}" if sep else target
    return arg
