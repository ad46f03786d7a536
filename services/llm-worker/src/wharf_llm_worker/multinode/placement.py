"""Where the ranks go: one bundle per node, spread strictly, and which nodes are there. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wharf_llm_worker.multinode.spec import Device, GroupSpec, Layout

# Each node advertises one unit of a resource named after its rank; bundle r asks for it, so
# rank r lands on the node started with that rank, and no second group can take the node.
NODE_RANK_RESOURCE_PREFIX = "wharf-node-rank-"
STRATEGY = "STRICT_SPREAD"


def node_rank_resource(rank: int) -> str:
    return f"{NODE_RANK_RESOURCE_PREFIX}{rank}"


@dataclass(frozen=True)
class NodeView:
    """A Ray node as the supervisor sees it (from ``ray.nodes()``)."""

    node_id: str
    address: str
    alive: bool
    resources: Mapping[str, float]


def node_rank(node: NodeView) -> int | None:
    ranks = [
        int(name.removeprefix(NODE_RANK_RESOURCE_PREFIX))
        for name in node.resources
        if name.startswith(NODE_RANK_RESOURCE_PREFIX)
        and name.removeprefix(NODE_RANK_RESOURCE_PREFIX).isdigit()
    ]
    return ranks[0] if len(ranks) == 1 else None


def rank_gpus(spec: GroupSpec) -> int:
    """GPUs each rank's actor holds: with vLLM's own ranks on GPUs, the node's stage (Ray then
    sets CUDA_VISIBLE_DEVICES for the rank); with the Ray executor none, since vLLM reserves
    its one-GPU bundles itself and a group holding them would starve vLLM's placement group."""
    if spec.layout is Layout.MULTIPROCESS and spec.device is Device.GPU:
        return spec.ranks_per_node
    return 0


def placement_bundles(spec: GroupSpec) -> list[dict[str, float]]:
    """One bundle per node, rank order. No CPUs: each rank's process takes its whole node."""
    gpus = rank_gpus(spec)
    return [
        {node_rank_resource(rank): 1.0, **({"GPU": float(gpus)} if gpus else {})}
        for rank in range(spec.nnodes)
    ]


@dataclass(frozen=True)
class Membership:
    """Which expected ranks have a live node."""

    joined: dict[int, NodeView]
    missing: list[int]
    duplicates: dict[int, list[str]]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.duplicates


def membership(nodes: Iterable[NodeView], nnodes: int) -> Membership:
    by_rank: dict[int, list[NodeView]] = {}
    for node in nodes:
        rank = node_rank(node)
        if node.alive and rank is not None and 0 <= rank < nnodes:
            by_rank.setdefault(rank, []).append(node)
    joined = {rank: found[0] for rank, found in by_rank.items()}
    duplicates = {
        rank: [n.address for n in found] for rank, found in by_rank.items() if len(found) > 1
    }
    missing = [rank for rank in range(nnodes) if rank not in by_rank]
    return Membership(joined=joined, missing=missing, duplicates=duplicates)


def describe_missing(member: Membership, nnodes: int, waited_s: float) -> str:
    """The error when the group cannot start: how many joined, which ranks are missing."""
    parts = [
        f"{len(member.joined)} of {nnodes} nodes joined the Ray cluster within {waited_s:.0f} s"
    ]
    if member.missing:
        names = ", ".join(str(r) for r in member.missing)
        parts.append(f"missing node rank(s): {names}")
    for rank, addresses in sorted(member.duplicates.items()):
        parts.append(f"node rank {rank} joined twice (from {', '.join(addresses)})")
    if member.joined:
        present = ", ".join(f"{r}@{n.address}" for r, n in sorted(member.joined.items()))
        parts.append(f"present: {present}")
    return "; ".join(parts)


def gpu_shortfall(member: Membership, spec: GroupSpec) -> list[str]:
    """Nodes that cannot hold their ranks (a pipeline stage's tensor_parallel_size GPUs, times
    the local data-parallel engines) on a GPU group."""
    if spec.device is not Device.GPU:
        return []
    return [
        f"node rank {rank} ({node.address}) has {node.resources.get('GPU', 0):g} GPU(s), "
        f"a node needs {spec.ranks_per_node}"
        for rank, node in sorted(member.joined.items())
        if node.resources.get("GPU", 0) < spec.ranks_per_node
    ]
