"""The thread pool that runs sync model code, apart from the loop's default executor (which
asyncio also uses for DNS lookups, so a busy model never delays a predictor call)."""

from __future__ import annotations

import concurrent.futures
import math
import os
import threading


def cgroup_cpu_limit(cpu_max: str) -> int | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2), None if unlimited."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if period > 0 else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a container's cgroup CPU limit."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            limit = cgroup_cpu_limit(fh.read())
    except OSError:
        limit = None
    return min(cpus, limit) if limit else cpus


def default_thread_count() -> int:
    """Threads for sync model code: one per usable cpu.

    Model code is CPU-bound. Pure-Python models hold the GIL, so more threads than cpus only
    add GIL hand-offs and serve requests out of order (a longer latency tail); models that
    release the GIL (xgboost, lightgbm, onnxruntime, numpy) still get every core. KServe's
    ``min(32, cpus + 4)`` is sized for I/O; ``--max_asyncio_workers`` sets it explicitly.
    """
    return usable_cpus()


_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_threads = 0


def configure(max_workers: int | None) -> None:
    global _executor, _threads
    with _lock:
        _threads = max_workers or default_thread_count()
        old, _executor = (
            _executor,
            concurrent.futures.ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="model"),
        )
    if old is not None:
        old.shutdown(wait=False)


def get() -> concurrent.futures.ThreadPoolExecutor:
    if _executor is None:
        configure(None)
    assert _executor is not None
    return _executor


def thread_count() -> int:
    """Threads in the pool (configured on first use)."""
    get()
    return _threads
