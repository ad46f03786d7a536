"""The status of a LocalModelCache (or LocalModelNamespaceCache) from the LocalModelNodes of its
node groups' nodes (pure), in KServe's terms: `nodeStatus` per node, `copies` counted over the
nodes, and the InferenceServices served from it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wharf_controller.desired.model_cache import Cache

JSON = dict[str, Any]

# the agent's per-model value -> KServe's per-node value
_NODE_STATUS = {
    "ModelDownloadPending": "NodeDownloadPending",
    "ModelDownloading": "NodeDownloading",
    "ModelDownloaded": "NodeDownloaded",
    "ModelDownloadError": "NodeDownloadError",
}


def _node_ready(node: Mapping[str, Any] | None) -> bool:
    if node is None:
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    # a node with no conditions yet (just registered) is not counted as down
    return ready is None or ready.get("status") == "True"


def cache_status(
    cache: Cache,
    node_names: Sequence[str],
    nodes: Mapping[str, Mapping[str, Any]],
    local_model_nodes: Mapping[str, Mapping[str, Any]],
    served_by: Iterable[tuple[str, str]] = (),
) -> JSON:
    """`node_names`: the nodes of the cache's groups; `nodes` and `local_model_nodes` by name;
    `served_by`: (namespace, name) of the InferenceServices that read from the cache."""
    per_node: dict[str, str] = {}
    for name in sorted(set(node_names)):
        if not _node_ready(nodes.get(name)):
            per_node[name] = "NodeNotReady"
            continue
        lmn = local_model_nodes.get(name) or {}
        model_status = (lmn.get("status") or {}).get("modelStatus") or {}
        # the agent keys by model name; a namespace cache's model shares its folder name
        value = model_status.get(cache.name)
        per_node[name] = _NODE_STATUS.get(value or "", "NodeDownloadPending")
    status: JSON = {
        "nodeStatus": per_node,
        "copies": {
            "total": len(per_node),
            "available": sum(v == "NodeDownloaded" for v in per_node.values()),
            "failed": sum(v == "NodeDownloadError" for v in per_node.values()),
        },
    }
    services = sorted(set(served_by))
    if services:
        status["inferenceServices"] = [{"namespace": ns, "name": n} for ns, n in services]
    return status
