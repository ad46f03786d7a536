"""Fetching a revision's models: credentials, single-flight download, progress and retries as
events, and the failure a revision reports when a download fails (retried with backoff by the
reconcile step, and at once when the manifest is applied again)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.status import MODEL_DOWNLOAD_FAILED
from wharf_local import backoff
from wharf_local.cache import ModelCache
from wharf_local.credentials import download_env
from wharf_local.state import EventType, Revision, Service
from wharf_storage import Progress, redact_uri
from wharf_storage.progress import progress_line

# a download in progress shows an event this often
PROGRESS_EVERY_S = 2.0

Emit = Callable[[Service, EventType, str, str, str], None]


class ModelFetcher:
    def __init__(
        self,
        cache: ModelCache,
        config: InferenceServiceConfig,
        secrets_root: Path,
        applied: Callable[[], Mapping[str, dict[str, Any]]],
        emit: Emit,
        spawn: Callable[[Any], asyncio.Task[Any]],
    ) -> None:
        self.cache = cache
        self._config = config
        self._secrets_root = secrets_root
        self._applied = applied
        self._emit = emit
        self._spawn = spawn

    def retry_failed(self, svc: Service) -> bool:
        """Applying a manifest again retries its failed downloads at once. A backoff retry
        already under way counts, but it may have asked the source before the user fixed it:
        if it fails, the next attempt follows at once rather than after the backoff."""
        retried = False
        for comp in svc.components.values():
            rev = comp.latest
            if rev is not None and rev.failure is not None:
                rev.failure, rev.retry_at = None, None
                if rev.fetching:
                    rev.retry_again = True
                else:
                    self.start(svc, rev)
                retried = True
        return retried

    def start(self, svc: Service, rev: Revision) -> None:
        rev.fetching = True
        self._spawn(self._fetch_models(svc, rev))

    async def _fetch_models(self, svc: Service, rev: Revision) -> None:
        dirs: dict[str, str] = {}
        try:
            for mount in rev.plan.storage:
                started = time.monotonic()
                try:
                    env = self._download_env(svc, rev, mount.uri)
                    result = await self.cache.fetch(
                        mount.uri, env=env, on_progress=self._progress_reporter(svc, rev)
                    )
                except Exception as exc:
                    rev.attempts += 1
                    if rev.retry_again:
                        # begun before the manifest was applied again: that apply's retry is
                        # due (the next tick's RetryDownload starts it; starting it here would
                        # be undone by the `finally` below)
                        rev.retry_again, rev.retry_at = False, time.monotonic()
                        self._emit(
                            svc,
                            "Warning",
                            MODEL_DOWNLOAD_FAILED,
                            f"storageUri: {exc} (attempt {rev.attempts}, begun before the "
                            "manifest was applied again; retrying now)",
                            rev.name,
                        )
                        rev.notify()
                        return
                    delay = backoff.restart_delay(rev.attempts)
                    rev.failure = (MODEL_DOWNLOAD_FAILED, f"storageUri: {exc}")
                    rev.retry_at = time.monotonic() + delay
                    self._emit(
                        svc,
                        "Warning",
                        MODEL_DOWNLOAD_FAILED,
                        f"{rev.failure[1]} (attempt {rev.attempts}; retrying in {delay:.0f}s, "
                        "or at once when the manifest is applied again)",
                        rev.name,
                    )
                    rev.notify()
                    return
                dirs[mount.mount_path] = str(result.path)
                how = (
                    f"downloaded {result.fetched_bytes} bytes"
                    if result.fetched_bytes
                    else "cached or linked, nothing downloaded"
                )
                self._emit(
                    svc,
                    "Normal",
                    "ModelReady",
                    f"{redact_uri(result.uri)} -> {result.path} "
                    f"({how}, {time.monotonic() - started:.2f}s)",
                    rev.name,
                )
            rev.model_dirs = dirs
            rev.failure, rev.retry_at, rev.retry_again = None, None, False
            rev.notify()
        finally:
            rev.fetching = False

    def _download_env(self, svc: Service, rev: Revision, uri: str) -> dict[str, str] | None:
        """Credentials from the ServiceAccount and Secrets applied in the service's namespace."""
        meta = svc.manifest.get("metadata") or {}
        env, notes = download_env(
            uri,
            rev.plan,
            svc.namespace,
            meta.get("annotations"),
            self._applied(),
            self._config,
            self._secrets_root,
        )
        for note in notes:
            self._emit(svc, "Normal", "Credentials", note, rev.name)
        return env

    def _progress_reporter(self, svc: Service, rev: Revision) -> Callable[[Progress], None]:
        """Download progress and retries as events: every retry, progress every few seconds."""
        started = time.monotonic()
        last = [started]

        def report(p: Progress) -> None:
            now = time.monotonic()
            if p.retry is not None:
                r = p.retry
                self._emit(
                    svc,
                    "Warning",
                    "DownloadRetry",
                    f"{r.what}: {r.reason}; attempt {r.attempt} of {r.attempts}, "
                    f"next in {r.delay:.0f}s",
                    rev.name,
                )
            elif now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                line = progress_line(p, now - started, "downloading")
                self._emit(svc, "Normal", "Downloading", line, rev.name)

        return report
