"""`wharf-llm-worker multinode`: the leader (Ray head + group supervisor) or a joining node.

    wharf-llm-worker multinode --leader --nnodes 2 --model DIR [--layout multiprocess] -- ARGS
    wharf-llm-worker multinode --join LEADER[:RAY_PORT] --node-rank 1

Without --leader/--join the role comes from the LeaderWorkerSet environment: LWS_WORKER_INDEX
(0 is the leader), LWS_LEADER_ADDRESS and LWS_GROUP_SIZE. Ray lives in the engine environment;
started from another interpreter, the command re-executes itself there.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import signal
import sys
import threading
import uuid
from pathlib import Path
from types import FrameType

from wharf_llm_worker.multinode.ranks import group_plan
from wharf_llm_worker.multinode.rayargs import RAY_TEMP_CHILD, head_address, ray_env
from wharf_llm_worker.multinode.settings import (
    RAY_STOP_ALLOWANCE_S,
    Settings,
    SettingsError,
    parse_settings,
)
from wharf_llm_worker.multinode.tempdir import TempDirError, check_child, claim_private_dir

PROG = "wharf-llm-worker multinode"
MAX_TOKEN_BYTES = 4096
TOKEN_FILE_NAME = "ray-auth-token"
log = logging.getLogger("wharf_llm_worker.multinode")


def _error(message: str, code: int = 1) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


def _reexec_in_engine_env(argv: list[str]) -> int:
    from wharf_llm_worker.engine_env import EngineEnvironmentMissing, engine_python

    try:
        python = str(engine_python())
    except EngineEnvironmentMissing as exc:
        return _error(str(exc), 2)
    # Venvs share one base interpreter (symlinks), so compare environments, not binaries.
    if Path(python).parent.parent.resolve() == Path(sys.prefix).resolve():
        return _error(f"the engine environment at {python} does not import ray", 2)
    os.execv(python, [python, "-m", "wharf_llm_worker.multinode.cli", *argv])
    return 2  # pragma: no cover - execv does not return


def _token_file(settings: Settings) -> tuple[Path | None, str | None]:
    """The group's Ray token file; the leader makes one when none is given. (path, error)"""
    if settings.token_file is not None:
        path = settings.token_file
        try:
            size = path.stat().st_size
        except OSError as exc:
            return None, f"--auth-token-file {path}: {exc.strerror}"
        if not 0 < size <= MAX_TOKEN_BYTES:
            return None, f"--auth-token-file {path} must hold a token of 1-{MAX_TOKEN_BYTES} bytes"
        return path, None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None, None
    if not settings.is_leader:
        return None, (
            "a joining node needs the leader's Ray token: --auth-token-file FILE "
            "(or $RAY_AUTH_TOKEN_PATH / $RAY_AUTH_TOKEN)"
        )
    path = settings.log_dir / TOKEN_FILE_NAME
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    log.info("generated the group's Ray token in %s (joining nodes need this file)", path)
    return path, None


def dry_run_document(settings: Settings) -> dict[str, object]:
    """What `--dry-run` prints: this node's part, and on the leader every rank's vLLM args."""
    document: dict[str, object] = {
        "leader": settings.is_leader,
        "node_rank": settings.node.node_rank,
        "role": settings.role,
        "served_model_name": settings.served_model_name,
        "kill_timeout_s": settings.kill_timeout_s,
    }
    if settings.spec is not None:
        document["nnodes"] = settings.spec.nnodes
        plans = group_plan(settings.spec, master_addr="<leader>", ray_address="<ray-head>")
        document["ranks"] = [
            {"rank": p.rank, "args": list(p.args), "env": dict(p.env)} for p in plans
        ]
    return document


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: the node (and on the leader, the group) stops cleanly."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s multinode %(message)s")
    try:
        settings = parse_settings(args, os.environ)
    except SettingsError as exc:
        return _error(str(exc), 2)
    if settings.dry_run:
        print(json.dumps(dry_run_document(settings), indent=2))
        return 0
    if settings.node.temp_dir is not None:
        # before Ray (and before re-executing in the engine environment, which claims it again)
        try:
            claim_private_dir(Path(settings.node.temp_dir), may_hold=(RAY_TEMP_CHILD,))
            check_child(Path(settings.node.temp_dir), RAY_TEMP_CHILD)
        except TempDirError as exc:
            return _error(str(exc), 2)
    # Only look for Ray here: importing it reads RAY_AUTH_MODE once, before it is set below.
    if importlib.util.find_spec("ray") is None:
        return _reexec_in_engine_env(args)

    token_path, problem = _token_file(settings)
    if problem:
        return _error(problem, 2)
    env = ray_env(str(token_path.resolve())) if token_path else ray_env("")
    if not token_path:
        env.pop("RAY_AUTH_TOKEN_PATH")
    os.environ.update(env)
    group_id = os.environ.get("WHARF_MULTINODE_GROUP") or uuid.uuid4().hex[:12]
    os.environ["WHARF_MULTINODE_GROUP"] = group_id

    from wharf_llm_worker.multinode.raynode import RayNode, RayNodeError

    stop = threading.Event()
    _stop_on_signals(stop)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    node = RayNode(settings.node, env, settings.log_dir / f"ray-node-{settings.node.node_rank}.log")
    try:
        node.start(timeout_s=settings.start_timeout_s)
        log.info("Ray node rank %d is up (pid %s)", settings.node.node_rank, node.pid)
        if settings.is_leader:
            return _lead(settings, group_id, stop)
        return _follow(node, stop)
    except RayNodeError as exc:
        return _error(str(exc))
    finally:
        node.stop()


def _lead(settings: Settings, group_id: str, stop: threading.Event) -> int:
    import ray

    from wharf_llm_worker.multinode.supervisor import (
        GroupError,
        GroupSupervisor,
        SupervisorConfig,
    )

    assert settings.spec is not None
    host = settings.node.node_ip or ray.util.get_node_ip_address()
    address = head_address(host, settings.node.ray_port)
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    # ray.init replaces the SIGTERM handler with its own (sys.exit, and its core worker's
    # fatal-signal handler aborts the process): the leader would die with its ranks still
    # running. Ours again, so SIGTERM stops the group first.
    _stop_on_signals(stop)
    supervisor = GroupSupervisor(
        SupervisorConfig(
            spec=settings.spec,
            ray_address=address,
            log_dir=settings.log_dir.resolve(),
            group_id=group_id,
            wait_timeout_s=settings.wait_timeout_s,
            ready_timeout_s=settings.ready_timeout_s,
            policy=settings.policy,
            # the serving rank drains for --drain-timeout on SIGTERM before it is killed
            stop_grace_s=float(settings.kill_timeout_s - RAY_STOP_ALLOWANCE_S),
        )
    )
    # The signal handler's event is the supervisor's: SIGTERM tears the group down.
    supervisor.stopping = stop
    try:
        return supervisor.run()
    except GroupError as exc:
        return _error(str(exc))
    finally:
        ray.shutdown()


def _follow(node: object, stop: threading.Event) -> int:
    from wharf_llm_worker.multinode.raynode import RayNode

    assert isinstance(node, RayNode)
    while not stop.wait(1.0):
        code = node.exit_code()
        if code is not None:
            last = "\n    ".join(node.tail()[-8:])
            return _error(f"the Ray node exited with status {code} (leader gone?):\n    {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
