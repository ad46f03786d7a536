"""The InferenceGraph controller: its own cache of graphs and work queue, beside the
InferenceService controller whose caches (InferenceServices, the ConfigMap, the children) and
apply it shares. A graph is re-reconciled when it changes, when one of its children changes,
when an InferenceService of its namespace changes (its address is what a step calls), and when
the configuration changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from wharf_api import (
    NoSupportingRuntimeError,
    WharfValidationError,
    default,
    parse_object,
    validate,
)
from wharf_api.defaulting import deployment_mode
from wharf_api.graph import Endpoint, Unresolved, model_name, resolve_steps
from wharf_api.names import GRAPH_LABEL
from wharf_api.plan import PlanError, plan_inference_service
from wharf_api.resources import InferenceService
from wharf_api.resources.inference_graph import InferenceGraph
from wharf_controller.controller import (
    Conflict,
    Controller,
    NotReconciled,
    _now,
)
from wharf_controller.decisions import covers, to_prune
from wharf_controller.desired.graph_knative import expected_graph_knative_service
from wharf_controller.desired.inference_graph import (
    GraphError,
    expected_graph_children,
    router_plan,
)
from wharf_controller.desired.meta import owner_reference
from wharf_controller.graph_status import KNATIVE, STANDARD, graph_knative_status, graph_status
from wharf_controller.kube.api import (
    BY_KIND,
    DEPLOYMENT,
    INFERENCE_GRAPH,
    KNATIVE_SERVICE,
    KNATIVE_SERVICE_KEY,
    ApiError,
    kind_key,
)
from wharf_controller.kube.informer import Informer
from wharf_controller.kube.queue import WorkQueue
from wharf_controller.kube.worker import reconcile_forever, start_worker
from wharf_controller.kube.worker import stop as stop_workers
from wharf_controller.status import failed_status

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]
KIND = "InferenceGraph"

REASONS: dict[type[Exception], str] = {
    WharfValidationError: "InvalidSpec",
    GraphError: "InvalidSpec",
}


def _key(obj: Mapping[str, Any]) -> Key:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def _service_names(graph: Mapping[str, Any]) -> set[str]:
    nodes = (graph.get("spec") or {}).get("nodes") or {}
    return {
        step["serviceName"]
        for node in nodes.values()
        for step in (node or {}).get("steps") or []
        if step.get("serviceName")
    }


class GraphController:
    def __init__(
        self,
        services: Controller,
        *,
        workers: int = 2,
        resync_s: float | None = None,
        watch_timeout_s: int = 300,
    ) -> None:
        self.services = services
        self.api = services.api
        self.metrics = services.metrics
        self.workers = workers
        self.resync_s = resync_s if resync_s is not None else services.resync_s
        self.queue: WorkQueue[Key] = WorkQueue()
        self.graphs = Informer(self.api, INFERENCE_GRAPH, watch_timeout_s=watch_timeout_s)
        self.reconciled = 0
        self._tasks: list[asyncio.Task[None]] = []

    # ---- wiring --------------------------------------------------------------------------
    async def start_caches(self) -> None:
        """After the InferenceService controller's `start_caches`: its caches are shared."""
        self.graphs.handlers.append(self._on_graph)
        self.services.services.handlers.append(self._on_service)
        self.services.configmap.handlers.append(lambda _e, _o, _p: self._enqueue_all())
        for informer in self.services.children.values():
            informer.handlers.append(self._on_child)
        self._tasks.append(asyncio.create_task(self.graphs.run()))
        await self.graphs.synced.wait()

    def caches_synced(self) -> bool:
        return self.graphs.synced.is_set()

    async def start_workers(self) -> None:
        for _ in range(self.workers):
            self._tasks.append(start_worker(self._worker()))
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        await stop_workers(self.queue, self._tasks)

    def _enqueue_all(self) -> None:
        for obj in self.graphs.items():
            self.queue.add(_key(obj))

    def _on_graph(self, event: str, obj: JSON, old: JSON | None) -> None:
        if event == "DELETED":
            return  # the garbage collector removes the children
        meta, before = obj["metadata"], (old or {}).get("metadata") or {}
        if (
            old is None
            or meta.get("generation") != before.get("generation")
            or meta.get("annotations") != before.get("annotations")
            or meta.get("labels") != before.get("labels")
        ):
            self.queue.add(_key(obj))

    def _on_service(self, _event: str, obj: JSON, _old: JSON | None) -> None:
        # any change, status included: a step calls the InferenceService's address
        namespace, name = _key(obj)
        for graph in self.graphs.items(namespace):
            if name in _service_names(graph):
                self.queue.add(_key(graph))

    def _on_child(self, _event: str, obj: JSON, _old: JSON | None) -> None:
        owner = (obj["metadata"].get("labels") or {}).get(GRAPH_LABEL)
        if owner:
            self.queue.add((_key(obj)[0], owner))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_s)
            self._enqueue_all()

    async def _worker(self) -> None:
        await reconcile_forever(
            self.queue,
            self.reconcile,
            kind=KIND,
            metrics=self.metrics,
            expected=(Conflict, ApiError),
            on_done=self._count_reconcile,
        )

    def _count_reconcile(self) -> None:
        self.reconciled += 1

    # ---- one reconcile --------------------------------------------------------------------
    def endpoints(self, namespace: str) -> dict[str, Endpoint | None]:
        """Each InferenceService of the namespace: its `status.address.url` and the protocol
        of its entry component (from its plan; one that cannot be planned has no address)."""
        catalog = self.services._catalog(self.services.config)
        runtimes = [r for r in catalog.runtimes if (r.metadata.namespace or "") == namespace]
        out: dict[str, Endpoint | None] = {}
        for obj in self.services.services.items(namespace):
            name = obj["metadata"]["name"]
            address = ((obj.get("status") or {}).get("address") or {}).get("url")
            if not address:
                out[name] = Endpoint(None)
                continue
            try:
                isvc = default(parse_object(dict(obj)))
                assert isinstance(isvc, InferenceService)
                plan = plan_inference_service(
                    isvc, runtimes, catalog.cluster_runtimes, config=self.services.config
                )
            except (WharfValidationError, PlanError, NoSupportingRuntimeError, ValueError):
                out[name] = Endpoint(None)
                continue
            out[name] = Endpoint(address, plan.entry.protocol, model_name(isvc))
        return out

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        obj = self.graphs.get(name, namespace)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        await self.reconcile_object(obj)

    async def reconcile_object(self, obj: JSON) -> None:
        meta = obj["metadata"]
        namespace, generation = meta.get("namespace") or "", int(meta.get("generation") or 0)
        previous = obj.get("status") or {}
        config = self.services.config
        mode = deployment_mode(obj, config.deploy.default_deployment_mode)
        desired: list[JSON] = []
        try:
            if self.services.config_error:
                raise NotReconciled("InvalidConfig", self.services.config_error)
            graph = default(parse_object(dict(obj)))
            assert isinstance(graph, InferenceGraph)
            validate(graph)
            if mode not in (STANDARD, KNATIVE):
                raise NotReconciled(
                    "UnsupportedDeploymentMode",
                    f"deployment mode {mode} is not reconciled by this controller",
                )
            if mode == KNATIVE and self.services.children[KNATIVE_SERVICE_KEY].missing:
                # said before any step resolves: nothing can run the graph until it is installed
                raise NotReconciled(
                    "MissingCRD", f"{KNATIVE_SERVICE.kind} is not served: install its CRD"
                )
            resolved, unresolved = resolve_steps(graph.spec, self.endpoints(namespace))
            if not unresolved and mode == KNATIVE:
                desired = [
                    expected_graph_knative_service(graph, resolved, config, owner_reference(obj))
                ]
            elif not unresolved:
                desired = expected_graph_children(graph, resolved, config, owner_reference(obj))
            for child in desired:
                if self.services.children[kind_key(child["apiVersion"], child["kind"])].missing:
                    raise NotReconciled(
                        "MissingCRD", f"{child['kind']} is not served: install its CRD"
                    )
        except (WharfValidationError, GraphError, NotReconciled) as exc:
            reason = (
                exc.reason
                if isinstance(exc, NotReconciled)
                else next(r for t, r in REASONS.items() if isinstance(exc, t))
            )
            await self._write_status(
                obj, failed_status(reason, str(exc), generation, _now(), previous, mode)
            )
            return
        if mode == KNATIVE:
            await self._reconcile_knative(obj, desired, unresolved, generation, previous)
            return
        url = router_plan(graph, config).url
        if unresolved:
            # as KServe, the router is not (re)made until every step resolves
            status = graph_status(
                generation=generation,
                now=_now(),
                previous=previous,
                url=url,
                deployment=None,
                unresolved=unresolved,
            )
            await self._write_status(obj, status)
            return
        await self.services._apply(desired)
        await self._prune(obj, desired)
        status = graph_status(
            generation=generation,
            now=_now(),
            previous=previous,
            url=url,
            deployment=self.services.children[DEPLOYMENT.kind].get(meta["name"], namespace),
        )
        await self._write_status(obj, status)

    async def _reconcile_knative(
        self,
        obj: JSON,
        desired: list[JSON],
        unresolved: list[Unresolved],
        generation: int,
        previous: JSON,
    ) -> None:
        meta = obj["metadata"]
        if not unresolved:
            await self.services._apply(desired)
            await self._prune(obj, desired)
        ksvc = self.services.children[KNATIVE_SERVICE_KEY].get(meta["name"], meta["namespace"])
        status = graph_knative_status(
            generation=generation,
            now=_now(),
            previous=previous,
            ksvc=ksvc,
            unresolved=unresolved,
        )
        await self._write_status(obj, status)

    async def _prune(self, owner: JSON, desired: list[JSON]) -> None:
        namespace, name = _key(owner)
        uid = owner["metadata"]["uid"]
        for informer in self.services.children.values():
            mine = [
                o
                for o in informer.items(namespace)
                if (o["metadata"].get("labels") or {}).get(GRAPH_LABEL) == name
            ]
            for obj in to_prune(mine, desired, uid):
                self.metrics.writes.labels("delete").inc()
                await self.api.delete(
                    BY_KIND[kind_key(obj["apiVersion"], obj["kind"])],
                    obj["metadata"]["name"],
                    namespace,
                    obj["metadata"].get("uid"),
                )

    async def _write_status(self, obj: JSON, status: JSON) -> None:
        current = obj.get("status") or {}
        patch = dict(status)
        # a merge patch keeps a field it does not name: the URL goes when the graph is not Ready
        if "url" in current and "url" not in status:
            patch["url"] = None
        elif covers(current, status):
            return
        meta = obj["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
        self.metrics.writes.labels("status").inc()
        try:
            await self.api.request(
                "PATCH",
                INFERENCE_GRAPH.path(meta.get("namespace"), meta["name"]) + "/status",
                body=body,
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(f"{meta['namespace']}/{meta['name']}: {exc.reason}") from None
            raise
