"""The model cache controller: caches of LocalModelCaches, LocalModelNamespaceCaches, node
groups, nodes, InferenceServices and the cache's children, and one reconcile of the whole cache
(LocalModelNodes gather the models of every cache, so one key stands for all of it). Any change
to what it reads enqueues that key; the work queue folds a burst of events into one reconcile.
What to create is `desired.model_cache`; the status is `model_cache_status`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from wharf_controller.controller import Controller
from wharf_controller.decisions import covers, key_of, needs_apply
from wharf_controller.desired.model_cache import (
    AGENT_IMAGE,
    CACHE_LABEL,
    GROUP_LABEL,
    Cache,
    CachedModel,
    ModelCacheError,
    covering_cache,
    desired_objects,
    group_nodes,
    local_model_nodes,
    read_cache,
)
from wharf_controller.kube.api import (
    BY_KIND,
    DAEMON_SET,
    INFERENCE_SERVICE,
    LOCAL_MODEL_CACHE,
    LOCAL_MODEL_NAMESPACE_CACHE,
    LOCAL_MODEL_NODE,
    LOCAL_MODEL_NODE_GROUP,
    MODEL_CACHE_CHILD_KINDS,
    NODE,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    Api,
    ApiError,
)
from wharf_controller.kube.informer import Informer, slim
from wharf_controller.kube.queue import WorkQueue
from wharf_controller.kube.worker import reconcile_forever, start_worker
from wharf_controller.kube.worker import stop as stop_workers
from wharf_controller.metrics import Metrics
from wharf_controller.model_cache_status import cache_status

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]
KIND = "LocalModelCache"
THE_KEY: Key = ("", "model-cache")
MANAGED = "app.kubernetes.io/managed-by=wharf-controller"


def storage_uris(isvc: Mapping[str, Any]) -> list[str]:
    """The predictor's storage URIs (`model.storageUri`, a framework shortcut's, `storageUris`)."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    uris: list[str] = []
    for part in predictor.values():
        if isinstance(part, dict) and isinstance(part.get("storageUri"), str):
            uris.append(part["storageUri"])
    if isinstance(predictor.get("storageUri"), str):
        uris.append(predictor["storageUri"])
    return uris


class ModelCacheController:
    def __init__(
        self,
        api: Api,
        *,
        agent_namespace: str,
        agent_image: str = AGENT_IMAGE,
        fs_group: int | None = None,
        metrics: Metrics | None = None,
        resync_s: float = 600.0,
        watch_timeout_s: int = 300,
    ) -> None:
        self.api = api
        self.agent_namespace = agent_namespace
        self.agent_image = agent_image
        self.fs_group = fs_group
        self.metrics = metrics or Metrics()
        self.resync_s = resync_s
        self.queue: WorkQueue[Key] = WorkQueue()

        def informer(kind: Any, selector: str | None = None) -> Informer:
            return Informer(api, kind, label_selector=selector, watch_timeout_s=watch_timeout_s)

        self.caches = informer(LOCAL_MODEL_CACHE)
        self.namespace_caches = informer(LOCAL_MODEL_NAMESPACE_CACHE)
        self.groups = informer(LOCAL_MODEL_NODE_GROUP)
        self.nodes = informer(NODE)
        self.services = informer(INFERENCE_SERVICE)
        self.children = {
            LOCAL_MODEL_NODE.kind: informer(LOCAL_MODEL_NODE),
            DAEMON_SET.kind: informer(DAEMON_SET, f"{MANAGED},{GROUP_LABEL}"),
            PERSISTENT_VOLUME.kind: informer(PERSISTENT_VOLUME, f"{MANAGED},{GROUP_LABEL}"),
            PERSISTENT_VOLUME_CLAIM.kind: informer(
                PERSISTENT_VOLUME_CLAIM, f"{MANAGED},{GROUP_LABEL}"
            ),
        }
        assert set(self.children) == {k.kind for k in MODEL_CACHE_CHILD_KINDS}
        self.reconciled = 0
        self._tasks: list[asyncio.Task[None]] = []

    def _informers(self) -> list[Informer]:
        return [
            self.caches,
            self.namespace_caches,
            self.groups,
            self.nodes,
            self.services,
            *self.children.values(),
        ]

    # ---- wiring --------------------------------------------------------------------------
    async def start_caches(self) -> None:
        for inf in self._informers():
            inf.handlers.append(lambda _e, _o, _p: self.queue.add(THE_KEY))
            self._tasks.append(asyncio.create_task(inf.run()))
        for inf in self._informers():
            await inf.synced.wait()

    def serve_for(self, services: Controller) -> None:
        """Let the InferenceService controller read covered models from the cache, and
        re-reconcile its services when a cache or node group changes."""
        services.model_cache = self.lookup

        def again(_event: str, _obj: JSON, _old: JSON | None) -> None:
            for obj in services.services.items():
                meta = obj["metadata"]
                services.queue.add((meta.get("namespace") or "", meta["name"]))

        for inf in (self.caches, self.namespace_caches, self.groups):
            inf.handlers.append(again)

    def caches_synced(self) -> bool:
        return all(inf.synced.is_set() for inf in self._informers())

    async def start_workers(self) -> None:
        self.queue.add(THE_KEY)
        self._tasks.append(start_worker(self._worker()))
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        await stop_workers(self.queue, self._tasks)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_s)
            self.queue.add(THE_KEY)

    async def _worker(self) -> None:
        await reconcile_forever(
            self.queue,
            lambda _key: self.reconcile(),
            kind=KIND,
            metrics=self.metrics,
            expected=(ApiError,),
            on_done=self._count_reconcile,
        )

    def _count_reconcile(self) -> None:
        self.reconciled += 1

    def lookup(
        self, uri: str, namespace: str, annotations: Mapping[str, str] | None
    ) -> CachedModel | None:
        """The cache a serving pod in `namespace` reads `uri` from (for the InferenceService
        controller), from this controller's caches."""
        caches = [read_cache(o) for o in self._cache_objects()[0]]
        groups = {g["metadata"]["name"]: g for g in self.groups.items()}
        return covering_cache(uri, namespace, annotations, caches, groups)

    # ---- one reconcile --------------------------------------------------------------------
    def _cache_objects(self) -> tuple[list[JSON], list[tuple[JSON, str]]]:
        """The caches that can be read, and (cache, error) for those that cannot."""
        good: list[JSON] = []
        bad: list[tuple[JSON, str]] = []
        for obj in [*self.caches.items(), *self.namespace_caches.items()]:
            if obj["metadata"].get("deletionTimestamp"):
                continue
            obj = {"kind": KIND, **obj}
            if obj["metadata"].get("namespace"):
                obj["kind"] = LOCAL_MODEL_NAMESPACE_CACHE.kind
                obj.setdefault("apiVersion", LOCAL_MODEL_NAMESPACE_CACHE.api_version)
            else:
                obj.setdefault("apiVersion", LOCAL_MODEL_CACHE.api_version)
            try:
                read_cache(obj)
            except ModelCacheError as exc:
                bad.append((obj, str(exc)))
                continue
            good.append(obj)
        return good, bad

    def _served_by(
        self, caches: list[Cache], groups: Mapping[str, JSON]
    ) -> dict[tuple[str | None, str], set[tuple[str, str]]]:
        served: dict[tuple[str | None, str], set[tuple[str, str]]] = {}
        for isvc in self.services.items():
            meta = isvc["metadata"]
            for uri in storage_uris(isvc):
                got = covering_cache(
                    uri, meta["namespace"], meta.get("annotations"), caches, groups
                )
                if got is not None:
                    served.setdefault((got.cache.namespace, got.cache.name), set()).add(
                        (meta["namespace"], meta["name"])
                    )
        return served

    async def reconcile(self) -> None:
        cache_objs, bad = self._cache_objects()
        caches = [read_cache(o) for o in cache_objs]
        groups = {g["metadata"]["name"]: g for g in self.groups.items()}
        nodes = self.nodes.items()
        served = self._served_by(caches, groups)
        namespaces: dict[str, set[str]] = {}
        for (_, name), users in served.items():
            namespaces.setdefault(name, set()).update(ns for ns, _ in users)
        desired: list[JSON] = []
        for obj, cache in zip(cache_objs, caches, strict=True):
            # one cache at a time, so a broken node group fails only its caches
            try:
                objs = desired_objects(
                    [obj],
                    list(groups.values()),
                    nodes,
                    {cache.name: namespaces.get(cache.name, set())},
                    agent_namespace=self.agent_namespace,
                    agent_image=self.agent_image,
                    fs_group=self.fs_group,
                )
            except ModelCacheError as exc:
                bad.append((obj, str(exc)))
                continue
            desired.extend(o for o in objs if o["kind"] != LOCAL_MODEL_NODE.kind)
        # LocalModelNodes gather every cache's models, so they are built from all at once
        usable = [
            c for c, o in zip(caches, cache_objs, strict=True) if all(o is not b for b, _ in bad)
        ]
        desired[:0] = local_model_nodes(usable, groups, nodes)
        desired = list({key_of(o): o for o in desired}.values())
        await self._apply(desired)
        await self._prune(desired)
        for obj, cache in zip(cache_objs, caches, strict=True):
            members = sorted(
                {n for g in cache.node_groups if g in groups for n in group_nodes(groups[g], nodes)}
            )
            status = cache_status(
                cache,
                members,
                {n["metadata"]["name"]: n for n in nodes},
                {n["metadata"]["name"]: n for n in self.children[LOCAL_MODEL_NODE.kind].items()},
                served.get((cache.namespace, cache.name), set()),
            )
            await self._write_status(obj, status)
        for _obj, message in bad:
            log.warning("%s", message)

    async def _apply(self, desired: Iterable[JSON]) -> None:
        for child in desired:
            informer = self.children[child["kind"]]
            meta = child["metadata"]
            observed = informer.get(meta["name"], meta.get("namespace"))
            if not needs_apply(child, observed):
                continue
            self.metrics.writes.labels("apply").inc()
            stored = slim(await self.api.apply(child))
            stored.setdefault("apiVersion", child["apiVersion"])
            stored.setdefault("kind", child["kind"])
            informer.store[(meta.get("namespace") or "", meta["name"])] = stored

    async def _prune(self, desired: list[JSON]) -> None:
        wanted = {key_of(o) for o in desired}
        for kind, informer in self.children.items():
            for obj in informer.items():
                labels = obj["metadata"].get("labels") or {}
                if labels.get("app.kubernetes.io/managed-by") != "wharf-controller":
                    continue
                if kind != LOCAL_MODEL_NODE.kind and GROUP_LABEL not in labels:
                    continue
                obj = {"kind": kind, "apiVersion": BY_KIND[kind].api_version, **obj}
                if key_of(obj) in wanted:
                    continue
                self.metrics.writes.labels("delete").inc()
                meta = obj["metadata"]
                await self.api.delete(
                    BY_KIND[kind], meta["name"], meta.get("namespace"), meta.get("uid")
                )

    async def _write_status(self, obj: JSON, status: JSON) -> None:
        current = obj.get("status") or {}
        if covers(current, status) and covers(status, current):
            return
        meta = obj["metadata"]
        kind = BY_KIND[obj["kind"]]
        # the whole status is ours: fields no longer wanted go (a merge patch keeps them)
        patch: JSON = {k: None for k in current if k not in status} | status
        gone = set(current.get("nodeStatus") or {}) - set(status.get("nodeStatus") or {})
        if gone:
            patch["nodeStatus"] = {**status["nodeStatus"], **dict.fromkeys(gone)}
        self.metrics.writes.labels("status").inc()
        try:
            await self.api.request(
                "PATCH",
                kind.path(meta.get("namespace"), meta["name"]) + "/status",
                body={"status": patch},
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status != 404:
                raise


__all__ = ["CACHE_LABEL", "ModelCacheController", "storage_uris"]
