"""`wharf-llm-worker`: run one vLLM engine for a role, with what Wharf adds around it.

    wharf-llm-worker --role both|prefill|decode --model DIR --served-model-name NAME --port N
        [--host H] [--kv-transfer nixl|example|none] [--kv-side-channel-port N]
        [--kv-side-channel-host H] [--kv-shared-path DIR] [--lora name=path]...
        [--drain-timeout S] [--dry-run] [-- extra vLLM args]
    wharf-llm-worker multinode ARGS...
    wharf-llm-worker engine-python [PYTHON ARGS...]

The process becomes vLLM's OpenAI server (exec, same PID) under the engine environment's python
(`scripts/install-llm-engine`): signals from a supervisor reach vLLM directly, and there is no
proxy hop on the token path. On SIGTERM vLLM stops taking requests, finishes those in flight
for up to --drain-timeout seconds, then exits; a supervisor should allow the `kill_timeout_s`
that `--dry-run` prints before it sends SIGKILL.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from wharf_llm_worker.engine_env import EngineEnvironmentMissing, engine_python
from wharf_llm_worker.launch import (
    DEFAULT_DRAIN_TIMEOUT_S,
    KV_TRANSFERS,
    ROLES,
    EngineLaunch,
    LaunchError,
    LoraAdapter,
    WorkerOptions,
    build_launch,
    process_env,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wharf-llm-worker",
        description="Run one vLLM engine (its OpenAI server) for a role: prefill, decode or both.",
        epilog="Arguments after `--` go to vLLM unchanged. `wharf-llm-worker multinode --help` "
        "for multi-node workers.",
    )
    parser.add_argument("--role", choices=ROLES, required=True)
    parser.add_argument("--model", required=True, help="model folder (or a hub id)")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--kv-transfer",
        choices=KV_TRANSFERS,
        default=None,
        help="KV connector for P/D (default: nixl for prefill/decode, none for both)",
    )
    parser.add_argument("--kv-side-channel-port", type=int, default=None)
    parser.add_argument("--kv-side-channel-host", default=None)
    parser.add_argument("--kv-shared-path", default=None, help="folder for --kv-transfer example")
    parser.add_argument(
        "--lora", action="append", default=[], metavar="NAME=PATH", help="a LoRA adapter"
    )
    parser.add_argument("--drain-timeout", type=int, default=DEFAULT_DRAIN_TIMEOUT_S)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the launch as JSON instead of running it"
    )
    return parser


def parse_command_line(argv: Sequence[str]) -> tuple[WorkerOptions, bool]:
    """The worker's options and whether this is a dry run (everything after `--` is vLLM's)."""
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    ns = _parser().parse_args(argv)
    options = WorkerOptions(
        role=ns.role,
        model=ns.model,
        served_model_name=ns.served_model_name,
        port=ns.port,
        host=ns.host,
        kv_transfer=ns.kv_transfer,
        kv_side_channel_port=ns.kv_side_channel_port,
        kv_side_channel_host=ns.kv_side_channel_host,
        kv_shared_path=ns.kv_shared_path,
        lora=tuple(LoraAdapter.parse(text) for text in ns.lora),
        drain_timeout_s=ns.drain_timeout,
        extra_args=tuple(extra),
        cpu_count=len(os.sched_getaffinity(0)),
    )
    return options, bool(ns.dry_run)


def _run(launch: EngineLaunch, python: str, dry_run: bool) -> int:
    if dry_run:
        document = {
            "python": python,
            "args": list(launch.args),
            "env": launch.env,
            "kill_timeout_s": launch.kill_timeout_s,
        }
        print(json.dumps(document, indent=2))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [python, *launch.args], process_env(launch, os.environ))


ENGINE_PYTHON_COMMAND = "engine-python"


def engine_python_main(args: Sequence[str]) -> int:
    """`wharf-llm-worker engine-python [ARGS...]`: the engine environment's interpreter. With
    no arguments it prints the interpreter's path; with arguments it becomes that interpreter
    (exec) running them. The one way other services start code that needs torch or vLLM (the
    Hugging Face runtime's `wharf-model-server`), since they may not import this package."""
    try:
        python = str(engine_python())
    except EngineEnvironmentMissing as error:
        print(f"wharf-llm-worker: {error}", file=sys.stderr)
        return 3
    if not args:
        print(python)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, [python, *args])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == ENGINE_PYTHON_COMMAND:
        return engine_python_main(args[1:])
    if args and args[0] == "multinode":
        # Imported lazily: the multi-node layer brings Ray helpers the single worker never needs.
        multinode = importlib.import_module("wharf_llm_worker.multinode.cli")
        return int(multinode.main(args[1:]) or 0)
    try:
        options, dry_run = parse_command_line(args)
        launch = build_launch(options)
    except LaunchError as error:
        print(f"wharf-llm-worker: {error}", file=sys.stderr)
        return 2
    try:
        python = str(engine_python())
    except EngineEnvironmentMissing as error:
        if not dry_run:
            print(f"wharf-llm-worker: {error}", file=sys.stderr)
            return 3
        python = ""
    return _run(launch, python, dry_run)


if __name__ == "__main__":
    sys.exit(main())
