"""What an LLM plan is made of: workloads, pods, containers, engine settings, storage and the
router parts. Frozen dataclasses of plain values (JSON-like dicts where Kubernetes' own shapes
are kept), so both control planes can read them and tests can pin them as YAML. Pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from wharf_api.llm.combine import AppliedConfig
from wharf_api.llm.worker_cli import Role

__all__ = [
    "MAIN_CONTAINER",
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
]

JSON = dict[str, Any]
MAIN_CONTAINER = "main"


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
