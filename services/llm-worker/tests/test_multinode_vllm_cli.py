"""The rank's entry point dies with its actor, and takes the processes vLLM started with it.

No vLLM here: a stand-in "actor" process starts a stand-in rank (the entry point's parent watch,
then a child like vLLM's engine core, in the rank's own session as rankproc.py starts it); the
actor is killed with SIGKILL, as when Ray kills an actor's worker or its node dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from wharf_llm_worker.multinode.vllm_cli import PARENT_PID_ENV

RANK = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from wharf_llm_worker.multinode.vllm_cli import _die_with_parent
    _die_with_parent()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(sys.argv[1]).write_text(f"{child.pid}")
    time.sleep(600)
    """
)

ACTOR = textwrap.dedent(
    """
    import os, subprocess, sys, time
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    rank = subprocess.Popen([sys.executable, "-c", RANK, sys.argv[1]], env=env,
                            start_new_session=True)
    print(rank.pid, flush=True)
    time.sleep(600)
    """
)


def _running(pid: int) -> bool:
    """Alive and not a zombie (nothing may reap orphans in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(condition: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def test_killing_the_actor_ends_the_rank_and_the_processes_it_started(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    code = f"PARENT_ENV = {PARENT_PID_ENV!r}\nRANK = {RANK!r}\n{ACTOR}"
    actor = subprocess.Popen(
        [sys.executable, "-c", code, str(child_pid_file)], stdout=subprocess.PIPE, text=True
    )
    rank_pid = child_pid = 0
    try:
        assert actor.stdout is not None
        rank_pid = int(actor.stdout.readline())
        _wait(lambda: child_pid_file.exists() and child_pid_file.read_text())
        child_pid = int(child_pid_file.read_text())
        assert _running(rank_pid) and _running(child_pid)

        actor.kill()
        actor.wait()
        _wait(lambda: not _running(rank_pid) and not _running(child_pid))
        assert not _running(rank_pid), "the rank outlived its actor"
        assert not _running(child_pid), "a process the rank started outlived the actor"
    finally:
        actor.kill()
        actor.wait()
        if actor.stdout is not None:
            actor.stdout.close()
        for pid in (rank_pid, child_pid):
            if pid and _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_without_an_actor_the_entry_point_watches_nothing(tmp_path: Path) -> None:
    # Started by hand (no rank actor), the entry point must not kill its own process group.
    code = (
        "import os\n"
        f"os.environ.pop({PARENT_PID_ENV!r}, None)\n"
        "from wharf_llm_worker.multinode.vllm_cli import _die_with_parent\n"
        "_die_with_parent()\n"
        "print('still here', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout == "still here\n", done.stderr
