"""One rank's engine process on its node: started, watched and stopped by a Ray actor.

The supervisor makes this class a Ray actor (``ray.remote``) and places it in the rank's bundle,
so the process runs on the node that joined with that rank. The process gets its own session
(process group) so that stopping it stops vLLM's own children too, and that group dies with the
actor if the actor's worker is killed (the entry point watches its parent, see vllm_cli.py).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PARENT_PID_ENV = "WHARF_RANK_PARENT_PID"
LOG_TAIL_LINES = 40
MAX_LOG_BYTES = 256 * 1024 * 1024


class RankProcess:
    """Runs ``python -m <module> <args>`` for one rank and reports on it."""

    def __init__(self, rank: int, log_dir: str) -> None:
        self.rank = rank
        self.log_path = Path(log_dir) / f"rank-{rank}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._pump: threading.Thread | None = None

    def start(self, module: str, args: list[str], env: dict[str, str]) -> dict[str, object]:
        """Start the rank; returns its pid and log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()  # the log exists as soon as the rank does
        # The entry point watches this pid and ends its process group when it dies (vllm_cli.py).
        child_env = {**os.environ, **env, PARENT_PID_ENV: str(os.getpid())}
        # The engine environment's interpreter: the actor runs in it, on every node.
        cmd = [sys.executable, "-m", module, *args]
        self._proc = subprocess.Popen(
            cmd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, daemon=True)
        self._pump.start()
        return {
            "rank": self.rank,
            "pid": self._proc.pid,
            "log": str(self.log_path),
        }

    def _copy_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        written = 0
        with self._proc.stdout, self.log_path.open("ab") as log:
            for line in self._proc.stdout:
                self._tail.append(line.decode("utf-8", "replace").rstrip())
                if written < MAX_LOG_BYTES:
                    log.write(line)
                    log.flush()
                    written += len(line)

    def poll(self) -> int | None:
        """The exit status once the rank has ended, else None."""
        return None if self._proc is None else self._proc.poll()

    def tail(self) -> list[str]:
        return list(self._tail)

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM the rank's process group, SIGKILL what is left after ``grace_s``."""
        proc = self._proc
        if proc is None:
            return None
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        # Children (vLLM's engine core and workers) share the group; take them too.
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if self._pump is not None:
            self._pump.join(timeout=5)
        return proc.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
