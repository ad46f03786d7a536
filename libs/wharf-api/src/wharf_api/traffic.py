"""Revisions and traffic of a component, as KServe drives Knative: pure decisions.

A component's spec change creates a new revision; traffic moves to it only once it is ready.
With `canaryTrafficPercent: P` and an earlier rolled-out revision, the latest ready revision gets
P% (tag `latest`) and the last rolled-out one 100-P% (tag `prev`); without it the latest ready
revision gets everything. A revision that receives 100% becomes the latest rolled-out one and
the one it replaces becomes the previous rolled-out one (KServe's `PropagateStatus`), so
promotion is removing the percent (or setting 100) and rollback is setting 0.

On a cluster Knative names the revisions, so the controller states the same split by reference
(`knative_traffic`): the latest revision (`latestRevision: true`) and the last rolled-out one
by name from the InferenceService's status. The tags are set only when the InferenceService has
`serving.kserve.io/enable-tag-routing: "true"`, as KServe does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from wharf_api.names import revision_name

__all__ = [
    "TAG_ROUTING_ANNOTATION",
    "KnativeTrafficTarget",
    "RolloutState",
    "TrafficTarget",
    "after_traffic",
    "knative_traffic",
    "revision_name",
    "revisions_in_use",
    "tag_routing",
    "traffic_targets",
]

Tag = Literal["latest", "prev"]
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"


@dataclass(frozen=True)
class RolloutState:
    """The revision names a component's status tracks (KServe's ComponentStatusSpec)."""

    latest_created: str | None = None
    latest_ready: str | None = None
    latest_rolledout: str | None = None
    previous_rolledout: str | None = None


@dataclass(frozen=True)
class TrafficTarget:
    revision: str
    percent: int
    tag: Tag
    latest_revision: bool


def traffic_targets(state: RolloutState, canary_percent: int | None) -> tuple[TrafficTarget, ...]:
    """Where a component's requests go now: empty until a revision is ready."""
    latest = state.latest_ready
    if latest is None:
        return ()
    stable = state.latest_rolledout
    if canary_percent is None or stable is None or stable == latest:
        return (TrafficTarget(latest, 100, "latest", True),)
    pct = max(0, min(100, canary_percent))
    return (
        TrafficTarget(latest, pct, "latest", True),
        TrafficTarget(stable, 100 - pct, "prev", False),
    )


def after_traffic(state: RolloutState, targets: tuple[TrafficTarget, ...]) -> RolloutState:
    """The state once `targets` serve: a revision at 100% is rolled out."""
    for target in targets:
        if target.revision == state.latest_ready and target.percent == 100:
            if state.latest_rolledout == target.revision:
                return state
            return replace(
                state,
                previous_rolledout=state.latest_rolledout,
                latest_rolledout=target.revision,
            )
    return state


def revisions_in_use(state: RolloutState, targets: tuple[TrafficTarget, ...]) -> frozenset[str]:
    """Revisions to keep running: those with traffic and the one being created.

    Any other revision can be drained and stopped.
    """
    keep = {t.revision for t in targets if t.percent > 0}
    if state.latest_created is not None:
        keep.add(state.latest_created)
    if not keep and state.latest_ready is not None:
        keep.add(state.latest_ready)
    return frozenset(keep)


@dataclass(frozen=True)
class KnativeTrafficTarget:
    """One entry of a Knative Service's `spec.traffic`: the latest revision, or one by name."""

    percent: int
    latest_revision: bool
    revision_name: str | None = None
    tag: Tag | None = None


def tag_routing(annotations: Mapping[str, str]) -> bool:
    """Whether the traffic targets carry the `latest`/`prev` tags (KServe's annotation)."""
    return annotations.get(TAG_ROUTING_ANNOTATION, "").lower() == "true"


def knative_traffic(
    canary_percent: int | None, latest_rolledout: str | None, *, tags: bool
) -> tuple[KnativeTrafficTarget, ...]:
    """A component's Knative traffic: with a canary percent and a revision already rolled out,
    the latest revision gets the percent and the rolled-out one the rest; otherwise the latest
    gets everything."""
    if canary_percent is not None and latest_rolledout:
        pct = max(0, min(100, canary_percent))
        return (
            KnativeTrafficTarget(pct, True, tag="latest" if tags else None),
            KnativeTrafficTarget(100 - pct, False, latest_rolledout, "prev" if tags else None),
        )
    return (KnativeTrafficTarget(100, True, tag="latest" if tags else None),)
