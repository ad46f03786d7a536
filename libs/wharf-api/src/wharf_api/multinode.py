"""A multi-node predictor (`predictor.workerSpec`), as KServe runs it (pure).

One group of `pipelineParallelSize` pods: the leader runs the predictor container (the Ray head
and the model server), each worker the runtime's `workerSpec` container with the service's own
workerSpec container over it. Sizes come from the InferenceService's workerSpec, else the
runtime's, else 1. Leader and workers get `TENSOR_PARALLEL_SIZE`, `PIPELINE_PARALLEL_SIZE` and
`HEAD_SVC`, the environment KServe's multi-node huggingface runtime reads.

The runtime's `workerSpec` is handled as the JSON the ServingRuntime writes (camelCase), and the
service's container is rendered by the caller (`render`), so this module stays free of any
Kubernetes object model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from wharf_api.plan import ComponentPlan, ContainerPlan, WorkerPlan
from wharf_api.resources.cluster_serving_runtime import ClusterServingRuntime
from wharf_api.resources.serving_runtime import ServingRuntime

JSON = dict[str, Any]
WORKER_CONTAINER_NAME = "worker-container"

__all__ = [
    "WORKER_CONTAINER_NAME",
    "MultiNodeError",
    "head_service",
    "multinode_env",
    "parallel_sizes",
    "runtime_worker_spec",
    "worker_container",
    "worker_pod_fields",
]


class MultiNodeError(ValueError):
    """A multi-node predictor cannot be built; the message names the field."""


def runtime_worker_spec(
    predictor: ComponentPlan,
    runtimes: Sequence[ServingRuntime],
    cluster_runtimes: Sequence[ClusterServingRuntime],
) -> JSON | None:
    """The selected runtime's `workerSpec` as JSON, for a multi-node predictor (else None)."""
    if predictor.worker is None or not predictor.runtime:
        return None
    pool: Sequence[ServingRuntime | ClusterServingRuntime] = (
        runtimes if predictor.runtime_kind == "ServingRuntime" else cluster_runtimes
    )
    found = next((r for r in pool if r.metadata.name == predictor.runtime), None)
    if found is None or found.spec.worker_spec is None:
        return None
    dumped: JSON = found.spec.worker_spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


def parallel_sizes(
    worker: WorkerPlan | None, runtime_worker: Mapping[str, Any] | None
) -> tuple[int, int]:
    """(tensor, pipeline) parallel sizes: the service's workerSpec, the runtime's, else 1."""
    rt = runtime_worker or {}
    tensor = (worker.tensor_parallel_size if worker else None) or rt.get("tensorParallelSize") or 1
    pipeline = (
        (worker.pipeline_parallel_size if worker else None) or rt.get("pipelineParallelSize") or 1
    )
    return int(tensor), int(pipeline)


def head_service(name: str) -> str:
    """The leader of group 0 through its group's headless Service (`NAME-0.NAME-0`); the
    runtime's worker completes it with the namespace."""
    return f"{name}-0.{name}-0"


def multinode_env(name: str, tensor: int, pipeline: int) -> tuple[tuple[str, str], ...]:
    """The environment leader and workers share (`name`: the component's workload name)."""
    return (
        ("TENSOR_PARALLEL_SIZE", str(tensor)),
        ("PIPELINE_PARALLEL_SIZE", str(pipeline)),
        ("HEAD_SVC", head_service(name)),
    )


def worker_container(
    component: str,
    worker: WorkerPlan | None,
    runtime_worker: Mapping[str, Any] | None,
    render: Callable[[ContainerPlan], JSON],
) -> JSON:
    """The worker container: the runtime's first workerSpec container, with the service's own
    (rendered by `render`) over it. The service's image falls back to the runtime's, its
    environment is merged by name (the service's wins), its ports are not the worker's, and the
    runtime's resources stay unless the service gives its own."""
    rt = runtime_worker or {}
    runtime_containers = rt.get("containers") or []
    base: JSON = dict(runtime_containers[0] if runtime_containers else {})
    own = worker.container if worker is not None else None
    if own is not None:
        rendered = render(replace(own, image=own.image or base.get("image")))
        env = {e["name"]: e for e in [*(base.get("env") or []), *(rendered.get("env") or [])]}
        base = {**base, **{k: v for k, v in rendered.items() if k != "ports"}}
        if env:
            base["env"] = list(env.values())
        if not own.resources and runtime_containers:
            base["resources"] = runtime_containers[0].get("resources") or base["resources"]
    if not base.get("image"):
        raise MultiNodeError(
            f"spec.{component}.workerSpec: no worker container image "
            "(give workerSpec.containers, or use a runtime with a workerSpec)"
        )
    base.setdefault("name", WORKER_CONTAINER_NAME)
    return base


def worker_pod_fields(worker: WorkerPlan, runtime_worker: Mapping[str, Any] | None) -> JSON:
    """The worker pod's own fields: the service's placement, the runtime's volumes then the
    service's."""
    pod = worker.pod
    out: JSON = {}
    if pod.node_selector:
        out["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        out["tolerations"] = list(pod.tolerations)
    if pod.affinity:
        out["affinity"] = pod.affinity
    volumes = [*((runtime_worker or {}).get("volumes") or []), *pod.volumes]
    if volumes:
        out["volumes"] = volumes
    return out
