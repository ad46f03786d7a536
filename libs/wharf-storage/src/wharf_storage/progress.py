"""Progress counting shared by the download threads, and a log line at a readable pace."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("wharf_storage")


@dataclass(frozen=True)
class Retry:
    """One failed attempt that will be tried again (what a caller shows as a retry event)."""

    what: str  # the object key, file name, blob digest or host that failed
    attempt: int  # the attempt that failed, from 1
    attempts: int  # the most attempts that will be made
    reason: str  # safe to show: an error class or HTTP status, never a library message
    delay: float  # seconds until the next attempt


@dataclass(frozen=True)
class Progress:
    done_bytes: int
    total_bytes: int | None
    files_done: int
    files_total: int | None
    retries: int = 0  # failed attempts retried so far in this download
    retry: Retry | None = None  # set on the call made for a retry, None on byte/file updates


ProgressCallback = Callable[[Progress], None]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - loop always returns


def progress_line(p: Progress, elapsed: float, what: str) -> str:
    """`what: 1.2 GiB / 4.0 GiB (30%), 3/10 files, 250.0 MiB/s, ETA 12s` (pure)."""
    rate = p.done_bytes / elapsed if elapsed > 0 else 0.0
    parts = [f"{what}: {human_bytes(p.done_bytes)}"]
    if p.total_bytes:
        parts[0] += f" / {human_bytes(p.total_bytes)} ({100 * p.done_bytes // p.total_bytes}%)"
    files = f"{p.files_done}/{p.files_total} files" if p.files_total else f"{p.files_done} files"
    parts.append(files)
    parts.append(f"{human_bytes(rate)}/s")
    if p.total_bytes and rate > 0:
        parts.append(f"ETA {max(0.0, (p.total_bytes - p.done_bytes) / rate):.0f}s")
    return ", ".join(parts)


class Tracker:
    """Thread-safe counters. Calls the caller's callback and logs at most every `interval` s.

    An exception raised by the callback propagates into the download and stops it (the partial
    folder stays, so a later call resumes).
    """

    def __init__(
        self,
        what: str,
        *,
        total_bytes: int | None,
        files_total: int | None,
        callback: ProgressCallback | None,
        log_interval: float = 5.0,
        callback_interval: float = 0.25,
    ) -> None:
        self.what = what
        self.total_bytes = total_bytes
        self.files_total = files_total
        self._callback = callback
        self._log_interval = log_interval
        self._callback_interval = callback_interval
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_log = self._start
        self._last_callback = 0.0
        self.done_bytes = 0
        self.fetched_bytes = 0
        self.files_done = 0
        self.retries = 0

    def snapshot(self, retry: Retry | None = None) -> Progress:
        return Progress(
            self.done_bytes,
            self.total_bytes,
            self.files_done,
            self.files_total,
            self.retries,
            retry,
        )

    def retry(self, retry: Retry) -> None:
        """Count a retry, log it and always pass it to the callback (callers show it)."""
        with self._lock:
            self.retries += 1
            snap = self.snapshot(retry)
        log.warning(
            "%s: %s: attempt %d of %d failed (%s), retrying in %.1fs",
            self.what,
            retry.what,
            retry.attempt,
            retry.attempts,
            retry.reason,
            retry.delay,
        )
        if self._callback is not None:
            self._callback(snap)

    def add_bytes(self, n: int, *, fetched: bool = True) -> None:
        with self._lock:
            self.done_bytes += n
            if fetched:
                self.fetched_bytes += n
        self._tick(force=False)

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
        # A finished file always reaches the callback: callers count files to stop or report.
        self._tick(force=True)

    def finish(self) -> None:
        self._tick(force=True)
        log.info("%s", progress_line(self.snapshot(), time.monotonic() - self._start, self.what))

    def _tick(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            snap = self.snapshot()
            do_callback = self._callback is not None and (
                force or now - self._last_callback >= self._callback_interval
            )
            if do_callback:
                self._last_callback = now
            do_log = now - self._last_log >= self._log_interval
            if do_log:
                self._last_log = now
        if do_log:
            log.info("%s", progress_line(snap, now - self._start, self.what))
        if do_callback and self._callback is not None:
            self._callback(snap)
