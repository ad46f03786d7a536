"""The loop that takes keys off a controller's work queue and reconciles them.

Every kind (InferenceService, InferenceGraph, LLMInferenceService, the model cache) runs this same
loop, so a failed reconcile is retried with the same rate-limited backoff and counted in the same
metrics whichever kind failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from wharf_controller.kube.queue import WorkQueue
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
