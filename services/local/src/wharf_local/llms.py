"""LLMInferenceServices on the local runtime: worker processes, and a gateway router in front.

The plan comes from `wharf_api.llm`, the processes from `llm_plan` (pure); this module keeps
the state: the model download (the same cache as InferenceServices), each worker and the
router supervised (restart with backoff, readiness from `/health`), the conditions, and the
ingress's lease of a ready router (or, without a scheduler, of the least busy worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from wharf_api.llm import LLMPlan, scheduler_weights
from wharf_api.status import MODEL_DOWNLOAD_FAILED
from wharf_local import backoff
from wharf_local.cache import ModelCache
from wharf_local.llm_plan import (
    GATEWAY,
    TEARDOWN_ALLOWANCE_S,
    LocalPlanError,
    StatusVersion,
    WorkerProcess,
    WorkloadView,
    drain_timeout_s,
    dry_run_argv,
    gateway_args,
    llm_conditions,
    rank_in_ready_group,
    uses_gateway,
    with_cpu_binding,
    worker_processes,
)
from wharf_local.processes import ManagedProcess, resolve_command
from wharf_local.state import Event, EventType
from wharf_local.supervisor import log_tail
from wharf_storage import redact_uri

log = logging.getLogger("wharf.local")

HEALTH = "/health"
PROBE_INTERVAL_S = 0.5
# while ready, how often a process is asked again (a wedged engine stops taking requests)
RECHECK_S = 2.0
ROUTER_KILL_TIMEOUT_S = 5.0
STARTING_KILL_TIMEOUT_S = 5.0
# a multi-node group's status file is a few hundred bytes per rank
MAX_STATUS_BYTES = 1 << 20

UnitState = Literal["stopped", "starting", "ready", "backoff"]


@dataclass
class Unit:
    """One supervised process: a worker (spec set) or the router."""

    label: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    # 0: no HTTP (a non-leader rank): ready while it runs in a group its leader reports ready
    port: int
    kill_timeout_s: float
    spec: WorkerProcess | None = None
    process: ManagedProcess | None = None
    task: asyncio.Task[None] | None = None
    state: UnitState = "stopped"
    crashes: int = 0
    last_crash: str | None = None
    inflight: int = 0
    # a non-leader rank of a multi-node group: its leader's status file when this process started
    group_status_at_start: StatusVersion | None = None


@dataclass
class LLMService:
    namespace: str
    name: str
    manifest: dict[str, Any]
    plan: LLMPlan
    generation: int
    created: str
    created_at: float
    model_dirs: dict[str, str] | None = None
    fetching: bool = False
    failure: str | None = None
    attempts: int = 0
    retry_at: float | None = None
    # applied again while a backoff retry ran: if that one fails, the next attempt is at once
    retry_again: bool = False
    workers: list[Unit] = field(default_factory=list)
    router: Unit | None = None
    started_generation: int = 0
    conditions: list[dict[str, Any]] = field(default_factory=list)
    observed_generation: int = 0
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=50))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return self.plan.url

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def endpoints(self) -> list[Unit]:
        """Where the ingress sends requests without a router: the main workload's leaders."""
        return [u for u in self.workers if u.spec and u.spec.leader and u.spec.component == "main"]


class LLMUnavailable(Exception):
    """No ready router or worker in time."""


Spawn = Callable[[Any], "asyncio.Task[Any]"]


class LLMRunner:
    def __init__(
        self,
        probe: httpx.AsyncClient,
        spawn: Spawn,
        cache: ModelCache,
        log_dir: Callable[[str, str, str], Path],
        free_port: Callable[[], int],
        now_iso: Callable[[], str],
    ) -> None:
        self.services: dict[tuple[str, str], LLMService] = {}
        self._probe = probe
        self._spawn = spawn
        self._cache = cache
        self._log_dir = log_dir
        self._free_port = free_port
        self._now_iso = now_iso

    def event(self, s: LLMService, type_: EventType, reason: str, message: str, obj: str) -> None:
        s.events.append(Event(self._now_iso(), type_, reason, message, obj))
        log.info("%s/%s %s %s: %s", s.namespace, s.name, type_, reason, message)

    # ---- apply / delete ----------------------------------------------------------------------

    def apply(self, s: LLMService, plan: LLMPlan, manifest: dict[str, Any]) -> None:
        """A new spec: the processes of the old one stop, the new ones start after the fetch."""
        s.manifest, s.plan = manifest, plan
        s.generation += 1
        self._spawn(self._stop_units(self._take_units(s)))
        s.model_dirs, s.failure, s.attempts, s.retry_at = None, None, 0, None
        s.retry_again = False

    def retry(self, s: LLMService) -> bool:
        """Applying the same manifest again retries a failed download at once. A backoff
        retry already under way counts, but it may have asked the source before the user
        fixed it: if it fails, the next attempt follows at once rather than after the backoff."""
        if s.failure is None:
            return False
        s.failure, s.retry_at = None, None
        s.retry_again = s.fetching
        return True

    async def stop(self, s: LLMService) -> None:
        await self._stop_units(self._take_units(s))
        s.notify()

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(s) for s in self.services.values()))

    @staticmethod
    def _take_units(s: LLMService) -> list[Unit]:
        units = [*s.workers, *([s.router] if s.router else [])]
        s.workers, s.router = [], None
        s.started_generation = 0
        return units

    async def _stop_units(self, units: list[Unit]) -> None:
        async def one(u: Unit) -> None:
            task, u.task = u.task, None
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            elif u.process is not None:
                await u.process.stop(u.kill_timeout_s)
            u.state = "stopped"

        await asyncio.gather(*(one(u) for u in units))

    # ---- reconcile ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        now = time.monotonic()
        for s in self.services.values():
            if s.model_dirs is None and not s.fetching:
                if s.retry_at is None or now >= s.retry_at:
                    s.fetching = True
                    self._spawn(self._fetch(s))
            elif s.model_dirs is not None and s.started_generation != s.generation:
                self._start(s)
            self._update_status(s)

    async def _fetch(self, s: LLMService) -> None:
        generation = s.generation
        dirs: dict[str, str] = {}
        try:
            for mount in s.plan.storage:
                started = time.monotonic()
                try:
                    # credentials from Secrets are not read for LLM services yet: public and
                    # local URIs, and those the environment grants (AWS_*, HF_TOKEN)
                    result = await self._cache.fetch(mount.uri)
                except Exception as exc:
                    if generation != s.generation:
                        # a spec applied since: its own fetch follows (this one's failure is
                        # not the new spec's)
                        return
                    s.attempts += 1
                    if s.retry_again:
                        # begun before the manifest was applied again: that apply's retry is due
                        s.retry_again, s.retry_at = False, None
                        self.event(
                            s,
                            "Warning",
                            MODEL_DOWNLOAD_FAILED,
                            f"model.uri: {exc} (attempt {s.attempts}, begun before the manifest "
                            "was applied again; retrying now)",
                            s.name,
                        )
                        s.notify()
                        return
                    delay = backoff.restart_delay(s.attempts)
                    s.failure = f"model.uri: {exc}"
                    s.retry_at = time.monotonic() + delay
                    self.event(
                        s,
                        "Warning",
                        MODEL_DOWNLOAD_FAILED,
                        f"{s.failure} (attempt {s.attempts}; retrying in {delay:.0f}s, or at "
                        "once when the manifest is applied again)",
                        s.name,
                    )
                    s.notify()
                    return
                dirs[mount.mount_path] = str(result.path)
                self.event(
                    s,
                    "Normal",
                    "ModelReady",
                    f"{redact_uri(result.uri)} -> {result.path} "
                    f"({time.monotonic() - started:.2f}s)",
                    s.name,
                )
            if generation == s.generation:
                s.model_dirs = dirs
                s.failure, s.retry_again = None, False
            s.notify()
        finally:
            s.fetching = False

    def _start(self, s: LLMService) -> None:
        s.started_generation = s.generation
        assert s.model_dirs is not None
        try:
            groups = self._log_dir(s.namespace, s.name, "multinode")
            specs = worker_processes(s.plan, s.model_dirs, self._free_port, str(groups))
            specs = with_cpu_binding(specs, len(os.sched_getaffinity(0)), os.environ)
        except LocalPlanError as exc:
            s.failure = str(exc)
            self.event(s, "Warning", "InvalidPlan", str(exc), s.name)
            return
        for spec in specs:
            if spec.leader and spec.ray_token_file is not None:
                _write_ray_token(Path(spec.ray_token_file))
            try:
                argv = resolve_command(spec.argv)
            except (FileNotFoundError, ValueError) as exc:
                s.failure = f"{spec.name}: {exc}"
                self.event(s, "Warning", "CommandNotFound", s.failure, spec.name)
                return
            env = {"PYTHONUNBUFFERED": "1", **dict(spec.env)}
            drain = drain_timeout_s(argv) + TEARDOWN_ALLOWANCE_S if spec.worker else 30
            folder = self._log_dir(s.namespace, s.name, spec.component)
            unit = Unit(spec.name, argv, env, folder / f"{spec.name}.log", spec.port, drain, spec)
            s.workers.append(unit)
        for unit in s.workers:
            unit.state = "starting"
            unit.task = self._spawn(self._supervise(s, unit))
        if uses_gateway(s.plan):
            leaders = [u.spec for u in s.workers if u.spec is not None and u.spec.leader]
            port = self._free_port()
            argv = resolve_command(list(GATEWAY)) + gateway_args(
                port,
                leaders,
                with_roles=s.plan.prefill is not None,
                weights=scheduler_weights(s.plan),
            )
            folder = self._log_dir(s.namespace, s.name, "router")
            s.router = Unit(
                "router",
                argv,
                {"PYTHONUNBUFFERED": "1"},
                folder / "router.log",
                port,
                ROUTER_KILL_TIMEOUT_S,
            )
            s.router.state = "starting"
            s.router.task = self._spawn(self._supervise(s, s.router))
        s.notify()

    async def _kill_timeout(self, unit: Unit) -> None:
        """What the worker itself says it needs between SIGTERM and SIGKILL (`--dry-run`)."""
        with contextlib.suppress(Exception):
            proc = await asyncio.create_subprocess_exec(
                *dry_run_argv(unit.argv),
                # a multi-node rank reads its place in the group (LWS_*) from its environment
                env={**os.environ, **unit.env},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            if proc.returncode == 0:
                unit.kill_timeout_s = float(json.loads(out)["kill_timeout_s"])

    async def _supervise(self, s: LLMService, unit: Unit) -> None:
        if unit.spec is not None and unit.spec.worker:
            await self._kill_timeout(unit)
        while True:
            proc = ManagedProcess(unit.argv, unit.env, unit.log_path)
            unit.process = proc
            try:
                await proc.start()
            except Exception as exc:  # no such file, no memory, no threads left: a crash
                unit.last_crash = f"could not start: {type(exc).__name__}: {exc}"
            else:
                if not unit.port:
                    unit.group_status_at_start = _status_version(unit)[0]
                where = f" http :{unit.port}" if unit.port else ""
                self.event(s, "Normal", "Started", f"pid {proc.pid}{where}", unit.label)
                try:
                    code = await self._watch(s, unit, proc)
                except asyncio.CancelledError:
                    # a worker still loading has nothing to drain
                    ready = unit.state == "ready"
                    await proc.stop(unit.kill_timeout_s if ready else STARTING_KILL_TIMEOUT_S)
                    raise
                except Exception as exc:
                    # the watching failed, not the process: restarted like a crash, rather
                    # than left "starting" with no one watching it
                    log.exception("%s: supervision failed", unit.label)
                    try:
                        await proc.stop(STARTING_KILL_TIMEOUT_S)
                    except Exception:  # the backoff below must happen in any case
                        log.exception("%s: stopping it failed", unit.label)
                    unit.last_crash = f"could not be watched: {type(exc).__name__}: {exc}"
                else:
                    unit.last_crash = f"exited with code {code}{log_tail(unit.log_path)}"
            unit.state = "backoff"
            unit.crashes = backoff.crashes_in_a_row(unit.crashes, proc.uptime())
            delay = backoff.restart_delay(unit.crashes)
            self.event(
                s,
                "Warning",
                "BackOff",
                f"{unit.last_crash}; restarting in {delay:.0f}s",
                unit.label,
            )
            s.notify()
            await asyncio.sleep(delay)
            unit.state = "starting"

    async def _watch(self, s: LLMService, unit: Unit, proc: ManagedProcess) -> int:
        """Probe until the process exits; its exit code."""
        exited = asyncio.ensure_future(proc.wait())
        try:
            while not exited.done():
                if unit.port:
                    ready = await self._healthy(unit.port)
                else:
                    ready = _rank_ready(unit)
                state: UnitState = "ready" if ready else "starting"
                if state != unit.state:
                    unit.state = state
                    if ready:
                        unit.last_crash = None
                        how = (
                            "answers /health"
                            if unit.port
                            else "in a group its leader reports ready"
                        )
                        self.event(s, "Normal", "Ready", how, unit.label)
                    s.notify()
                await asyncio.wait(
                    {exited}, timeout=RECHECK_S if unit.state == "ready" else PROBE_INTERVAL_S
                )
            return await exited
        finally:
            if not exited.done():
                exited.cancel()

    async def _healthy(self, port: int) -> bool:
        try:
            resp = await self._probe.get(f"http://127.0.0.1:{port}{HEALTH}", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def _update_status(self, s: LLMService) -> None:
        views = []
        for w in s.plan.workloads:
            units = [u for u in s.workers if u.spec is not None and u.spec.workload == w.name]
            crash = next((u.last_crash for u in units if u.last_crash), None)
            views.append(
                WorkloadView(
                    w.name,
                    w.component,
                    w.replicas * w.size,
                    sum(u.state == "ready" for u in units),
                    crash,
                    max((u.crashes for u in units), default=0),
                )
            )
        router: bool | None = None
        if uses_gateway(s.plan):
            router = s.router is not None and s.router.state == "ready"
        verdicts = llm_conditions(
            views,
            router,
            s.router.last_crash if s.router else None,
            s.failure,
            s.model_dirs is None,
        )
        before = {c["type"]: c for c in s.conditions}
        conditions = []
        for v in verdicts:
            was = before.get(v.type)
            c: dict[str, Any] = {
                "type": v.type,
                "status": v.status,
                "lastTransitionTime": was["lastTransitionTime"]
                if was is not None and was["status"] == v.status
                else self._now_iso(),
            }
            if v.reason:
                c["reason"], c["message"] = v.reason, v.message
            conditions.append(c)
        ready_before = before.get("Ready", {}).get("status")
        s.conditions = conditions
        s.observed_generation = s.generation
        if conditions[-1]["status"] == "True" and ready_before != "True":
            self.event(s, "Normal", "Ready", f"{s.url} is ready", s.name)

    # ---- data path ---------------------------------------------------------------------------

    def _pick(self, s: LLMService) -> Unit | None:
        if uses_gateway(s.plan):
            return s.router if s.router is not None and s.router.state == "ready" else None
        ready = [u for u in s.endpoints() if u.state == "ready"]
        return min(ready, key=lambda u: u.inflight) if ready else None

    async def acquire(self, s: LLMService, timeout_s: float) -> Unit:
        """The router (or, without one, the least busy ready worker) for one request, holding
        the request while it starts."""
        deadline = time.monotonic() + timeout_s
        while (unit := self._pick(s)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                ready = next((c for c in s.conditions if c["type"] == "Ready"), {})
                why = ready.get("message") or "not ready"
                raise LLMUnavailable(
                    f"LLMInferenceService {s.namespace}/{s.name} not ready after "
                    f"{timeout_s:.0f}s: {why}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(s.changed.wait(), min(left, 1.0))
        unit.inflight += 1
        return unit

    @staticmethod
    def release(unit: Unit) -> None:
        unit.inflight = max(0, unit.inflight - 1)

    @staticmethod
    def mark_unreachable(unit: Unit) -> None:
        # refused a connection: its watcher probes it again before it gets another request
        if unit.state == "ready":
            unit.state = "starting"


def _write_ray_token(path: Path) -> None:
    """A fresh Ray token for a multi-node group, readable by its ranks only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))


def _unit_view(u: Unit) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": u.label,
        "state": u.state,
        "pid": u.process.pid if u.process else None,
        "httpPort": u.port or None,
        "inflight": u.inflight,
        "restarts": u.crashes,
        "killTimeoutSeconds": u.kill_timeout_s,
        "log": str(u.log_path),
    }
    if u.spec is not None:
        view.update(role=u.spec.role, replica=u.spec.replica, rank=u.spec.rank)
    if u.last_crash:
        view["lastCrash"] = u.last_crash
    return view


def describe_llm(s: LLMService) -> dict[str, Any]:
    """The service as `kubectl get -o yaml` shows it, plus its processes."""
    metadata = dict(s.manifest.get("metadata") or {})
    metadata.update(namespace=s.namespace, generation=s.generation, creationTimestamp=s.created)
    workloads = {}
    for w in s.plan.workloads:
        units = [u for u in s.workers if u.spec is not None and u.spec.workload == w.name]
        workloads[w.name] = {
            "component": w.component,
            "role": w.role,
            "replicas": w.replicas,
            "size": w.size,
            "ready": sum(u.state == "ready" for u in units),
            "workers": [_unit_view(u) for u in units],
        }
    return {
        **s.manifest,
        "metadata": metadata,
        "status": {
            "observedGeneration": s.observed_generation,
            "conditions": s.conditions,
            "url": s.url,
            "addresses": [{"url": s.url}],
        },
        "local": {
            "model": {
                "uri": redact_uri(s.plan.model_uri),
                "dirs": s.model_dirs,
                "failure": s.failure,
            },
            "servedModelName": s.plan.model_name,
            "workloads": workloads,
            "router": _unit_view(s.router) if s.router else None,
            "events": [e.__dict__ for e in s.events],
            "ageSeconds": round(time.monotonic() - s.created_at, 1),
        },
    }


def _status_version(unit: Unit) -> tuple[StatusVersion | None, object]:
    """The group's status file as it is now (its version, None when there is none; the state
    it reports), for a rank of a multi-node group."""
    status_file = unit.spec.group_status_file if unit.spec is not None else None
    if status_file is None:
        return None, None
    try:
        # one open file for both: the leader may replace the file between two reads by name
        with open(status_file, "rb") as f:
            stat = os.fstat(f.fileno())
            doc = json.loads(f.read(MAX_STATUS_BYTES))
    except (OSError, ValueError):
        return None, None
    state = doc.get("state") if isinstance(doc, dict) else None
    return (stat.st_ino, stat.st_mtime_ns), state


def _rank_ready(unit: Unit) -> bool:
    """A non-leader rank: in a multi-node group, what its leader's status file says of the group
    (`llm_plan.rank_in_ready_group`); any other rank without HTTP, while it runs."""
    if unit.spec is None or unit.spec.group_status_file is None:
        return True
    version, state = _status_version(unit)
    return rank_in_ready_group(state, version, unit.group_status_at_start)
