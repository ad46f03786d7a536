"""Runs this machine's Ray node (`ray start --block`) as a child process and stops it."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from wharf_llm_worker.multinode.rayargs import RayNodeConfig, ray_start_args

STARTED_MARKER = "Ray runtime started"

# `ray start` gives up on a node whose raylet has not registered with the GCS within a fixed
# 30 s (ray/_private/node.py, not configurable), and the raylet gives its dashboard agent a
# fixed ~15 s. On a loaded 2-core machine (load average 8) a head took three attempts, about
# 3 minutes, and a joining node started with it spent its attempts before the head was up. A
# fresh attempt is the only remedy, so a node retries until --start-timeout runs out.
RETRY_PAUSE_S = 2.0


PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """In the child before exec: SIGTERM when this command dies, even by SIGKILL, so that
    `ray start` stops its daemons instead of running on without the node's command."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RayNodeError(RuntimeError):
    pass


class RayNode:
    """One `ray start --block` process; its Ray daemons share its fate (Ray's reaper)."""

    def __init__(
        self, config: RayNodeConfig, env: dict[str, str], log_path: Path, python: str | None = None
    ) -> None:
        self.config = config
        self.env = env
        self.log_path = log_path
        self.python = python or sys.executable
        self._proc: subprocess.Popen[bytes] | None = None
        self._group: int | None = None
        self._started = threading.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=30)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, timeout_s: float) -> None:
        """Start the node; returns once Ray reports it running. Raises with Ray's last lines."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._start_once(deadline):
                return
            self.stop()
            if time.monotonic() + RETRY_PAUSE_S >= deadline:
                break
            time.sleep(RETRY_PAUSE_S)
        role = "head" if self.config.is_head else f"node rank {self.config.node_rank}"
        where = "" if self.config.is_head else f" at {self.config.head_address} (is the leader up?)"
        raise RayNodeError(
            f"the Ray {role} did not start{where}; ray start said:\n" + "\n".join(self._tail)
        )

    def _start_once(self, deadline: float) -> bool:
        self._started.clear()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-m", "ray.scripts.scripts", "start", *ray_start_args(self.config)]
        env = {**os.environ, **self.env}
        self._proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group, which Ray's daemons join: stop() ends what is left of it.
            start_new_session=True,
            preexec_fn=_end_with_parent if sys.platform == "linux" else None,
        )
        self._group = self._proc.pid
        threading.Thread(target=self._copy_output, args=(self._proc,), daemon=True).start()
        while time.monotonic() < deadline:
            if self._started.wait(timeout=0.5):
                return True
            if self._proc.poll() is not None:
                return False
        return False

    def _copy_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout, self.log_path.open("ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                self._tail.append(line)
                if STARTED_MARKER in line:
                    self._started.set()

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def tail(self) -> list[str]:
        return list(self._tail)

    def stop(self, grace_s: float = 15.0) -> None:
        proc = self._proc
        if proc is None:
            return
        group, self._group = self._group, None
        if proc.poll() is None:
            # SIGTERM ends `ray start --block`, which stops the daemons it started.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # The raylet's dashboard and runtime-env agents stay in `ray start`'s process group, and
        # on a joined node whose head had already gone they outlived it: whatever is left of
        # the group once `ray start` has ended goes too (also after a failed start attempt).
        if group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
