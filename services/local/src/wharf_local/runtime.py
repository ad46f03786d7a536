"""The local runtime: InferenceServices as revisions of supervised processes.

Every decision comes from a pure function: the plan (`wharf_api.plan`), the traffic and rollout
(`wharf_api.traffic`), the replica count (`autoscaler`), restart delays (`backoff`) and the
conditions (`status`). This module keeps the state, runs the processes and applies the
decisions on a short tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from wharf_api import NoSupportingRuntimeError, WharfValidationError, default, parse_object
from wharf_api import validate as validate_resource
from wharf_api.plan import (
    ComponentPlan,
    PlanError,
    ServicePlan,
    plan_inference_service,
    rebind_args,
)
from wharf_api.resources import ClusterServingRuntime, InferenceService, ServingRuntime
from wharf_api.traffic import (
    RolloutState,
    TrafficTarget,
    after_traffic,
    revision_name,
    revisions_in_use,
    traffic_targets,
)
from wharf_local import autoscaler, backoff, status
from wharf_local.balancer import least_loaded, swrr_pick
from wharf_local.cache import fetch
from wharf_local.home import Home
from wharf_local.processes import ManagedProcess, probe_ready, resolve_command
from wharf_local.routing import host_table
from wharf_local.runtimes import builtin_runtimes
from wharf_local.settings import Settings
from wharf_storage import redact_uri

log = logging.getLogger("wharf.local")


def _shown(uri: str | None) -> str | None:
    """A storage URI as events and status show it: no user info or query (SAS tokens)."""
    return None if uri is None else redact_uri(uri)


TICK_S = 0.2
PROBE_INTERVAL_S = 0.1


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ActivationTimeout(Exception):
    """No replica became ready for a held request in time."""


@dataclass
class Event:
    time: str
    type: str
    reason: str
    message: str
    object: str


@dataclass
class Replica:
    index: int
    http_port: int
    grpc_port: int | None
    process: ManagedProcess | None = None
    state: str = "starting"  # starting, ready, draining, backoff, stopped
    inflight: int = 0
    crashes: int = 0
    restart_at: float = 0.0
    task: asyncio.Task[None] | None = None


@dataclass
class Revision:
    name: str
    number: int
    plan: ComponentPlan
    model_dirs: dict[str, str] | None = None
    failure: tuple[str, str] | None = None  # (reason, message): cannot run at all
    last_crash: str | None = None
    replicas: list[Replica] = field(default_factory=list)
    ready_once: bool = False
    inflight: int = 0
    waiting: int = 0
    requests: deque[float] = field(default_factory=deque)
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    last_request: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    next_index: int = 0

    def ready_replicas(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == "ready"]

    def live_replicas(self) -> list[Replica]:
        return [r for r in self.replicas if r.state in ("starting", "ready", "backoff")]

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class Component:
    plan: ComponentPlan
    revisions: dict[str, Revision] = field(default_factory=dict)
    rollout: RolloutState = field(default_factory=RolloutState)
    traffic: tuple[TrafficTarget, ...] = ()
    swrr: dict[str, int] = field(default_factory=dict)
    next_number: int = 1

    def pick_revision(self) -> Revision | None:
        weights = {t.revision: t.percent for t in self.traffic}
        chosen, self.swrr = swrr_pick(weights, self.swrr)
        return self.revisions.get(chosen) if chosen else None


@dataclass
class Service:
    namespace: str
    name: str
    manifest: dict[str, Any]
    plan: ServicePlan
    generation: int
    created: str
    created_at: float
    components: dict[str, Component] = field(default_factory=dict)
    conditions: list[status.Condition] = field(default_factory=list)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=50))
    observed_generation: int = 0


@dataclass
class ApplyResult:
    kind: str
    name: str
    namespace: str | None
    action: str
    url: str | None = None
    error: str | None = None


class LocalRuntime:
    def __init__(self, home: Home, settings: Settings) -> None:
        self.home = home
        self.settings = settings
        self.services: dict[tuple[str, str], Service] = {}
        self.serving_runtimes: dict[tuple[str, str], ServingRuntime] = {}
        self.cluster_runtimes: dict[str, ClusterServingRuntime] = {
            rt.name: rt for rt in builtin_runtimes()
        }
        self.hosts: dict[str, tuple[str, str, str | None]] = {}
        self.applied: dict[str, dict[str, Any]] = {}
        self._probe_client = httpx.AsyncClient()
        self._loop_task: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        # called with a replica's HTTP port once its process has exited (the ingress drops its
        # pooled connections to that port)
        self.on_replica_exit: list[Callable[[int], None]] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await asyncio.gather(*(self._stop_service(s) for s in list(self.services.values())))
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
        parsed: list[tuple[dict[str, Any], Any]] = []
        results: list[ApplyResult] = []
        for doc in documents:
            meta = doc.get("metadata") or {}
            try:
                obj = default(parse_object(doc))
                validate_resource(obj)
            except WharfValidationError as exc:
                results.append(
                    ApplyResult(
                        str(doc.get("kind")), str(meta.get("name")), None, "invalid", error=str(exc)
                    )
                )
                continue
            parsed.append((doc, obj))
        parsed.sort(
            key=lambda p: 0 if isinstance(p[1], ServingRuntime | ClusterServingRuntime) else 1
        )
        for doc, obj in parsed:
            results.append(self._apply_one(doc, obj))
        return results

    def _apply_one(self, doc: dict[str, Any], obj: Any) -> ApplyResult:
        namespace = obj.metadata.namespace or "default"
        if isinstance(obj, ClusterServingRuntime):
            old = self.cluster_runtimes.get(obj.name)
            action = "created" if old is None else "unchanged" if old == obj else "configured"
            self.cluster_runtimes[obj.name] = obj
            self.applied[f"ClusterServingRuntime//{obj.name}"] = doc
            return ApplyResult(obj.kind, obj.name, None, action)
        if isinstance(obj, ServingRuntime):
            key = (namespace, obj.name)
            old_rt = self.serving_runtimes.get(key)
            action = "created" if old_rt is None else "unchanged" if old_rt == obj else "configured"
            self.serving_runtimes[key] = obj
            self.applied[f"ServingRuntime/{namespace}/{obj.name}"] = doc
            return ApplyResult(obj.kind, obj.name, namespace, action)
        if not isinstance(obj, InferenceService):
            return ApplyResult(
                obj.kind,
                obj.name,
                namespace,
                "unsupported",
                error=f"{obj.kind} is not run by the local runtime yet (InferenceService, "
                "ServingRuntime and ClusterServingRuntime are)",
            )
        runtimes = [rt for (ns, _), rt in self.serving_runtimes.items() if ns == namespace]
        try:
            plan = plan_inference_service(
                obj, runtimes, list(self.cluster_runtimes.values()), domain=self.settings.domain
            )
        except (NoSupportingRuntimeError, PlanError) as exc:
            return ApplyResult(obj.kind, obj.name, namespace, "invalid", error=str(exc))
        self.applied[f"InferenceService/{namespace}/{obj.name}"] = doc
        action = self._apply_service(namespace, obj.name, doc, plan)
        return ApplyResult(obj.kind, obj.name, namespace, action, url=plan.url)

    def _apply_service(
        self, namespace: str, name: str, doc: dict[str, Any], plan: ServicePlan
    ) -> str:
        key = (namespace, name)
        svc = self.services.get(key)
        if svc is None:
            svc = Service(namespace, name, doc, plan, 1, now_iso(), time.monotonic())
            self.services[key] = svc
            action = "created"
        elif svc.plan == plan and svc.manifest == doc:
            return "unchanged"
        else:
            svc.generation += 1
            svc.manifest, svc.plan = doc, plan
            action = "configured"
        for cplan in plan.components:
            comp = svc.components.get(cplan.component)
            if comp is None:
                comp = svc.components[cplan.component] = Component(cplan)
            comp.plan = cplan
            latest = comp.revisions.get(comp.rollout.latest_created or "")
            if latest is None or latest.plan.revision_key() != cplan.revision_key():
                self._new_revision(svc, comp)
            else:
                latest.plan = cplan
        for gone in set(svc.components) - {c.component for c in plan.components}:
            self._spawn(self._stop_component(svc.components.pop(gone)))
        self._refresh_hosts()
        return action

    def _new_revision(self, svc: Service, comp: Component) -> None:
        name = revision_name(comp.plan.service_name, comp.next_number)
        rev = Revision(name, comp.next_number, comp.plan)
        comp.next_number += 1
        comp.revisions[name] = rev
        comp.rollout = RolloutState(
            latest_created=name,
            latest_ready=comp.rollout.latest_ready,
            latest_rolledout=comp.rollout.latest_rolledout,
            previous_rolledout=comp.rollout.previous_rolledout,
        )
        self._event(svc, "Normal", "RevisionCreated", f"model {_shown(rev.plan.storage_uri)}", name)
        self._spawn(self._fetch_models(svc, rev))

    async def _fetch_models(self, svc: Service, rev: Revision) -> None:
        dirs: dict[str, str] = {}
        for mount in rev.plan.storage:
            started = time.monotonic()
            try:
                result = await fetch(self.home.models, mount.uri)
            except Exception as exc:
                rev.failure = ("ModelDownloadFailed", f"storageUri: {exc}")
                self._event(svc, "Warning", "ModelDownloadFailed", rev.failure[1], rev.name)
                rev.notify()
                return
            dirs[mount.mount_path] = str(result.path)
            how = (
                f"downloaded {result.fetched_bytes} bytes"
                if result.fetched_bytes
                else "cached or linked, nothing downloaded"
            )
            self._event(
                svc,
                "Normal",
                "ModelReady",
                f"{redact_uri(result.uri)} -> {result.path} ({how}, {time.monotonic() - started:.2f}s)",
                rev.name,
            )
        rev.model_dirs = dirs

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
        `ClusterServingRuntime`, ...); `namespace` is ignored for cluster-scoped kinds.
        """
        if kind == "InferenceService":
            return await self.delete(namespace or "default", name)
        if kind == "ClusterServingRuntime":
            if self.applied.pop(f"ClusterServingRuntime//{name}", None) is None:
                return False
            builtin = {rt.name: rt for rt in builtin_runtimes()}
            if name in builtin:
                self.cluster_runtimes[name] = builtin[name]
            else:
                self.cluster_runtimes.pop(name, None)
            return True
        if kind == "ServingRuntime":
            ns = namespace or "default"
            self.serving_runtimes.pop((ns, name), None)
            return self.applied.pop(f"ServingRuntime/{ns}/{name}", None) is not None
        return self.applied.pop(f"{kind}/{namespace or ''}/{name}", None) is not None

    def _refresh_hosts(self) -> None:
        self.hosts = host_table(
            [(s.namespace, s.name, list(s.components)) for s in self.services.values()],
            self.settings.domain,
        )

    def _event(self, svc: Service, type_: str, reason: str, message: str, obj: str) -> None:
        svc.events.append(Event(now_iso(), type_, reason, message, obj))
        log.info("%s/%s %s %s: %s", svc.namespace, svc.name, type_, reason, message)

    # ---- the tick -----------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for svc in list(self.services.values()):
            for comp in svc.components.values():
                self._reconcile_component(svc, comp, now)
            self._update_status(svc)

    def _reconcile_component(self, svc: Service, comp: Component, now: float) -> None:
        # rollout: the newest revision that has been ready becomes latest ready
        ready = [r for r in comp.revisions.values() if r.ready_once]
        newest_ready = max(ready, key=lambda r: r.number).name if ready else None
        if newest_ready != comp.rollout.latest_ready and newest_ready is not None:
            comp.rollout = RolloutState(
                comp.rollout.latest_created,
                newest_ready,
                comp.rollout.latest_rolledout,
                comp.rollout.previous_rolledout,
            )
        targets = traffic_targets(comp.rollout, comp.plan.canary_traffic_percent)
        if targets != comp.traffic:
            comp.traffic = targets
            comp.swrr = {}
            split = ", ".join(f"{t.revision}={t.percent}%" for t in targets)
            self._event(svc, "Normal", "TrafficUpdated", split, comp.plan.service_name)
        comp.rollout = after_traffic(comp.rollout, targets)
        keep = revisions_in_use(comp.rollout, targets)
        for rev in list(comp.revisions.values()):
            self._sample(rev, now)
            if rev.name in keep:
                self._scale(svc, comp, rev, self._desired(comp, rev, now))
            elif rev.waiting == 0:
                # out of traffic: drain (each replica stops once its requests are done)
                self._scale(svc, comp, rev, 0)
                if not rev.replicas:
                    del comp.revisions[rev.name]
                    self._event(svc, "Normal", "RevisionDrained", f"stopped {rev.name}", rev.name)

    def _sample(self, rev: Revision, now: float) -> None:
        window = self.settings.autoscale_window_s
        rev.samples.append((now, rev.inflight + rev.waiting))
        while rev.samples and rev.samples[0][0] < now - window:
            rev.samples.popleft()
        while rev.requests and rev.requests[0] < now - window:
            rev.requests.popleft()

    def _desired(self, comp: Component, rev: Revision, now: float) -> int:
        plan = rev.plan if rev.name != comp.rollout.latest_created else comp.plan
        scaling = plan.scaling
        if rev.failure is not None:
            return 0
        if not rev.ready_once:
            # a new revision starts with its initial scale so it can become ready
            return max(1, scaling.min_replicas)
        window = self.settings.autoscale_window_s
        concurrency = sum(v for _, v in rev.samples) / len(rev.samples) if rev.samples else 0.0
        obs = autoscaler.Observation(
            concurrency=concurrency,
            rps=len(rev.requests) / window,
            idle_s=now - rev.last_request,
            waiting=rev.waiting,
        )
        bounds = autoscaler.Bounds(
            scaling.min_replicas, scaling.max_replicas, scaling.metric, scaling.target
        )
        current = len(rev.live_replicas())
        return autoscaler.recommend(
            bounds, obs, current, scale_to_zero_after_s=self.settings.scale_to_zero_after_s
        )

    def _scale(self, svc: Service, comp: Component, rev: Revision, desired: int) -> None:
        now = time.monotonic()
        for replica in list(rev.replicas):
            if replica.state == "stopped":
                rev.replicas.remove(replica)
            elif replica.state == "backoff" and now >= replica.restart_at:
                replica.state = "starting"
                replica.task = self._spawn(self._run_replica(svc, rev, replica))
            elif replica.state == "draining" and replica.inflight == 0:
                # its last request has finished: now the process can go
                if replica.task is not None and not replica.task.done():
                    replica.task.cancel()
                else:
                    replica.state = "stopped"
        live = rev.live_replicas()
        if desired == len(live) or (rev.model_dirs is None and desired > 0):
            return
        self._event(svc, "Normal", "Scaled", f"{len(live)} -> {desired} replicas", rev.name)
        if len(live) < desired:
            for _ in range(desired - len(live)):
                self._add_replica(svc, rev)
            return
        # drop replicas that are not ready first, then the least loaded ones
        victims = sorted(live, key=lambda r: (r.state == "ready", r.inflight, -r.index))
        for replica in victims[: len(live) - desired]:
            replica.state = "draining"
        rev.notify()

    def _add_replica(self, svc: Service, rev: Revision) -> None:
        grpc = free_port() if rev.plan.grpc_port is not None else None
        replica = Replica(rev.next_index, free_port(), grpc)
        rev.next_index += 1
        rev.replicas.append(replica)
        replica.task = self._spawn(self._run_replica(svc, rev, replica))

    async def _run_replica(self, svc: Service, rev: Revision, replica: Replica) -> None:
        plan = rev.plan
        args = rebind_args(
            plan.container.args,
            http_port=replica.http_port,
            grpc_port=replica.grpc_port,
            model_dirs=rev.model_dirs,
            predictor_host=self._predictor_url(svc) if plan.component != "predictor" else None,
        )
        log_path = self.home.log_dir(svc.namespace, svc.name, plan.component) / (
            f"{rev.name}-{replica.index}.log"
        )
        env = {k: v for k, v in plan.container.env}
        env |= {
            "PYTHONUNBUFFERED": "1",
            "PORT": str(replica.http_port),
            # Replicas answer on loopback only: the ingress is the one way in.
            "WHARF_BIND_HOST": "127.0.0.1",
        }
        try:
            argv = resolve_command(plan.container.command) + list(args)
        except (ValueError, FileNotFoundError) as exc:
            rev.failure = ("CommandNotFound", str(exc))
            self._event(svc, "Warning", "CommandNotFound", str(exc), rev.name)
            replica.state = "stopped"
            rev.notify()
            return
        proc = ManagedProcess(argv, env, log_path)
        replica.process = proc
        await proc.start()
        self._event(
            svc,
            "Normal",
            "Started",
            f"replica {replica.index} pid {proc.pid} "
            f"http :{replica.http_port}"
            + (f" grpc :{replica.grpc_port}" if replica.grpc_port else ""),
            rev.name,
        )
        exited = asyncio.ensure_future(proc.wait())
        exited.add_done_callback(lambda _: self._replica_exited(replica.http_port))
        try:
            while not exited.done():
                if await probe_ready(self._probe_client, replica.http_port):
                    replica.state = "ready"
                    rev.ready_once = True
                    rev.last_crash = None
                    rev.notify()
                    break
                await asyncio.wait({exited}, timeout=PROBE_INTERVAL_S)
            code = await exited
        except asyncio.CancelledError:
            # scaled down or deleted: stop the process, then leave
            await proc.stop()
            replica.state = "stopped"
            rev.notify()
            raise
        if replica.state == "draining" or proc.stopping:
            replica.state = "stopped"
            return
        replica.state = "backoff"
        replica.crashes = backoff.crashes_in_a_row(replica.crashes, proc.uptime())
        delay = backoff.restart_delay(replica.crashes)
        replica.restart_at = time.monotonic() + delay
        replica.task = None
        tail = _tail(log_path)
        self._event(
            svc,
            "Warning",
            "BackOff",
            f"replica {replica.index} exited with code {code}; restarting in "
            f"{delay:.0f}s (crash {replica.crashes} in a row){tail}",
            rev.name,
        )
        rev.last_crash = f"exited with code {code}{tail}"
        rev.notify()

    def _replica_exited(self, port: int) -> None:
        for hook in self.on_replica_exit:
            hook(port)

    def _predictor_url(self, svc: Service) -> str:
        """Where a transformer or explainer reaches its predictor: through the ingress, by the
        predictor's path, so the predictor keeps its traffic split, autoscaling and activator."""
        host = self.settings.ingress_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return (
            f"http://{host}:{self.settings.ingress_port}/serving/{svc.namespace}/"
            f"{svc.name}-predictor"
        )

    async def _stop_component(self, comp: Component) -> None:
        tasks = []
        for rev in comp.revisions.values():
            for replica in rev.replicas:
                if replica.task is not None:
                    replica.task.cancel()
                if replica.process is not None:
                    tasks.append(replica.process.stop())
        await asyncio.gather(*tasks)

    async def _stop_service(self, svc: Service) -> None:
        await asyncio.gather(*(self._stop_component(c) for c in svc.components.values()))

    # ---- status -------------------------------------------------------------------------------

    def _component_readiness(self, comp: Component) -> status.ComponentReadiness:
        name = comp.plan.component
        latest = comp.revisions.get(comp.rollout.latest_created or "")
        if latest is not None and latest.failure is not None:
            return status.ComponentReadiness(name, False, *latest.failure)
        if latest is not None and not latest.ready_once and latest.last_crash is not None:
            return status.ComponentReadiness(name, False, "CrashLoopBackOff", latest.last_crash)
        if not comp.traffic:
            return status.ComponentReadiness(
                name, False, "RevisionMissing", "no revision is ready yet"
            )
        if comp.rollout.latest_ready != comp.rollout.latest_created:
            return status.ComponentReadiness(
                name, False, "RolloutInProgress", f"waiting for {comp.rollout.latest_created}"
            )
        return status.ComponentReadiness(name, True)

    def _update_status(self, svc: Service) -> None:
        readiness = [self._component_readiness(c) for c in svc.components.values()]
        routed = all(c.traffic for c in svc.components.values())
        before = svc.conditions
        svc.conditions = status.conditions(readiness, routed, now_iso(), before)
        ready = next(c for c in svc.conditions if c.type == "Ready")
        was = next((c for c in before if c.type == "Ready"), None)
        if was is None or was.status != ready.status:
            if ready.status == "True":
                svc.observed_generation = svc.generation
                self._event(svc, "Normal", "Ready", f"{svc.plan.url} is ready", svc.name)
            elif was is not None:
                self._event(
                    svc, "Warning", ready.reason or "NotReady", ready.message or "", svc.name
                )
        elif ready.status == "True":
            svc.observed_generation = svc.generation

    def describe(self, svc: Service) -> dict[str, Any]:
        """The object as `kubectl get -o yaml` would show it, plus local details."""
        components: dict[str, Any] = {}
        local: dict[str, Any] = {}
        for name, comp in svc.components.items():
            components[name] = {
                "latestCreatedRevision": comp.rollout.latest_created,
                "latestReadyRevision": comp.rollout.latest_ready,
                "latestRolledoutRevision": comp.rollout.latest_rolledout,
                "previousRolledoutRevision": comp.rollout.previous_rolledout,
                "traffic": [
                    {
                        "revisionName": t.revision,
                        "percent": t.percent,
                        "tag": t.tag,
                        "latestRevision": t.latest_revision,
                    }
                    for t in comp.traffic
                ],
            }
            local[name] = [
                {
                    "name": rev.name,
                    "storageUri": _shown(rev.plan.storage_uri),
                    "modelDirs": rev.model_dirs,
                    "inflight": rev.inflight,
                    "failure": list(rev.failure) if rev.failure else None,
                    "replicas": [
                        {
                            "index": r.index,
                            "state": r.state,
                            "pid": r.process.pid if r.process else None,
                            "httpPort": r.http_port,
                            "grpcPort": r.grpc_port,
                            "inflight": r.inflight,
                            "crashes": r.crashes,
                            "log": str(r.process.log_path) if r.process else None,
                        }
                        for r in rev.replicas
                    ],
                }
                for rev in comp.revisions.values()
            ]
        metadata = dict(svc.manifest.get("metadata") or {})
        metadata.update(
            namespace=svc.namespace, generation=svc.generation, creationTimestamp=svc.created
        )
        return {
            **svc.manifest,
            "metadata": metadata,
            "status": {
                "url": svc.plan.url,
                "observedGeneration": svc.observed_generation,
                "conditions": [
                    {
                        k: v
                        for k, v in {
                            "type": c.type,
                            "status": c.status,
                            "lastTransitionTime": c.last_transition_time,
                            "reason": c.reason,
                            "message": c.message,
                        }.items()
                        if v is not None
                    }
                    for c in svc.conditions
                ],
                "components": components,
            },
            "local": {
                "revisions": local,
                "events": [e.__dict__ for e in svc.events],
                "ageSeconds": round(time.monotonic() - svc.created_at, 1),
            },
        }

    # ---- data path (used by the ingress) -------------------------------------------------------

    async def acquire(self, svc: Service, comp: Component) -> tuple[Revision, Replica]:
        """A replica for one request, holding the request while a revision cold-starts."""
        deadline = time.monotonic() + self.settings.activation_timeout_s
        while True:
            rev = comp.pick_revision()
            if rev is None:
                rev = comp.revisions.get(comp.rollout.latest_created or "")
            if rev is not None and rev.failure is not None and not rev.ready_replicas():
                raise ActivationTimeout(f"{rev.name}: {rev.failure[1]}")
            replicas = rev.ready_replicas() if rev is not None else []
            if rev is not None and replicas:
                idx = least_loaded([r.inflight for r in replicas])
                assert idx is not None
                replica = replicas[idx]
                replica.inflight += 1
                rev.inflight += 1
                rev.last_request = time.monotonic()
                rev.requests.append(rev.last_request)
                return rev, replica
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ActivationTimeout(
                    f"no ready replica for {comp.plan.service_name} after "
                    f"{self.settings.activation_timeout_s:.0f}s"
                )
            changed = rev.changed if rev is not None else None
            if rev is not None:
                rev.waiting += 1
                rev.last_request = time.monotonic()
            try:
                if changed is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), min(remaining, 1.0))
                else:
                    await asyncio.sleep(min(remaining, TICK_S))
            finally:
                if rev is not None:
                    rev.waiting -= 1

    def release(self, rev: Revision, replica: Replica) -> None:
        replica.inflight -= 1
        rev.inflight -= 1

    def mark_unreachable(self, rev: Revision, replica: Replica) -> None:
        """A replica refused a connection: it is no longer ready (its process is gone)."""
        if replica.state == "ready":
            replica.state = "starting"
            rev.notify()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line.strip() for line in text)) if text else ""
