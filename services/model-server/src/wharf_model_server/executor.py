"""The thread pool that runs sync model code, apart from the loop's default executor (which
asyncio also uses for DNS lookups, so a busy model never delays a predictor call)."""

from __future__ import annotations

import concurrent.futures
import threading

from wharf_model_server.server_runtime import default_thread_count

_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def configure(max_workers: int | None) -> None:
    global _executor
    with _lock:
        old, _executor = (
            _executor,
            concurrent.futures.ThreadPoolExecutor(
                max_workers=max_workers or default_thread_count(), thread_name_prefix="model"
            ),
        )
    if old is not None:
        old.shutdown(wait=False)


def get() -> concurrent.futures.ThreadPoolExecutor:
    if _executor is None:
        configure(None)
    assert _executor is not None
    return _executor
