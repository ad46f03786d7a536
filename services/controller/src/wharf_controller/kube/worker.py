"""The loop that takes keys off a controller's work queue and reconciles them.

Every kind (InferenceService, InferenceGraph, LLMInferenceService, the model cache) runs this same
loop, so a failed reconcile is retried with the same rate-limited backoff and counted in the same
metrics whichever kind failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, TypeVar

from wharf_controller.kube.queue import ShutDown, WorkQueue
from wharf_controller.metrics import Metrics

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


async def reconcile_forever(
    queue: WorkQueue[K],
    reconcile: Callable[[K], Awaitable[None]],
    *,
    kind: str,
    metrics: Metrics,
    expected: tuple[type[BaseException], ...],
    on_done: Callable[[], None] = lambda: None,
) -> None:
    """Reconcile each key the queue hands out until the queue shuts down (its `get` raises).

    A failure requeues the key with backoff; one of the `expected` errors (a conflict, an API
    error) is logged without its traceback, anything else with it. `on_done` runs after each key,
    failed or not."""
    while True:
        key = await queue.get()
        metrics.queue_depth.labels(kind).set(len(queue))
        started = time.perf_counter()
        try:
            await reconcile(key)
        except Exception as exc:
            metrics.errors.labels(kind).inc()
            metrics.reconciles.labels(kind, "error").inc()
            delay = queue.add_rate_limited(key)
            log.warning(
                "%s %s: %s; retrying in %.2fs",
                kind,
                _describe(key),
                exc,
                delay,
                exc_info=not isinstance(exc, expected),
            )
        else:
            queue.forget(key)
            metrics.reconciles.labels(kind, "success").inc()
        finally:
            metrics.latency.labels(kind).observe(time.perf_counter() - started)
            queue.done(key)
            on_done()


def _describe(key: Hashable) -> str:
    if isinstance(key, tuple):
        return "/".join(str(part) for part in key if part != "")
    return str(key)


WORKER_TASK = "wharf-reconcile-worker"


def start_worker(loop: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task running `reconcile_forever`, named so that `stop` can let it finish its key."""
    return asyncio.create_task(loop, name=WORKER_TASK)


async def stop(queue: WorkQueue[K], tasks: list[asyncio.Task[None]], grace_s: float = 10.0) -> None:
    """Shut the queue, give the reconciles in progress up to `grace_s` to finish, then cancel
    every task (informers, resync, workers still busy) and wait for them.

    A reconcile cancelled in the middle of an API request leaves that request's connection
    behind; once the queue is shut, a worker ends by itself after its current key."""
    await queue.shutdown()
    workers = [t for t in tasks if t.get_name() == WORKER_TASK]
    if workers:
        await asyncio.wait(workers, timeout=grace_s)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, ShutDown):
            await task
    tasks.clear()
