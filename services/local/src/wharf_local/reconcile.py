"""One reconcile step of a component, pure: snapshot + now -> actions.

The runtime takes a snapshot of a component (`ComponentView`: its plan, rollout, traffic and each
revision's replicas and demand), calls `reconcile_component`, and carries out the actions it
gets back (start, drain, restart or forget replicas, retry a download, retire a revision) and
records the events. Every rule of the local runtime lives here or in the modules it calls:
rollout and traffic (`wharf_api.traffic`, `wharf_api.status.latest_ready`), replica counts
(`autoscaler`), which replicas go first, and when a failed download is tried again (`backoff`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from wharf_api.plan import ScalingPlan
from wharf_api.status import ComponentObservation, RevisionObservation, latest_ready
from wharf_api.traffic import (
    RolloutState,
    TrafficTarget,
    after_traffic,
    revisions_in_use,
    traffic_targets,
)
from wharf_local import autoscaler

ReplicaState = Literal["starting", "ready", "draining", "backoff", "stopped"]


@dataclass(frozen=True)
class Policy:
    """The runtime's settings that decisions depend on."""

    autoscale_window_s: float
    scale_to_zero_after_s: float


@dataclass(frozen=True)
class ReplicaView:
    index: int
    state: ReplicaState
    inflight: int = 0
    restart_at: float = 0.0
    # its process task is still running (a draining replica with one is cancelled to stop it)
    running: bool = False


@dataclass(frozen=True)
class RevisionView:
    name: str
    number: int
    scaling: ScalingPlan
    replicas: tuple[ReplicaView, ...] = ()
    ready_once: bool = False
    failure: tuple[str, str] | None = None
    last_crash: str | None = None
    stuck: tuple[str, str] | None = None
    # its models are in place (a revision cannot start replicas before)
    models_ready: bool = False
    fetching: bool = False
    retry_at: float | None = None
    # demand over the autoscaling window
    demand: autoscaler.Observation = field(default_factory=lambda: autoscaler.Observation(0, 0, 0))

    def live(self) -> list[ReplicaView]:
        return [r for r in self.replicas if r.state in ("starting", "ready", "backoff")]

    def observation(self) -> RevisionObservation:
        return RevisionObservation(
            self.name, self.number, self.ready_once, self.failure, self.last_crash, self.stuck
        )


@dataclass(frozen=True)
class ComponentView:
    name: str
    service_name: str
    canary_traffic_percent: int | None
    rollout: RolloutState
    traffic: tuple[TrafficTarget, ...]
    revisions: tuple[RevisionView, ...]


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartReplicas:
    revision: str
    count: int


@dataclass(frozen=True)
class DrainReplicas:
    revision: str
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class RestartReplica:
    revision: str
    index: int


@dataclass(frozen=True)
class StopReplica:
    """A draining replica has no request left: stop its process."""

    revision: str
    index: int


@dataclass(frozen=True)
class ForgetReplica:
    revision: str
    index: int


@dataclass(frozen=True)
class RetryDownload:
    revision: str


@dataclass(frozen=True)
class RetireRevision:
    """Out of traffic and without replicas: remove it."""

    revision: str


@dataclass(frozen=True)
class Note:
    """An event to record: (type, reason, message, object)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    object: str


Action = (
    StartReplicas
    | DrainReplicas
    | RestartReplica
    | StopReplica
    | ForgetReplica
    | RetryDownload
    | RetireRevision
    | Note
)


@dataclass(frozen=True)
class ComponentStep:
    rollout: RolloutState
    traffic: tuple[TrafficTarget, ...]
    actions: tuple[Action, ...]

    def observation(self, view: ComponentView) -> ComponentObservation:
        latest = next((r for r in view.revisions if r.name == self.rollout.latest_created), None)
        return ComponentObservation(
            view.name, self.rollout, self.traffic, latest.observation() if latest else None
        )


# ---- rules ----------------------------------------------------------------------------------


def replicas_to_drop(replicas: Sequence[ReplicaView], count: int) -> tuple[int, ...]:
    """Which live replicas go when scaling down by `count`: those not ready first, then the
    least loaded, newest first among equals (they have warmed up least)."""
    order = sorted(replicas, key=lambda r: (r.state == "ready", r.inflight, -r.index))
    return tuple(r.index for r in order[: max(0, count)])


def desired_replicas(rev: RevisionView, policy: Policy) -> int:
    """How many replicas a revision in use should run now."""
    scaling = rev.scaling
    if rev.failure is not None:
        return 0
    if not rev.ready_once:
        # a new revision starts with its initial scale so it can become ready
        return max(1, scaling.min_replicas)
    bounds = autoscaler.Bounds(
        scaling.min_replicas, local_max_replicas(scaling), scaling.metric, scaling.target
    )
    return autoscaler.recommend(
        bounds, rev.demand, len(rev.live()), scale_to_zero_after_s=policy.scale_to_zero_after_s
    )


def local_max_replicas(scaling: ScalingPlan) -> int:
    """A replica here is a process on this machine, so an unbounded maxReplicas (0) means one
    replica, or minReplicas when that is more."""
    return max(scaling.max_replicas, scaling.min_replicas, 1)


def _housekeeping(rev: RevisionView, now: float) -> list[Action]:
    actions: list[Action] = []
    for r in rev.replicas:
        if r.state == "stopped":
            actions.append(ForgetReplica(rev.name, r.index))
        elif r.state == "backoff" and now >= r.restart_at:
            actions.append(RestartReplica(rev.name, r.index))
        elif r.state == "draining" and r.inflight == 0:
            # its last request has finished: now the process can go
            actions.append(StopReplica(rev.name, r.index))
    return actions


def scale_revision(rev: RevisionView, desired: int, now: float) -> list[Action]:
    """Replica actions that move a revision towards `desired` replicas."""
    actions = _housekeeping(rev, now)
    live = rev.live()
    if desired == len(live) or (not rev.models_ready and desired > 0):
        return actions
    actions.append(Note("Normal", "Scaled", f"{len(live)} -> {desired} replicas", rev.name))
    if len(live) < desired:
        actions.append(StartReplicas(rev.name, desired - len(live)))
    else:
        actions.append(DrainReplicas(rev.name, replicas_to_drop(live, len(live) - desired)))
    return actions


def reconcile_component(view: ComponentView, policy: Policy, now: float) -> ComponentStep:
    """The next rollout state, traffic and actions of one component."""
    actions: list[Action] = []
    rollout = view.rollout
    newest_ready = latest_ready([r.observation() for r in view.revisions])
    if newest_ready is not None and newest_ready != rollout.latest_ready:
        rollout = replace(rollout, latest_ready=newest_ready)
    targets = traffic_targets(rollout, view.canary_traffic_percent)
    if targets != view.traffic:
        split = ", ".join(f"{t.revision}={t.percent}%" for t in targets)
        actions.append(Note("Normal", "TrafficUpdated", split, view.service_name))
    rollout = after_traffic(rollout, targets)
    keep = revisions_in_use(rollout, targets)
    for rev in view.revisions:
        retry_due = rev.retry_at is not None and now >= rev.retry_at
        if retry_due and not rev.fetching and rev.name == rollout.latest_created:
            actions.append(RetryDownload(rev.name))
        if rev.name in keep:
            actions += scale_revision(rev, desired_replicas(rev, policy), now)
        elif rev.demand.waiting == 0:
            # out of traffic: drain (each replica stops once its requests are done)
            actions += scale_revision(rev, 0, now)
            if not rev.replicas:
                actions.append(RetireRevision(rev.name))
                actions.append(Note("Normal", "RevisionDrained", f"stopped {rev.name}", rev.name))
    return ComponentStep(rollout, targets, tuple(actions))
