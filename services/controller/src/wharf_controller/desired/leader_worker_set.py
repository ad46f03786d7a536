"""A multi-node predictor (`predictor.workerSpec`) as a LeaderWorkerSet, pure.

One group of `pipelineParallelSize` pods: the leader runs the predictor container (the Ray head
and the model server of the multi-node runtime), each worker the worker container (a Ray worker
joining the head), one pipeline stage per pod, `tensorParallelSize` ranks in each. KServe's
rules (the sizes, the shared environment, the worker container merge and the worker pod's own
fields) are `wharf_api.multinode`; this module writes the LeaderWorkerSet. The group is
recreated when one of its pods restarts (a pipeline cannot lose a stage), and it is not
autoscaled (KServe requires `autoscalerClass: none` for multi-node): it runs `minReplicas`
groups.

The per-replica subdomain policy gives each group its own headless Service
(`NAME-predictor-G`), so the component's ClusterIP Service keeps the name `NAME-predictor`; the
head of group 0 is `NAME-predictor-0.NAME-predictor-0` (HEAD_SVC), which the runtime's worker
completes with the namespace.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from wharf_api.multinode import multinode_env, parallel_sizes
from wharf_api.names import COMPONENT_LABEL, ISVC_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from wharf_api.plan import ComponentPlan
from wharf_controller.desired.meta import child

JSON = dict[str, Any]

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
WORKER_COMPONENT = "worker"


def _with_env(container: JSON, env: list[JSON]) -> JSON:
    names = {e["name"] for e in env}
    out = dict(container)
    out["env"] = [e for e in container.get("env") or [] if e["name"] not in names] + env
    return out


def worker_labels(isvc_name: str) -> dict[str, str]:
    """Worker pods are not the component's serving pods: the Service must not select them."""
    return {ISVC_LABEL: isvc_name, COMPONENT_LABEL: WORKER_COMPONENT, MANAGED_BY_LABEL: MANAGED_BY}


def expected_leader_worker_set(
    plan: ComponentPlan,
    isvc_name: str,
    deployment: JSON,
    worker_container: JSON,
    worker_pod: Mapping[str, Any],
    runtime_worker: Mapping[str, Any] | None,
) -> JSON:
    """The LeaderWorkerSet of a multi-node predictor, from the Deployment Standard mode would
    render for its leader (`deployment`: metadata and pod template reused), the worker's
    container (already merged and rendered) and the worker pod's own fields."""
    meta = deployment["metadata"]
    name = meta["name"]
    tensor, pipeline = parallel_sizes(plan.worker, runtime_worker)
    env = [{"name": k, "value": v} for k, v in multinode_env(name, tensor, pipeline)]
    leader = deployment["spec"]["template"]
    leader_spec = dict(leader["spec"])
    leader_spec["containers"] = [_with_env(c, env) for c in leader_spec["containers"]]
    shared = {
        k: v
        for k, v in leader_spec.items()
        if k in ("initContainers", "volumes", "nodeSelector", "tolerations", "affinity",
                 "imagePullSecrets", "serviceAccountName", "automountServiceAccountToken")
    }  # fmt: skip
    mounts = [m for c in leader_spec["containers"] for m in c.get("volumeMounts") or []]
    worker = _with_env(worker_container, env)
    model_mounts = [m for m in mounts if m.get("mountPath", "").startswith("/mnt/models")]
    if model_mounts:
        have = {m["mountPath"] for m in worker.get("volumeMounts") or []}
        worker["volumeMounts"] = [
            *(worker.get("volumeMounts") or []),
            *(m for m in model_mounts if m["mountPath"] not in have),
        ]
    worker_spec: JSON = {**shared, **dict(worker_pod), "containers": [worker]}
    volumes = {
        v["name"]: v for v in [*(shared.get("volumes") or []), *(worker_pod.get("volumes") or [])]
    }
    if volumes:
        worker_spec["volumes"] = list(volumes.values())
    obj = child(LWS_API_VERSION, "LeaderWorkerSet", name, meta["namespace"], meta["labels"],
                (meta.get("ownerReferences") or [None])[0])  # fmt: skip
    obj["spec"] = copy.deepcopy({
        "replicas": max(1, plan.scaling.min_replicas),
        "startupPolicy": "LeaderCreated",
        "networkConfig": {"subdomainPolicy": "UniquePerReplica"},
        "leaderWorkerTemplate": {
            "size": pipeline,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": {"metadata": leader["metadata"], "spec": leader_spec},
            "workerTemplate": {
                "metadata": {"labels": worker_labels(isvc_name)},
                "spec": worker_spec,
            },
        },
    })  # fmt: skip
    return obj
