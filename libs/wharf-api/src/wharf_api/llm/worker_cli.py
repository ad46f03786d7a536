"""The command line of Wharf's LLM worker, in one place (the presets and the plan build it here).

    wharf-llm-worker [multinode] --role both|prefill|decode --model DIR_OR_ID
                     --served-model-name NAME --host 0.0.0.0 --port 8000 [--drain-timeout S]
                     [--kv-transfer nixl|none] [--lora NAME=PATH]... -- <extra vLLM args>

Change the flags here and the presets, plan and golden files follow; a contract test in
`services/llm-worker/tests` parses every golden plan's command with the worker's own parsers.
A multi-node group runs `wharf-llm-worker multinode` in every pod with the same flags: the
command reads its rank, the group size and the leader's address from the environment a
LeaderWorkerSet gives each pod (`LWS_WORKER_INDEX`, `LWS_GROUP_SIZE`, `LWS_LEADER_ADDRESS`;
`wharf up` sets them the same way), so one command line serves the leader and every worker.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["both", "prefill", "decode"]
KVTransfer = Literal["nixl", "none"]

WORKER_COMMAND = "wharf-llm-worker"
MULTINODE_SUBCOMMAND = "multinode"
WORKER_IMAGE = "ghcr.io/wharf-serving/llm-worker:0.1.0"
WORKER_PORT = 8000
# a pod serves its neighbours: the worker's own default (loopback) suits a local process only
POD_HOST = "0.0.0.0"
MODEL_DIR = "/mnt/models"

ROLE_FLAG = "--role"
MODEL_FLAG = "--model"
SERVED_MODEL_NAME_FLAG = "--served-model-name"
HOST_FLAG = "--host"
PORT_FLAG = "--port"
LORA_FLAG = "--lora"
DRAIN_TIMEOUT_FLAG = "--drain-timeout"
KV_TRANSFER_FLAG = "--kv-transfer"
ENGINE_ARGS_SEPARATOR = "--"

# What a LeaderWorkerSet puts in every pod's environment (and `wharf up` sets the same way)
LEADER_ADDRESS_ENV = "LWS_LEADER_ADDRESS"
GROUP_SIZE_ENV = "LWS_GROUP_SIZE"
WORKER_INDEX_ENV = "LWS_WORKER_INDEX"
MULTI_NODE_ENV = (LEADER_ADDRESS_ENV, GROUP_SIZE_ENV, WORKER_INDEX_ENV)


def worker_command(
    role: Role,
    *,
    served_model_name: str,
    kv_transfer: KVTransfer | None = None,
    multi_node: bool = False,
    model: str = MODEL_DIR,
    host: str = POD_HOST,
    port: int = WORKER_PORT,
    drain_timeout: str | None = None,
) -> list[str]:
    """The worker's command up to and including `--`: the container's `args` follow as vLLM's.
    A multi-node group's command takes the same flags and reads the rest from `LWS_*`."""
    command = [
        WORKER_COMMAND,
        *([MULTINODE_SUBCOMMAND] if multi_node else []),
        ROLE_FLAG,
        role,
        MODEL_FLAG,
        model,
        SERVED_MODEL_NAME_FLAG,
        served_model_name,
        HOST_FLAG,
        host,
        PORT_FLAG,
        str(port),
    ]
    if drain_timeout is not None:
        command += [DRAIN_TIMEOUT_FLAG, drain_timeout]
    if kv_transfer is not None:
        command += [KV_TRANSFER_FLAG, kv_transfer]
    return [*command, ENGINE_ARGS_SEPARATOR]


def with_worker_flags(command: list[str] | tuple[str, ...], flags: list[str]) -> list[str]:
    """`command` with worker flags added before its `--` (at the end when it has none)."""
    command = list(command)
    cut = command.index(ENGINE_ARGS_SEPARATOR) if ENGINE_ARGS_SEPARATOR in command else len(command)
    return [*command[:cut], *flags, *command[cut:]]


def is_worker_command(command: list[str] | tuple[str, ...]) -> bool:
    """Whether a container runs Wharf's worker (the plan adds engine args only to those)."""
    return bool(command) and command[0].rsplit("/", 1)[-1] == WORKER_COMMAND


def is_multinode_command(command: list[str] | tuple[str, ...]) -> bool:
    """Whether a container runs one node of Wharf's multi-node worker group."""
    return is_worker_command(command) and len(command) > 1 and command[1] == MULTINODE_SUBCOMMAND
