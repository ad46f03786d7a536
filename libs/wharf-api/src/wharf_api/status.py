"""The status of an InferenceService from what was observed of its parts, as KServe reports it.

Both control planes observe their children (the controller: Deployments and Services or Knative
revisions; `wharf up`: revisions of local processes), reduce each component to a
`ComponentObservation`, and get the same conditions, reasons and status document from here:

- `{Component}Ready` (PredictorReady, TransformerReady, ExplainerReady) per component;
- `IngressReady` once every component has a route and is ready;
- `Ready` when all of them are, else the first failing component's reason.

A condition keeps its lastTransitionTime while its status does not change. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wharf_api.traffic import RolloutState, TrafficTarget

ConditionStatus = Literal["True", "False", "Unknown"]

# Reasons, shared by both control planes (KServe's and Knative's words where they have one)
MODEL_DOWNLOAD_FAILED = "ModelDownloadFailed"
COMMAND_NOT_FOUND = "CommandNotFound"
CRASH_LOOP_BACKOFF = "CrashLoopBackOff"
REVISION_MISSING = "RevisionMissing"
ROLLOUT_IN_PROGRESS = "RolloutInProgress"
ROUTES_NOT_READY = "RoutesNotReady"
INGRESS_NOT_READY = "IngressNotReady"
PORT_MISMATCH = "PortMismatch"

# A revision that failed for one of these reasons will not recover by itself: a new spec (or
# an explicit retry) is needed. Clients stop waiting when they see one.
TERMINAL_REASONS = frozenset(
    {MODEL_DOWNLOAD_FAILED, COMMAND_NOT_FOUND, CRASH_LOOP_BACKOFF, PORT_MISMATCH}
)


@dataclass(frozen=True)
class ComponentReadiness:
    component: str
    ready: bool
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    last_transition_time: str
    reason: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"type": self.type, "status": self.status}
        out["lastTransitionTime"] = self.last_transition_time
        if self.reason is not None:
            out["reason"] = self.reason
        if self.message is not None:
            out["message"] = self.message
        return out


@dataclass(frozen=True)
class RevisionObservation:
    """What is known of one revision of a component."""

    name: str
    number: int
    # it has had a ready replica at least once (Knative: the revision became Ready)
    ready_once: bool = False
    # (reason, message) when it cannot run at all (download failed, no command)
    failure: tuple[str, str] | None = None
    # the last crash of a revision that never became ready
    last_crash: str | None = None
    # (reason, message) of a revision that runs but cannot become ready as it is (it listens
    # on another port than the one it was given)
    stuck: tuple[str, str] | None = None


@dataclass(frozen=True)
class ComponentObservation:
    component: str
    rollout: RolloutState
    traffic: tuple[TrafficTarget, ...] = ()
    latest_created: RevisionObservation | None = None


def latest_ready(revisions: Sequence[RevisionObservation]) -> str | None:
    """The newest revision that has been ready: it takes the traffic (Knative's rule)."""
    ready = [r for r in revisions if r.ready_once]
    return max(ready, key=lambda r: r.number).name if ready else None


def component_readiness(obs: ComponentObservation) -> ComponentReadiness:
    """Whether one component is ready, and why not."""
    latest = obs.latest_created
    name = obs.component
    if latest is not None and latest.failure is not None:
        return ComponentReadiness(name, False, *latest.failure)
    if latest is not None and not latest.ready_once and latest.stuck is not None:
        return ComponentReadiness(name, False, *latest.stuck)
    if latest is not None and not latest.ready_once and latest.last_crash is not None:
        return ComponentReadiness(name, False, CRASH_LOOP_BACKOFF, latest.last_crash)
    if not obs.traffic:
        return ComponentReadiness(name, False, REVISION_MISSING, "no revision is ready yet")
    if obs.rollout.latest_ready != obs.rollout.latest_created:
        return ComponentReadiness(
            name, False, ROLLOUT_IN_PROGRESS, f"waiting for {obs.rollout.latest_created}"
        )
    return ComponentReadiness(name, True)


def _status(ok: bool) -> ConditionStatus:
    return "True" if ok else "False"


def conditions(
    components: Sequence[ComponentReadiness],
    routed: bool,
    now: str,
    previous: Sequence[Condition] = (),
) -> list[Condition]:
    """The service's conditions, sorted by type; transition times kept from `previous`."""
    before = {c.type: c for c in previous}

    def make(type_: str, ok: bool, reason: str | None, message: str | None) -> Condition:
        old = before.get(type_)
        status = _status(ok)
        since = old.last_transition_time if old is not None and old.status == status else now
        return Condition(type_, status, since, None if ok else reason, None if ok else message)

    out = [
        make(f"{c.component.capitalize()}Ready", c.ready, c.reason, c.message) for c in components
    ]
    not_ready = [c for c in components if not c.ready]
    ingress_ok = routed and not not_ready
    out.append(
        make(
            "IngressReady", ingress_ok, ROUTES_NOT_READY, "waiting for every component to be ready"
        )
    )
    first = not_ready[0] if not_ready else None
    out.append(
        make(
            "Ready",
            ingress_ok,
            first.reason if first else INGRESS_NOT_READY,
            first.message if first else "the ingress has no route yet",
        )
    )
    return sorted(out, key=lambda c: c.type)


def ready_condition(conds: Sequence[Condition]) -> Condition | None:
    return next((c for c in conds if c.type == "Ready"), None)


@dataclass(frozen=True)
class ServiceStatus:
    """What a reconcile of a service concludes: conditions and the generation they describe."""

    conditions: tuple[Condition, ...]
    observed_generation: int
    components: Mapping[str, ComponentObservation] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        cond = ready_condition(self.conditions)
        return cond is not None and cond.status == "True"


def service_status(
    observations: Sequence[ComponentObservation],
    generation: int,
    now: str,
    previous: Sequence[Condition] = (),
) -> ServiceStatus:
    """Conditions for the spec at `generation`; `observed_generation` is that generation.

    The status always describes the newest spec the control plane has acted on (KServe sets
    observedGeneration on every reconcile, ready or not), so a client that applied generation G
    waits for `observed_generation >= G` and then reads the conditions of its own spec.
    """
    readiness = [component_readiness(o) for o in observations]
    routed = all(o.traffic for o in observations)
    conds = conditions(readiness, routed, now, previous)
    return ServiceStatus(tuple(conds), generation, {o.component: o for o in observations})


def traffic_status(targets: Sequence[TrafficTarget]) -> list[dict[str, Any]]:
    return [
        {
            "revisionName": t.revision,
            "percent": t.percent,
            "tag": t.tag,
            "latestRevision": t.latest_revision,
        }
        for t in targets
    ]


def component_status(obs: ComponentObservation) -> dict[str, Any]:
    """One entry of `status.components` (KServe's ComponentStatusSpec)."""
    return {
        "latestCreatedRevision": obs.rollout.latest_created,
        "latestReadyRevision": obs.rollout.latest_ready,
        "latestRolledoutRevision": obs.rollout.latest_rolledout,
        "previousRolledoutRevision": obs.rollout.previous_rolledout,
        "traffic": traffic_status(obs.traffic),
    }


def status_document(
    status: ServiceStatus, url: str | None, address: str | None = None
) -> dict[str, Any]:
    """`.status` of an InferenceService as the API server would store it: `url` is the
    external URL, `address` the one other workloads use (the cluster-local URL on Kubernetes)."""
    doc: dict[str, Any] = {
        "observedGeneration": status.observed_generation,
        "conditions": [c.as_dict() for c in status.conditions],
        "components": {k: component_status(v) for k, v in status.components.items()},
    }
    if url is not None:
        doc["url"] = url
    if address is not None:
        doc["address"] = {"url": address}
    return doc
