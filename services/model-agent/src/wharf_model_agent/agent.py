"""The agent's core: follow the LocalModelNode, reconcile the cache, run the downloads.

Every change (a watch event, a finished download, a due retry, the periodic resync) sets one
"kick"; a single loop reconciles after each kick, so reconciles never overlap. Decisions come
from `decisions.plan`; this module only carries them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from wharf_api.resources.local_model_node import LocalModelNode
from wharf_model_agent import cache_fs, decisions
from wharf_model_agent.config import AgentConfig
from wharf_model_agent.decisions import Failure, WantedModel
from wharf_model_agent.downloader import (
    DownloadCancelled,
    Downloader,
    DownloadFailed,
    storage_download,
)
from wharf_model_agent.layout import CacheLayout
from wharf_model_agent.metrics import AgentMetrics
from wharf_model_agent.status import status_patch

log = logging.getLogger(__name__)

RECONCILE_RETRY_S = 5.0


class NodeApi(Protocol):
    """What the agent needs from the API server (`kube.LocalModelApi` in production)."""

    def watch_node(self, name: str) -> AsyncIterator[dict[str, Any] | None]: ...
    async def patch_status(self, name: str, patch: dict[str, Any]) -> None: ...
    async def storage_limit(self, node_group: str) -> int | None: ...
    async def declared_size(self, model: str, namespace: str | None = None) -> int | None: ...
    async def record_event(
        self, node: dict[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None: ...


@dataclass
class _Download:
    key: str
    stop: threading.Event
    task: asyncio.Task[None]


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        api: NodeApi,
        *,
        downloader: Downloader = storage_download,
        metrics: AgentMetrics | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.api = api
        self.downloader = downloader
        self.metrics = metrics or AgentMetrics()
        self.env = env
        self.clock = clock
        self.layout = CacheLayout(config.cache_root)
        self.reconciles = 0  # completed reconciles, for readiness and tests
        self.synced = asyncio.Event()  # the first listing of the LocalModelNode arrived
        self._node: dict[str, Any] | None = None
        self._downloads: dict[str, _Download] = {}
        self._failures: dict[str, Failure] = {}
        self._kick = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._limit: int | None = None
        self._next_retry: float | None = None

    @property
    def downloads_in_flight(self) -> frozenset[str]:
        return frozenset(self._downloads)

    def kick(self) -> None:
        self._kick.set()

    async def run(self) -> None:
        """Run until cancelled; downloads in flight are stopped on the way out."""
        await asyncio.to_thread(cache_fs.prepare, self.layout)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow_node())
                group.create_task(self._reconcile_loop())
        finally:
            await self._stop_downloads()

    async def _follow_node(self) -> None:
        async for node in self.api.watch_node(self.config.node_name):
            self._node = node
            self.synced.set()
            self.kick()

    async def _reconcile_loop(self) -> None:
        await self.synced.wait()
        while True:
            timeout = self.config.resync_interval_s
            try:
                await self.reconcile()
            except Exception:
                # The API server or the disk failed: try again soon, or at the next change.
                log.exception("reconcile of LocalModelNode %s failed", self.config.node_name)
                timeout = min(timeout, RECONCILE_RETRY_S)
            self.reconciles += 1
            if self._next_retry is not None:
                timeout = min(timeout, max(0.0, self._next_retry - self.clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._kick.wait()
            self._kick.clear()

    def _wanted(self, node: dict[str, Any]) -> list[WantedModel] | None:
        try:
            parsed = LocalModelNode.model_validate(node)
        except ValidationError as exc:
            log.error("LocalModelNode %s is malformed: %s", self.config.node_name, exc)
            return None
        return [
            WantedModel(
                name=m.model_name,
                uri=m.source_model_uri,
                node_group=m.node_group,
                namespace=m.namespace,
            )
            for m in parsed.spec.local_models
        ]

    async def _storage_limit(self, wanted: list[WantedModel]) -> int | None:
        if self.config.storage_limit is not None:
            return self.config.storage_limit
        groups = sorted({m.node_group for m in wanted if m.node_group})
        limits: dict[str, int] = {}
        for group in groups:
            if (limit := await self.api.storage_limit(group)) is not None:
                limits[group] = limit
        return decisions.storage_limit(limits, list(groups))

    async def reconcile(self) -> None:
        node = self._node
        if node is None:
            # No LocalModelNode: nothing says what is unwanted, so the cache stays as it is
            # (KServe's agent does the same).
            return
        wanted = self._wanted(node)
        if wanted is None:
            return
        cache = await asyncio.to_thread(cache_fs.scan, self.layout)
        limit = await self._storage_limit(wanted)
        sizes: dict[str, int] = {}
        if limit is not None:
            for model in wanted:
                held = cache.get(model.name)
                if held is not None and model.key in held.markers:
                    continue
                size = await self.api.declared_size(model.name, model.namespace)
                if size is not None:
                    sizes[model.name] = size
        running = {name: d.key for name, d in self._downloads.items()}
        plan = decisions.plan(
            wanted,
            cache,
            running,
            self._failures,
            declared_sizes=sizes,
            limit=limit,
            max_parallel=self.config.max_parallel_downloads,
            now=self.clock(),
        )
        self._limit = limit
        wanted_names = {m.name for m in wanted}
        self._failures = {k: v for k, v in self._failures.items() if k in wanted_names}

        for name in plan.cancel:
            log.info("stopping the download of %s: no longer wanted as it is", name)
            self._downloads[name].stop.set()
        for model_name, key in plan.delete_markers:
            await asyncio.to_thread(cache_fs.delete_marker, self.layout, model_name, key)
        for entry in plan.delete_entries:
            log.info("deleting models/%s", entry)
            await asyncio.to_thread(cache_fs.delete_entry, self.layout, entry)
        for model in plan.start:
            self._start(model)
        if plan.delete_entries:
            # What waited for the deletion (a new URI's download, freed space) goes next.
            self.kick()

        self.metrics.cache_bytes.set(plan.cache_bytes)
        self.metrics.cache_limit_bytes.set(limit or 0)
        self.metrics.set_models(plan.model_status)
        # A retry already due but not started waits for a free slot: a finished download kicks.
        now = self.clock()
        retries = [
            f.retry_at
            for name, f in self._failures.items()
            if name not in self._downloads and f.retry_at > now
        ]
        self._next_retry = min(retries) if retries else None

        patch = status_patch(node.get("status"), plan.model_status, plan.model_errors)
        if patch is not None:
            await self.api.patch_status(self.config.node_name, patch)
            status = {**(node.get("status") or {})}
            status["modelStatus"] = plan.model_status
            status["modelErrors"] = plan.model_errors
            node["status"] = status

    def _start(self, model: WantedModel) -> None:
        stop = threading.Event()
        log.info("downloading %s", model.name)
        task = asyncio.create_task(self._download(model, stop), name=f"download {model.name}")
        self._downloads[model.name] = _Download(key=model.key, stop=stop, task=task)

    async def _download(self, model: WantedModel, stop: threading.Event) -> None:
        started = self.clock()
        dest = self.layout.model_dir(model.name)
        try:
            fetched = await self.downloader(model.uri, dest, env=self.env, stop=stop)
            # Sizes are often unknown before a download: check the limit now, one finished
            # download at a time so that two of them cannot both take the last free space.
            async with self._commit_lock:
                in_use = await asyncio.to_thread(self._bytes_in_use_except, model.name)
                reason = decisions.does_not_fit(model.name, fetched.bytes, in_use, self._limit)
                if reason is not None:
                    await asyncio.to_thread(cache_fs.delete_entry, self.layout, model.name)
                    raise DownloadFailed(reason, "StorageLimit")
                await asyncio.to_thread(
                    cache_fs.write_marker,
                    self.layout,
                    model.name,
                    model.key,
                    fetched.files,
                    fetched.bytes,
                )
        except DownloadCancelled:
            self.metrics.downloads.labels("cancelled").inc()
            log.info("download of %s stopped", model.name)
        except DownloadFailed as exc:
            await self._fail(model, exc.reason, exc.kind)
        except Exception as exc:
            # The message of an unexpected error may quote a URI with credentials: not reported.
            log.error("download of %s failed unexpectedly: %s", model.name, type(exc).__name__)
            name = type(exc).__name__
            await self._fail(model, f"unexpected {name} while downloading", name)
        else:
            self._failures.pop(model.name, None)
            self.metrics.downloads.labels("success").inc()
            self.metrics.fetched_bytes.inc(fetched.fetched_bytes)
            self.metrics.duration.observe(self.clock() - started)
            log.info(
                "downloaded %s: %d files, %d bytes (%d fetched)",
                model.name,
                fetched.files,
                fetched.bytes,
                fetched.fetched_bytes,
            )
            await self._event("ModelDownloaded", f"model {model.name} is in the cache")
        finally:
            self._downloads.pop(model.name, None)
            self.kick()

    def _bytes_in_use_except(self, name: str) -> int:
        cache = cache_fs.scan(self.layout)
        return sum(c.bytes for n, c in cache.items() if n != name and c.has_dir and c.markers)

    async def _fail(self, model: WantedModel, reason: str, kind: str) -> None:
        failure = decisions.record_failure(
            self._failures.get(model.name), model.key, reason, self.clock()
        )
        self._failures[model.name] = failure
        self.metrics.downloads.labels("failure").inc()
        self.metrics.failures.labels(kind).inc()
        log.warning("download of %s failed (attempt %d): %s", model.name, failure.attempts, reason)
        await self._event("ModelDownloadError", f"model {model.name}: {reason}", warning=True)

    async def _event(self, reason: str, message: str, *, warning: bool = False) -> None:
        if self._node is not None:
            await self.api.record_event(self._node, reason, message, warning=warning)

    async def _stop_downloads(self) -> None:
        for download in self._downloads.values():
            download.stop.set()
            download.task.cancel()
        tasks = [d.task for d in self._downloads.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
