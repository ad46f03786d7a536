"""``--workers N``: N server processes on one port, supervised by a parent that serves nothing.

The parent starts each worker as a fresh interpreter running the same command line (never a
fork: a forked child would inherit the threads ML frameworks start, and their locks), so each
worker loads its models itself. Every worker binds the REST and gRPC ports with
``SO_REUSEPORT`` and the kernel spreads incoming connections over them. The parent

- gives every worker the same ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless one
  is set), so ``/metrics`` on any worker reports the sum over all of them;
- forwards SIGTERM and SIGINT (as SIGTERM) to every worker, waits for them to drain and exits 0 when they
  all exited 0;
- starts a worker again when it dies after running a while (``RESTART_AFTER_S``); a worker that
  dies sooner (a bad flag, a model that does not load, a port in use) stops the whole server with
  its exit status, as a single process would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("wharf.server")

WORKER_ENV = "WHARF_MODEL_SERVER_WORKER"
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
RESTART_AFTER_S = 10.0
POLL_S = 0.1


def is_worker() -> bool:
    """True in a process started by the supervisor (it serves; it supervises nobody)."""
    return os.environ.get(WORKER_ENV) is not None


def own_command() -> list[str]:
    """The command line this interpreter was started with (`python -m x ...`, a console
    script, or a user's own server script), to start workers with."""
    return [sys.executable, *sys.orig_argv[1:]]


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float


def _mark_dead(pid: int, metrics_dir: Path) -> None:
    from prometheus_client.multiprocess import mark_process_dead

    with contextlib.suppress(OSError):
        mark_process_dead(pid, str(metrics_dir))  # type: ignore[no-untyped-call]


class _Supervisor:
    def __init__(self, command: Sequence[str], workers: int, grace_s: float) -> None:
        self.command, self.workers, self.grace_s = list(command), workers, grace_s
        self.env_dir = os.environ.get(MULTIPROCESS_DIR_ENV)
        self.metrics_dir = (
            Path(self.env_dir) if self.env_dir else Path(tempfile.mkdtemp(prefix="wharf-metrics-"))
        )
        self.running: list[_Worker] = []
        self.stopping = False
        self.status = 0

    def start(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(index), MULTIPROCESS_DIR_ENV: str(self.metrics_dir)}
        process = subprocess.Popen(self.command, env=env)
        logger.info("started worker %d (pid %d)", index, process.pid)
        self.running.append(_Worker(index, process, time.monotonic()))

    def stop(self, signum: int = signal.SIGTERM, _frame: object = None) -> None:
        if not self.stopping:
            logger.info("stopping %d workers (signal %d)", len(self.running), signum)
        self.stopping = True
        for w in self.running:
            with contextlib.suppress(ProcessLookupError):
                w.process.send_signal(signal.SIGTERM)

    def reap(self, w: _Worker, code: int) -> None:
        self.running.remove(w)
        _mark_dead(w.process.pid, self.metrics_dir)
        if self.stopping:
            self.status = self.status or code
        elif time.monotonic() - w.started < RESTART_AFTER_S:
            logger.error("worker %d exited with %d at start: stopping", w.index, code)
            self.status = code or 1
            self.stop()
        else:
            logger.warning("worker %d exited with %d: starting it again", w.index, code)
            self.start(w.index)

    def run(self) -> int:
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.metrics_dir.glob("*.db"):  # an earlier server's samples would count
            stale.unlink()
        kill_at = 0.0
        for i in range(self.workers):
            self.start(i)
        while self.running:
            time.sleep(POLL_S)
            for w in list(self.running):
                code = w.process.poll()
                if code is not None:
                    self.reap(w, code)
            if self.stopping and self.running:
                kill_at = kill_at or time.monotonic() + self.grace_s + 10
                if time.monotonic() > kill_at:  # a worker stuck past its own grace period
                    for w in self.running:
                        w.process.kill()
        return self.status

    def close(self) -> None:
        for w in self.running:
            if w.process.poll() is None:
                w.process.kill()
                w.process.wait()
        if not self.env_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def supervise(command: Sequence[str], workers: int, grace_s: float = 30.0) -> int:
    """Runs `workers` copies of `command` until a signal stops them; returns the exit status."""
    supervisor = _Supervisor(command, workers, grace_s)
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, supervisor.stop) for s in signals}
    try:
        return supervisor.run()
    finally:
        supervisor.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
