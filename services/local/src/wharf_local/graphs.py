"""InferenceGraphs on the local runtime: each is one `wharf-router` process behind the ingress.

The graph's state lives here; what to run and when it is ready come from `graph_plan` (pure);
the runtime's tick calls `GraphRunner.reconcile` and the ingress leases a ready router with
`acquire`. The router reaches the graph's InferenceServices through the ingress, by path, so
they keep their traffic split, autoscaling and cold start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from wharf_api.plan import ServicePlan
from wharf_api.resources.inference_graph import InferenceGraphSpec
from wharf_local import backoff
from wharf_local.graph_plan import ROUTER, graph_ready, resolve_graph, router_args
from wharf_local.processes import ManagedProcess, resolve_command
from wharf_local.state import Event, EventType
from wharf_local.supervisor import log_tail

log = logging.getLogger("wharf.local")

READYZ = "/readyz"
PROBE_INTERVAL_S = 0.1

RouterState = Literal["stopped", "starting", "ready", "backoff"]


@dataclass
class Graph:
    namespace: str
    name: str
    manifest: dict[str, Any]
    spec: InferenceGraphSpec
    url: str
    generation: int
    created: str
    created_at: float
    port: int = 0
    # the graph the running router was given; None when none runs
    graph_json: str | None = None
    missing: tuple[str, ...] = ()
    process: ManagedProcess | None = None
    task: asyncio.Task[None] | None = None
    state: RouterState = "stopped"
    crashes: int = 0
    restart_at: float = 0.0
    last_crash: str | None = None
    inflight: int = 0
    conditions: list[dict[str, Any]] = field(default_factory=list)
    observed_generation: int = 0
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=50))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class GraphUnavailable(Exception):
    """The graph's router did not become ready in time."""


Spawn = Callable[[Any], "asyncio.Task[Any]"]


class GraphRunner:
    def __init__(
        self,
        probe: httpx.AsyncClient,
        spawn: Spawn,
        log_dir: Callable[[str, str], Path],
        free_port: Callable[[], int],
        ingress: str,
        now_iso: Callable[[], str],
    ) -> None:
        self.graphs: dict[tuple[str, str], Graph] = {}
        self._probe = probe
        self._spawn = spawn
        self._log_dir = log_dir
        self._free_port = free_port
        self.ingress = ingress
        self._now_iso = now_iso

    def event(self, g: Graph, type_: EventType, reason: str, message: str) -> None:
        g.events.append(Event(self._now_iso(), type_, reason, message, g.name))
        log.info("%s/%s %s %s: %s", g.namespace, g.name, type_, reason, message)

    # ---- reconcile ---------------------------------------------------------------------------

    def reconcile(self, services: Mapping[str, Mapping[str, ServicePlan]]) -> None:
        """Start, restart or stop each graph's router; `services` maps namespace -> service ->
        its plan."""
        now = time.monotonic()
        for g in self.graphs.values():
            resolved = resolve_graph(
                g.spec, g.namespace, services.get(g.namespace, {}), self.ingress
            )
            if resolved.missing != g.missing and resolved.missing:
                names = ", ".join(resolved.missing)
                self.event(g, "Warning", "ServiceNotFound", f"waiting for InferenceService {names}")
            g.missing = resolved.missing
            wanted = None if resolved.missing else resolved.graph_json
            if wanted != g.graph_json:
                if g.graph_json is not None:
                    self.event(g, "Normal", "RouterRestarted", "the graph's services changed")
                self._restart(g, wanted)
            elif g.state == "backoff" and now >= g.restart_at and wanted is not None:
                self._restart(g, wanted)
            self._update_status(g)

    def _restart(self, g: Graph, graph_json: str | None) -> None:
        old = g.task
        g.graph_json = graph_json
        g.task = None
        g.state = "stopped"
        if old is not None and not old.done():
            old.cancel()
        if graph_json is not None:
            g.port = self._free_port()
            g.state = "starting"
            g.task = self._spawn(self._run(g, graph_json, g.port, old))
        g.notify()

    async def _run(
        self, g: Graph, graph_json: str, port: int, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        argv = resolve_command([ROUTER]) + router_args(graph_json, port, g.namespace, self.ingress)
        env = {"PYTHONUNBUFFERED": "1", "WHARF_BIND_HOST": "127.0.0.1"}
        log_path = self._log_dir(g.namespace, g.name) / "router.log"
        proc = ManagedProcess(argv, env, log_path)
        g.process = proc
        try:
            code = await self._supervise(g, proc, port)
            what = f"exited with code {code}"
        except asyncio.CancelledError:
            await proc.stop()
            raise
        except Exception as exc:
            # it could not be started or watched: a crash, so that it is restarted rather than
            # left "starting" with no one watching it
            log.exception("the router of graph %s/%s", g.namespace, g.name)
            with contextlib.suppress(Exception):
                await proc.stop()
            what = f"could not be run: {type(exc).__name__}: {exc}"
        g.state = "backoff"
        g.crashes = backoff.crashes_in_a_row(g.crashes, proc.uptime())
        delay = backoff.restart_delay(g.crashes)
        g.restart_at = time.monotonic() + delay
        g.last_crash = f"{what}{log_tail(log_path)}"
        self.event(g, "Warning", "BackOff", f"{g.last_crash}; restarting in {delay:.0f}s")
        g.notify()

    async def _supervise(self, g: Graph, proc: ManagedProcess, port: int) -> int:
        """Start the router, probe it into service; its exit code."""
        await proc.start()
        self.event(g, "Normal", "Started", f"router pid {proc.pid} http :{port}")
        exited = asyncio.ensure_future(proc.wait())
        while not exited.done():
            if await self._ready(port):
                g.state = "ready"
                g.last_crash = None
                g.notify()
                break
            await asyncio.wait({exited}, timeout=PROBE_INTERVAL_S)
        return await exited

    async def _ready(self, port: int) -> bool:
        try:
            resp = await self._probe.get(f"http://127.0.0.1:{port}{READYZ}", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def _update_status(self, g: Graph) -> None:
        verdict = graph_ready(g.missing, g.state == "ready", g.last_crash)
        before = next((c for c in g.conditions if c["type"] == "Ready"), None)
        changed = before is None or before["status"] != verdict.status
        condition: dict[str, Any] = {
            "type": "Ready",
            "status": verdict.status,
            "lastTransitionTime": self._now_iso()
            if changed or before is None
            else before["lastTransitionTime"],
        }
        if verdict.reason:
            condition["reason"] = verdict.reason
            condition["message"] = verdict.message
        g.conditions = [condition]
        g.observed_generation = g.generation
        if changed and verdict.status == "True":
            self.event(g, "Normal", "Ready", f"{g.url} is ready")

    # ---- apply / delete ----------------------------------------------------------------------

    async def stop(self, g: Graph) -> None:
        task, g.task = g.task, None
        g.graph_json = None
        g.state = "stopped"
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if g.process is not None:
            await g.process.stop()
        g.notify()

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(g) for g in self.graphs.values()))

    # ---- data path ---------------------------------------------------------------------------

    async def acquire(self, g: Graph, timeout_s: float) -> int:
        """The port of the graph's router for one request, holding the request while the
        router starts."""
        deadline = time.monotonic() + timeout_s
        while g.state != "ready":
            left = deadline - time.monotonic()
            if left <= 0:
                why = g.conditions[0].get("message") if g.conditions else "not ready"
                raise GraphUnavailable(
                    f"InferenceGraph {g.namespace}/{g.name} not ready after {timeout_s:.0f}s: {why}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(g.changed.wait(), left)
        g.inflight += 1
        return g.port

    def release(self, g: Graph) -> None:
        g.inflight = max(0, g.inflight - 1)

    def mark_unreachable(self, g: Graph) -> None:
        # the router refused a connection: probe it again before the next request
        if g.state == "ready":
            g.state = "starting"
            self._spawn(self._reprobe(g))

    async def _reprobe(self, g: Graph) -> None:
        port = g.port
        while g.state == "starting" and g.port == port and g.task is not None:
            if g.task.done():
                return
            if await self._ready(port):
                g.state = "ready"
                g.notify()
                return
            await asyncio.sleep(PROBE_INTERVAL_S)


def describe_graph(g: Graph) -> dict[str, Any]:
    """The graph as `kubectl get -o yaml` shows it, plus the router process."""
    metadata = dict(g.manifest.get("metadata") or {})
    metadata.update(namespace=g.namespace, generation=g.generation, creationTimestamp=g.created)
    return {
        **g.manifest,
        "metadata": metadata,
        "status": {
            "observedGeneration": g.observed_generation,
            "conditions": g.conditions,
            "url": g.url,
            "deploymentMode": "Standard",
        },
        "local": {
            "router": {
                "state": g.state,
                "pid": g.process.pid if g.process else None,
                "httpPort": g.port or None,
                "inflight": g.inflight,
                "restarts": g.crashes,
                "log": str(g.process.log_path) if g.process else None,
            },
            "missingServices": list(g.missing),
            "events": [e.__dict__ for e in g.events],
            "ageSeconds": round(time.monotonic() - g.created_at, 1),
        },
    }
