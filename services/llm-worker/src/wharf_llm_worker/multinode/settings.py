"""`wharf-llm-worker multinode` flags and the LeaderWorkerSet environment -> settings. Pure.

The command takes the single worker's role flags too (`--role`, `--served-model-name`,
`--kv-transfer`, `--lora`, `--drain-timeout`, ...) so that one command line, the one an
LLMInferenceService's multi-node presets give every pod of a group, starts a leader or a
joining node. The leader applies them to its ranks with the worker's own decisions
(`wharf_llm_worker.launch.role_flags`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wharf_llm_worker.launch import (
    DEFAULT_DRAIN_TIMEOUT_S,
    KV_TRANSFERS,
    ROLES,
    LaunchError,
    LoraAdapter,
    Role,
    RoleFlags,
    WorkerOptions,
    role_flags,
)
from wharf_llm_worker.multinode.parallel_flags import (
    ParallelFlagError,
    ParallelFlags,
    lift_parallel_flags,
    merge,
)
from wharf_llm_worker.multinode.rayargs import (
    DEFAULT_RAY_PORT,
    RayArgsError,
    RayNodeConfig,
    split_address,
)
from wharf_llm_worker.multinode.restart import RestartPolicy
from wharf_llm_worker.multinode.spec import (
    DEFAULT_DATA_PARALLEL_RPC_PORT,
    Device,
    GroupSpec,
    Layout,
    SpecError,
)

# The LeaderWorkerSet convention (and the controller's): the leader's address, the group size
# and this pod's index in the group (0 is the leader).
LWS_LEADER_ADDRESS = "LWS_LEADER_ADDRESS"
LWS_GROUP_SIZE = "LWS_GROUP_SIZE"
LWS_WORKER_INDEX = "LWS_WORKER_INDEX"
TOKEN_FILE_ENV = "RAY_AUTH_TOKEN_PATH"
# After the ranks have drained: stopping them and the Ray node (`ray stop` of this node).
RAY_STOP_ALLOWANCE_S = 15


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    node: RayNodeConfig
    spec: GroupSpec | None  # the leader's group; None on a joining node
    log_dir: Path
    token_file: Path | None
    start_timeout_s: float
    wait_timeout_s: float
    ready_timeout_s: float
    policy: RestartPolicy
    role: Role = "both"
    served_model_name: str | None = None
    # seconds a supervisor allows between SIGTERM and SIGKILL: the serving rank's drain, its
    # teardown, and stopping the Ray node
    kill_timeout_s: int = DEFAULT_DRAIN_TIMEOUT_S + RAY_STOP_ALLOWANCE_S
    dry_run: bool = False

    @property
    def is_leader(self) -> bool:
        return self.node.is_head


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wharf-llm-worker multinode",
        description=(
            "One node of a multi-node LLM engine on Ray. The leader starts the Ray head, waits "
            "for the other nodes, places one rank per node and restarts the group together when "
            "a rank dies; the other nodes join. vLLM arguments follow `--`."
        ),
    )
    role = p.add_mutually_exclusive_group()
    role.add_argument("--leader", action="store_true", help="start the Ray head (node rank 0)")
    role.add_argument("--join", metavar="HOST[:PORT]", help="join the leader's Ray head")
    p.add_argument("--node-rank", type=int, help=f"this node's rank (default ${LWS_WORKER_INDEX})")
    p.add_argument("--nnodes", type=int, help=f"nodes in the group (default ${LWS_GROUP_SIZE})")
    p.add_argument("--layout", choices=[m.value for m in Layout], default=Layout.MULTIPROCESS)
    p.add_argument("--device", choices=[d.value for d in Device])
    p.add_argument("--model", help="model path or id (leader)")
    p.add_argument("--tensor-parallel-size", type=int, help="ranks per node (default 1)")
    p.add_argument(
        "--pipeline-parallel-size", type=int, help="must equal --nnodes (one stage per node)"
    )
    p.add_argument("--data-parallel-size", type=int, help="engines in the group (data parallel)")
    p.add_argument("--data-parallel-size-local", type=int, help="engines per node")
    p.add_argument("--data-parallel-rpc-port", type=int, help="vLLM's data-parallel RPC port")
    worker = p.add_argument_group("the worker's role (as `wharf-llm-worker` takes them)")
    worker.add_argument("--role", choices=ROLES, default="both")
    worker.add_argument("--served-model-name", help="the model's name in the API (default --model)")
    worker.add_argument("--kv-transfer", choices=KV_TRANSFERS, default=None)
    worker.add_argument("--kv-side-channel-port", type=int)
    worker.add_argument("--kv-side-channel-host")
    worker.add_argument("--kv-shared-path")
    worker.add_argument("--lora", action="append", default=[], metavar="NAME=PATH")
    worker.add_argument("--drain-timeout", type=int, default=DEFAULT_DRAIN_TIMEOUT_S)
    p.add_argument(
        "--dry-run", action="store_true", help="print the settings and ranks as JSON and exit"
    )
    p.add_argument("--host", default="0.0.0.0", help="the leader's API host")
    p.add_argument("--port", type=int, default=8000, help="the leader's API port")
    p.add_argument("--master-port", type=int, default=29500, help="vLLM's rank-0 TCP store")
    p.add_argument("--ray-port", type=int, default=DEFAULT_RAY_PORT, help="the Ray head's port")
    p.add_argument("--node-ip", help="this node's address as Ray should advertise it")
    p.add_argument("--ports-base", type=int, help="derive Ray's node-local ports from this one")
    p.add_argument("--ray-temp-dir", help="Ray's temp root (short absolute path)")
    p.add_argument("--num-cpus", type=int, help="CPUs this node offers to Ray")
    p.add_argument("--object-store-memory-mb", type=int, default=512)
    p.add_argument("--log-dir", default="wharf-multinode-logs", help="per-rank logs and status")
    p.add_argument("--auth-token-file", help=f"the cluster's Ray token (default ${TOKEN_FILE_ENV})")
    p.add_argument(
        "--start-timeout", type=float, default=240.0, help="seconds for this Ray node to start"
    )
    p.add_argument("--wait-timeout", type=float, default=300.0, help="seconds to wait for nodes")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for /health")
    p.add_argument("--max-restarts", type=int, default=5, help="group restarts per window")
    p.add_argument("--restart-window", type=float, default=600.0, help="seconds")
    p.add_argument("engine_args", nargs="*", help="vLLM arguments, after --")
    return p


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 6:
        raise SettingsError(f"${name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def _role(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[bool, str | None, int]:
    """(is_leader, join address, node rank) from the flags, else the LeaderWorkerSet env."""
    index = _env_int(environ, LWS_WORKER_INDEX)
    if args.leader:
        is_leader, join = True, None
    elif args.join:
        is_leader, join = False, args.join
    elif index is not None:
        is_leader = index == 0
        join = None if is_leader else environ.get(LWS_LEADER_ADDRESS, "").strip() or None
        if not is_leader and join is None:
            raise SettingsError(f"${LWS_WORKER_INDEX}={index} but ${LWS_LEADER_ADDRESS} is unset")
    else:
        raise SettingsError(
            "give --leader or --join HOST[:PORT] "
            f"(or set ${LWS_WORKER_INDEX} and ${LWS_LEADER_ADDRESS})"
        )
    rank = args.node_rank if args.node_rank is not None else (0 if is_leader else index)
    if rank is None:
        raise SettingsError(f"--node-rank is required with --join (or set ${LWS_WORKER_INDEX})")
    if is_leader and rank != 0:
        raise SettingsError(f"the leader is node rank 0, got --node-rank {rank}")
    if not is_leader and rank == 0:
        raise SettingsError("a joining node needs a --node-rank above 0 (rank 0 is the leader)")
    return is_leader, join, rank


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    argv = list(argv)
    # `--` ends the group's flags even when the first engine argument looks like one of them
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.engine_args = [*args.engine_args, *argv[cut + 1 :]]
    is_leader, join, rank = _role(args, environ)
    nnodes = args.nnodes if args.nnodes is not None else _env_int(environ, LWS_GROUP_SIZE)
    token = args.auth_token_file or environ.get(TOKEN_FILE_ENV, "").strip() or None
    served = args.served_model_name
    try:
        flags = _role_flags(args) if args.model else None
        head_address = None
        if join is not None:
            host, port = split_address(join, args.ray_port)
            head_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        node = RayNodeConfig(
            node_rank=rank,
            ray_port=args.ray_port,
            head_address=head_address,
            node_ip=args.node_ip,
            ports_base=args.ports_base,
            temp_dir=args.ray_temp_dir,
            num_cpus=args.num_cpus,
            object_store_mb=args.object_store_memory_mb,
        )
        spec = None
        if is_leader:
            if nnodes is None:
                raise SettingsError(
                    f"--nnodes is required on the leader (or set ${LWS_GROUP_SIZE})"
                )
            if not args.model:
                raise SettingsError("--model is required on the leader")
            layout = Layout(args.layout)
            device = Device(
                args.device
                or (Device.GPU.value if layout is Layout.RAY_EXECUTOR else Device.CPU.value)
            )
            lifted, engine_args = lift_parallel_flags(args.engine_args)
            data, local, rpc = _data_parallel(args, lifted, nnodes)
            assert flags is not None
            spec = GroupSpec(
                model=args.model,
                nnodes=nnodes,
                layout=layout,
                device=device,
                tensor_parallel_size=(
                    merge("--tensor-parallel-size", args.tensor_parallel_size, lifted.tensor) or 1
                ),
                port=args.port,
                host=args.host,
                master_port=args.master_port,
                engine_args=engine_args,
                data_parallel_size=data,
                data_parallel_size_local=local,
                data_parallel_rpc_port=DEFAULT_DATA_PARALLEL_RPC_PORT if rpc is None else rpc,
                server_args=flags.server_args,
                rank_args=flags.engine_args,
                env=tuple(sorted(flags.env.items())),
            )
        elif nnodes is not None and rank >= nnodes:
            raise SettingsError(f"--node-rank {rank} is outside a group of {nnodes} nodes")
        policy = RestartPolicy(max_restarts=args.max_restarts, window_s=args.restart_window)
    except (RayArgsError, SpecError, LaunchError, ParallelFlagError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(str(exc)) from exc
    for name, value in (
        ("--wait-timeout", args.wait_timeout),
        ("--ready-timeout", args.ready_timeout),
    ):
        if not 0 < value <= 86400:
            raise SettingsError(f"{name} must be between 0 and 86400 seconds, got {value}")
    return Settings(
        node=node,
        spec=spec,
        log_dir=Path(args.log_dir),
        token_file=Path(token) if token else None,
        start_timeout_s=args.start_timeout,
        wait_timeout_s=args.wait_timeout,
        ready_timeout_s=args.ready_timeout,
        policy=policy,
        role=args.role,
        served_model_name=served or args.model,
        kill_timeout_s=(flags.kill_timeout_s if flags else args.drain_timeout)
        + RAY_STOP_ALLOWANCE_S,
        dry_run=bool(args.dry_run),
    )


def _role_flags(args: argparse.Namespace) -> RoleFlags:
    """The worker's decisions for this role (validated as `wharf-llm-worker` validates them)."""
    options = WorkerOptions(
        role=args.role,
        model=args.model,
        served_model_name=args.served_model_name or args.model,
        port=args.port,
        host=args.host,
        kv_transfer=args.kv_transfer,
        kv_side_channel_port=args.kv_side_channel_port,
        kv_side_channel_host=args.kv_side_channel_host,
        kv_shared_path=args.kv_shared_path,
        lora=tuple(LoraAdapter.parse(text) for text in args.lora),
        drain_timeout_s=args.drain_timeout,
        extra_args=tuple(args.engine_args),
    )
    return role_flags(options)


def _data_parallel(
    args: argparse.Namespace, lifted: ParallelFlags, nnodes: int
) -> tuple[int | None, int | None, int | None]:
    """The group's data-parallel size, local size and RPC port; the pipeline size checked
    against the layout."""
    data = merge("--data-parallel-size", args.data_parallel_size, lifted.data)
    local = merge("--data-parallel-size-local", args.data_parallel_size_local, lifted.data_local)
    rpc = merge("--data-parallel-rpc-port", args.data_parallel_rpc_port, lifted.data_rpc_port)
    pipeline = merge("--pipeline-parallel-size", args.pipeline_parallel_size, lifted.pipeline)
    if data is not None and local is None:
        # vLLM's default: every engine on the first node, which a group of nodes contradicts
        local = data // nnodes if data % nnodes == 0 else None
    expected = 1 if data is not None else nnodes
    if pipeline is not None and pipeline != expected:
        raise SettingsError(
            f"--pipeline-parallel-size {pipeline}: a group of {nnodes} nodes runs "
            + ("data parallel, so 1" if data is not None else f"one stage per node, so {nnodes}")
        )
    return data, local, rpc
