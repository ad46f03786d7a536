"""The local runtime's state: services, their components, revisions and replicas.

Plain data: the pure reconcile step (`reconcile`) reads snapshots of it and the runtime applies
the actions it returns. Only the runtime and the activator change it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from wharf_api.plan import ComponentPlan, ServicePlan
from wharf_api.status import Condition, ServiceStatus
from wharf_api.traffic import RolloutState, TrafficTarget
from wharf_datapath.balancer import swrr_pick
from wharf_local.processes import ManagedProcess

# starting: process started, not ready yet; ready: answers its readiness probe;
# draining: no new requests, stops once its last one is done; backoff: crashed, restarts at
# `restart_at`; stopped: gone (removed on the next tick)
ReplicaState = Literal["starting", "ready", "draining", "backoff", "stopped"]
EventType = Literal["Normal", "Warning"]


@dataclass
class Event:
    time: str
    type: EventType
    reason: str
    message: str
    object: str


@dataclass
class Replica:
    index: int
    http_port: int
    grpc_port: int | None
    process: ManagedProcess | None = None
    state: ReplicaState = "starting"
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
    # (reason, message): the revision cannot run at all (download failed, no command)
    failure: tuple[str, str] | None = None
    # a failed download is retried at this time (monotonic), with `attempts` so far
    retry_at: float | None = None
    attempts: int = 0
    fetching: bool = False
    # the manifest was applied again while a backoff retry ran: if that one fails, once more now
    retry_again: bool = False
    last_crash: str | None = None
    # (reason, message) while it runs but cannot become ready (see RevisionObservation.stuck)
    stuck: tuple[str, str] | None = None
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
        """Wake whoever waits for this revision to change (held requests, `up`)."""
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

    @property
    def latest(self) -> Revision | None:
        return self.revisions.get(self.rollout.latest_created or "")


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
    # the last reconcile's conclusion (conditions, observedGeneration, components)
    status: ServiceStatus | None = None
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=50))

    @property
    def conditions(self) -> list[Condition]:
        return list(self.status.conditions) if self.status else []

    @property
    def observed_generation(self) -> int:
        return self.status.observed_generation if self.status else 0


ApplyAction = Literal[
    "created", "configured", "unchanged", "retried", "invalid", "unsupported", "skipped"
]


@dataclass
class ApplyResult:
    kind: str
    name: str
    namespace: str | None
    action: ApplyAction
    url: str | None = None
    error: str | None = None
    # the generation this apply made (InferenceServices): its status is final once
    # status.observedGeneration reaches it
    generation: int | None = None
    # why an object was skipped (a kind wharf does not run), shown as a note
    note: str | None = None
