"""The local runtime: InferenceServices as revisions of supervised processes.

Decisions come from pure functions: the plan (`wharf_api.plan`), the conditions
(`wharf_api.status`), and one reconcile step per component (`reconcile`: rollout, traffic,
replica counts, which replicas go, download retries). This module keeps the state
(`state`), carries out the actions on a short tick, and hands processes to the `supervisor`
and requests to the `activator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from wharf_api import NoSupportingRuntimeError, parse_object
from wharf_api.config import InferenceServiceConfig
from wharf_api.llm import LLMPlanError, plan_llm_inference_service
from wharf_api.names import service_host
from wharf_api.plan import PlanError, ServicePlan, plan_inference_service
from wharf_api.resources import (
    ClusterServingRuntime,
    InferenceGraph,
    InferenceService,
    LLMInferenceService,
    LLMInferenceServiceConfig,
    ServingRuntime,
)
from wharf_api.status import COMMAND_NOT_FOUND
from wharf_api.status import service_status as compute_status
from wharf_local import reconcile
from wharf_local.activator import ActivationTimeout, LocalActivator
from wharf_local.cache import ModelCache
from wharf_local.catalog import CORE, Catalog, applied_key
from wharf_local.describe import describe as describe_service
from wharf_local.describe import shown_uri
from wharf_local.fetcher import ModelFetcher
from wharf_local.graphs import Graph, GraphRunner
from wharf_local.home import Home
from wharf_local.launch import CommandError, predictor_url, replica_process
from wharf_local.llms import LLMRunner, LLMService
from wharf_local.ports import free_port
from wharf_local.revisions import apply_plan
from wharf_local.routing import host_table
from wharf_local.settings import Settings
from wharf_local.snapshot import component_view
from wharf_local.state import (
    ApplyAction,
    ApplyResult,
    Component,
    Event,
    EventType,
    Replica,
    Revision,
    Service,
)
from wharf_local.supervisor import Supervisor, stop_all

__all__ = ["ActivationTimeout", "ApplyResult", "Component", "LocalRuntime", "Service"]

log = logging.getLogger("wharf.local")

TICK_S = 0.2
# the kinds that run processes: applying one reconciles at once
RUN_KINDS = frozenset({"InferenceService", "InferenceGraph", "LLMInferenceService"})
# where KServe keeps the LLMInferenceServiceConfigs every namespace may use
LLM_CONFIG_NAMESPACE = "kserve"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalRuntime:
    def __init__(self, home: Home, settings: Settings) -> None:
        self.home = home
        self.settings = settings
        self.services: dict[tuple[str, str], Service] = {}
        self.catalog = Catalog()
        self.hosts: dict[str, tuple[str, str, str | None]] = {}
        # called with a replica's HTTP port once its process has exited (the ingress drops its
        # pooled connections to that port)
        self.on_replica_exit: list[Callable[[int], None]] = []
        self.activator = LocalActivator(settings.activation_timeout_s)
        self.models = ModelCache(home.models)
        self.fetcher = ModelFetcher(
            self.models,
            settings.config,
            home.root / "secrets",
            lambda: self.catalog.applied,
            self._event,
            self._spawn,
        )
        self._policy = reconcile.Policy(settings.autoscale_window_s, settings.scale_to_zero_after_s)
        self._probe_client = httpx.AsyncClient()
        self._supervisor = Supervisor(self._probe_client, self._replica_exited)
        self._loop_task: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self.graph_runner = GraphRunner(
            self._probe_client,
            self._spawn,
            lambda namespace, name: home.log_dir(namespace, name, "router"),
            free_port,
            self.ingress_url,
            now_iso,
        )
        self.llm_runner = LLMRunner(
            self._probe_client, self._spawn, self.models, home.log_dir, free_port, now_iso
        )

    @property
    def llms(self) -> dict[tuple[str, str], LLMService]:
        return self.llm_runner.services

    @property
    def ingress_url(self) -> str:
        """How local processes reach the ingress (loopback when it listens on every address)."""
        host = self.settings.ingress_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.settings.ingress_port}"

    @property
    def graphs(self) -> dict[tuple[str, str], Graph]:
        return self.graph_runner.graphs

    @property
    def applied(self) -> dict[str, dict[str, Any]]:
        """ "Kind/namespace/name" (namespace empty when cluster-scoped) -> manifest as applied."""
        return self.catalog.applied

    @property
    def serving_runtimes(self) -> dict[tuple[str, str], ServingRuntime]:
        return self.catalog.serving_runtimes

    @property
    def cluster_runtimes(self) -> dict[str, ClusterServingRuntime]:
        return self.catalog.cluster_runtimes

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await asyncio.gather(*(self._stop_service(s) for s in list(self.services.values())))
        await self.graph_runner.close()
        await self.llm_runner.close()
        await self._probe_client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bug in one tick must not stop supervision
                log.exception("reconcile tick failed")
            await asyncio.sleep(TICK_S)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    # ---- apply / delete ----------------------------------------------------------------------

    def apply(self, documents: Iterable[dict[str, Any]]) -> list[ApplyResult]:
        """Parse, default, validate and apply each document; runtimes before services."""
        parsed, results = self.catalog.parse(documents)
        for doc, obj in parsed:
            results.append(self._apply_one(doc, obj))
        if any(r.kind in RUN_KINDS and r.error is None for r in results):
            # the status shown from now on is that of what was just applied (a client waits
            # for observedGeneration and must not read the previous spec's conditions)
            self.tick()
        return results

    def _apply_one(self, doc: dict[str, Any], obj: Any) -> ApplyResult:
        if obj is CORE:
            return self.catalog.apply_core(doc)
        namespace = obj.metadata.namespace or "default"
        if isinstance(obj, ServingRuntime | ClusterServingRuntime):
            return self.catalog.apply_runtime(doc, obj)
        if isinstance(obj, InferenceGraph):
            return self._apply_graph(doc, obj, namespace)
        if isinstance(obj, LLMInferenceServiceConfig):
            key = applied_key(obj.kind, namespace, obj.name)
            before = self.applied.get(key)
            self.applied[key] = doc
            action: ApplyAction = (
                "created" if before is None else "unchanged" if before == doc else "configured"
            )
            return ApplyResult(obj.kind, obj.name, namespace, action)
        if isinstance(obj, LLMInferenceService):
            return self._apply_llm(doc, obj, namespace)
        if not isinstance(obj, InferenceService):
            return ApplyResult(
                obj.kind,
                obj.name,
                namespace,
                "unsupported",
                error=f"{obj.kind} is not run by the local runtime yet (InferenceService, "
                "InferenceGraph, LLMInferenceService, ServingRuntime and ClusterServingRuntime "
                "are)",
            )
        try:
            plan = plan_inference_service(
                obj,
                self.catalog.runtimes_in(namespace),
                list(self.cluster_runtimes.values()),
                domain=self.settings.domain,
                config=self.settings.config,
            )
        except (NoSupportingRuntimeError, PlanError) as exc:
            return ApplyResult(obj.kind, obj.name, namespace, "invalid", error=str(exc))
        self.applied[applied_key(obj.kind, namespace, obj.name)] = doc
        action = self._apply_service(namespace, obj.name, doc, plan)
        svc = self.services[(namespace, obj.name)]
        return ApplyResult(
            obj.kind, obj.name, namespace, action, url=plan.url, generation=svc.generation
        )

    def _apply_graph(self, doc: dict[str, Any], obj: InferenceGraph, namespace: str) -> ApplyResult:
        """An InferenceGraph: one router process, (re)started by the tick when its graph or the
        services it names change."""
        key = (namespace, obj.name)
        host = service_host(
            obj.name, namespace, self.settings.domain, self.settings.config.ingress.domain_template
        )
        graph = self.graphs.get(key)
        action: ApplyAction
        if graph is None:
            graph = Graph(
                namespace, obj.name, doc, obj.spec, f"http://{host}", 1, now_iso(), time.monotonic()
            )
            self.graphs[key] = graph
            action = "created"
        elif graph.manifest == doc:
            action = "unchanged"
        else:
            graph.manifest, graph.spec = doc, obj.spec
            graph.generation += 1
            action = "configured"
        self.applied[applied_key(obj.kind, namespace, obj.name)] = doc
        self._refresh_hosts()
        return ApplyResult(
            obj.kind, obj.name, namespace, action, url=graph.url, generation=graph.generation
        )

    def llm_configs(self, namespace: str) -> dict[str, LLMInferenceServiceConfig]:
        """The LLMInferenceServiceConfigs a service may name: its namespace's, then `kserve`'s."""
        found: dict[str, LLMInferenceServiceConfig] = {}
        for ns in (LLM_CONFIG_NAMESPACE, namespace):
            prefix = f"LLMInferenceServiceConfig/{ns}/"
            for key, doc in self.applied.items():
                if key.startswith(prefix):
                    parsed = parse_object(doc)
                    if isinstance(parsed, LLMInferenceServiceConfig):
                        found[key[len(prefix) :]] = parsed
        return found

    def _llm_config(self) -> InferenceServiceConfig:
        """`inferenceservice-config` with the ingress domain the runtime routes (WHARF_DOMAIN)."""
        config = self.settings.config
        if config.ingress.ingress_domain == self.settings.domain:
            return config
        ingress = config.ingress.model_copy(update={"ingress_domain": self.settings.domain})
        return config.model_copy(update={"ingress": ingress})

    def _apply_llm(
        self, doc: dict[str, Any], obj: LLMInferenceService, namespace: str
    ) -> ApplyResult:
        """An LLMInferenceService: worker processes, and a router when it has a scheduler."""
        try:
            plan = plan_llm_inference_service(
                obj, self.llm_configs(namespace), config=self._llm_config()
            )
        except (LLMPlanError, ValueError) as exc:
            return ApplyResult(obj.kind, obj.name, namespace, "invalid", error=str(exc))
        key = (namespace, obj.name)
        svc = self.llms.get(key)
        action: ApplyAction
        if svc is None:
            svc = LLMService(namespace, obj.name, doc, plan, 1, now_iso(), time.monotonic())
            self.llms[key] = svc
            action = "created"
        elif svc.manifest == doc and svc.plan == plan:
            action = "retried" if self.llm_runner.retry(svc) else "unchanged"
        else:
            self.llm_runner.apply(svc, plan, doc)
            action = "configured"
        self.applied[applied_key(obj.kind, namespace, obj.name)] = doc
        self._refresh_hosts()
        return ApplyResult(
            obj.kind, obj.name, namespace, action, url=plan.url, generation=svc.generation
        )

    def _apply_service(
        self, namespace: str, name: str, doc: dict[str, Any], plan: ServicePlan
    ) -> ApplyAction:
        svc = self.services.get((namespace, name))
        created = svc is None
        if svc is None:
            svc = Service(namespace, name, doc, plan, 1, now_iso(), time.monotonic())
            self.services[(namespace, name)] = svc
        change = apply_plan(svc, doc, plan, created)
        if change.action == "unchanged":
            return "retried" if self.fetcher.retry_failed(svc) else "unchanged"
        for rev in change.new_revisions:
            message = f"model {shown_uri(rev.plan.storage_uri)}"
            self._event(svc, "Normal", "RevisionCreated", message, rev.name)
            self.fetcher.start(svc, rev)
        for comp in change.removed:
            self._spawn(self._stop_component(comp))
        self._refresh_hosts()
        return change.action

    async def delete(self, namespace: str, name: str) -> bool:
        svc = self.services.pop((namespace, name), None)
        self.applied.pop(f"InferenceService/{namespace}/{name}", None)
        if svc is None:
            return False
        self._refresh_hosts()
        await self._stop_service(svc)
        return True

    async def delete_object(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete an applied object of any kind the runtime accepts; False when unknown.

        `kind` is the manifest's kind (`InferenceService`, `ServingRuntime`,
        `ClusterServingRuntime`, ...); `namespace` is ignored for cluster-scoped kinds. Deleting
        an applied ClusterServingRuntime that shadowed a built-in one brings the built-in back.
        """
        if kind == "InferenceService":
            return await self.delete(namespace or "default", name)
        if kind == "InferenceGraph":
            graph = self.graphs.pop((namespace or "default", name), None)
            self.applied.pop(applied_key(kind, namespace or "default", name), None)
            if graph is None:
                return False
            self._refresh_hosts()
            await self.graph_runner.stop(graph)
            return True
        if kind == "LLMInferenceService":
            llm = self.llms.pop((namespace or "default", name), None)
            self.applied.pop(applied_key(kind, namespace or "default", name), None)
            if llm is None:
                return False
            self._refresh_hosts()
            await self.llm_runner.stop(llm)
            return True
        return self.catalog.delete(kind, namespace, name)

    def _refresh_hosts(self) -> None:
        self.hosts = host_table(
            [(s.namespace, s.name, list(s.components)) for s in self.services.values()],
            self.settings.domain,
            self.settings.config.ingress.domain_template,
            graphs=list(self.graphs),
            llms=list(self.llms),
        )

    def _event(self, svc: Service, type_: EventType, reason: str, message: str, obj: str) -> None:
        svc.events.append(Event(now_iso(), type_, reason, message, obj))
        log.info("%s/%s %s %s: %s", svc.namespace, svc.name, type_, reason, message)

    # ---- the tick -----------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for svc in list(self.services.values()):
            observations = []
            for comp in svc.components.values():
                view = component_view(comp, now, self.settings.autoscale_window_s)
                step = reconcile.reconcile_component(view, self._policy, now)
                if step.traffic != comp.traffic:
                    comp.swrr = {}
                comp.rollout, comp.traffic = step.rollout, step.traffic
                for action in step.actions:
                    self._carry_out(svc, comp, action)
                observations.append(step.observation(view))
            self._update_status(svc, observations)
        self.graph_runner.reconcile(self._service_plans())
        self.llm_runner.reconcile()

    def _service_plans(self) -> dict[str, dict[str, ServicePlan]]:
        """namespace -> InferenceService -> its plan: what a graph's `serviceName` step is
        resolved with (the entry component's protocol, the model's name)."""
        plans: dict[str, dict[str, ServicePlan]] = {}
        for svc in self.services.values():
            plans.setdefault(svc.namespace, {})[svc.name] = svc.plan
        return plans

    def _carry_out(self, svc: Service, comp: Component, action: reconcile.Action) -> None:
        if isinstance(action, reconcile.Note):
            self._event(svc, action.type, action.reason, action.message, action.object)
            return
        rev = comp.revisions.get(action.revision)
        if rev is None:
            return
        replica = None
        if isinstance(
            action, reconcile.ForgetReplica | reconcile.RestartReplica | reconcile.StopReplica
        ):
            replica = next((r for r in rev.replicas if r.index == action.index), None)
        if isinstance(action, reconcile.StartReplicas):
            for _ in range(action.count):
                self._add_replica(svc, rev)
        elif isinstance(action, reconcile.DrainReplicas):
            for r in rev.replicas:
                if r.index in action.indexes:
                    r.state = "draining"
            rev.notify()
        elif isinstance(action, reconcile.RestartReplica) and replica is not None:
            self._restart_replica(svc, rev, replica)
        elif isinstance(action, reconcile.StopReplica) and replica is not None:
            if replica.task is not None and not replica.task.done():
                replica.task.cancel()
            else:
                replica.state = "stopped"
        elif isinstance(action, reconcile.ForgetReplica) and replica is not None:
            rev.replicas.remove(replica)
        elif isinstance(action, reconcile.RetryDownload):
            rev.retry_at = None
            self.fetcher.start(svc, rev)
        elif isinstance(action, reconcile.RetireRevision):
            comp.revisions.pop(rev.name, None)

    def _restart_replica(self, svc: Service, rev: Revision, replica: Replica) -> None:
        # new ports: whatever took the old ones (another program, a child that has not let
        # go) would make every restart fail the same way
        replica.http_port = free_port()
        if replica.grpc_port is not None:
            replica.grpc_port = free_port()
        replica.state = "starting"
        replica.task = self._spawn(self._run_replica(svc, rev, replica))

    def _add_replica(self, svc: Service, rev: Revision) -> None:
        grpc = free_port() if rev.plan.grpc_port is not None else None
        replica = Replica(rev.next_index, free_port(), grpc)
        rev.next_index += 1
        rev.replicas.append(replica)
        replica.task = self._spawn(self._run_replica(svc, rev, replica))

    async def _run_replica(self, svc: Service, rev: Revision, replica: Replica) -> None:
        settings = self.settings
        try:
            argv, env = replica_process(
                rev.plan,
                http_port=replica.http_port,
                grpc_port=replica.grpc_port,
                model_dirs=rev.model_dirs,
                predictor=predictor_url(
                    settings.ingress_host, settings.ingress_port, svc.namespace, svc.name
                ),
            )
        except CommandError as exc:
            rev.failure = (COMMAND_NOT_FOUND, str(exc))
            self._event(svc, "Warning", COMMAND_NOT_FOUND, str(exc), rev.name)
            replica.state = "stopped"
            rev.notify()
            return
        log_path = self.home.log_dir(svc.namespace, svc.name, rev.plan.component) / (
            f"{rev.name}-{replica.index}.log"
        )

        def emit(type_: EventType, reason: str, message: str, obj: str) -> None:
            self._event(svc, type_, reason, message, obj)

        await self._supervisor.run(rev, replica, argv, env, log_path, emit)

    def _replica_exited(self, port: int) -> None:
        for hook in self.on_replica_exit:
            hook(port)

    async def _stop_component(self, comp: Component) -> None:
        await stop_all([r for rev in comp.revisions.values() for r in rev.replicas])

    async def _stop_service(self, svc: Service) -> None:
        await asyncio.gather(*(self._stop_component(c) for c in svc.components.values()))

    # ---- status -------------------------------------------------------------------------------

    def _update_status(self, svc: Service, observations: list[Any]) -> None:
        before = svc.conditions
        svc.status = compute_status(observations, svc.generation, now_iso(), before)
        ready = next(c for c in svc.conditions if c.type == "Ready")
        was = next((c for c in before if c.type == "Ready"), None)
        if was is None or was.status != ready.status:
            if ready.status == "True":
                self._event(svc, "Normal", "Ready", f"{svc.plan.url} is ready", svc.name)
            elif was is not None:
                self._event(
                    svc, "Warning", ready.reason or "NotReady", ready.message or "", svc.name
                )

    def describe(self, svc: Service) -> dict[str, Any]:
        """The object as `kubectl get -o yaml` would show it, plus local details."""
        return describe_service(svc)

    # ---- data path (used by the ingress) -------------------------------------------------------

    async def acquire(self, svc: Service, comp: Component) -> tuple[Revision, Replica]:
        """A replica for one request, holding the request while a revision cold-starts."""
        return await self.activator.acquire(comp)

    def release(self, rev: Revision, replica: Replica) -> None:
        self.activator.release(rev, replica)

    def mark_unreachable(self, rev: Revision, replica: Replica) -> None:
        self.activator.mark_unreachable(rev, replica)
