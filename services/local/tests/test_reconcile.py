"""The local reconcile step, pure: component snapshot + now -> actions. No processes."""

from __future__ import annotations

from dataclasses import replace

from wharf_api.plan import ScalingPlan
from wharf_api.traffic import RolloutState, TrafficTarget
from wharf_local.autoscaler import Observation
from wharf_local.reconcile import (
    ComponentView,
    DrainReplicas,
    ForgetReplica,
    Note,
    Policy,
    ReplicaView,
    RestartReplica,
    RetireRevision,
    RetryDownload,
    RevisionView,
    StartReplicas,
    StopReplica,
    local_max_replicas,
    reconcile_component,
    replicas_to_drop,
)

POLICY = Policy(autoscale_window_s=10, scale_to_zero_after_s=30)
SCALING = ScalingPlan(min_replicas=1, max_replicas=4, metric="concurrency", target=2)
R1, R2 = "m-predictor-00001", "m-predictor-00002"


def rev(name: str = R1, number: int = 1, **kw: object) -> RevisionView:
    base: dict[str, object] = {
        "name": name,
        "number": number,
        "scaling": SCALING,
        "models_ready": True,
        "ready_once": True,
        "replicas": (ReplicaView(0, "ready"),),
    }
    base.update(kw)
    return RevisionView(**base)  # type: ignore[arg-type]


def comp(*revs: RevisionView, **kw: object) -> ComponentView:
    base: dict[str, object] = {
        "name": "predictor",
        "service_name": "m-predictor",
        "canary_traffic_percent": None,
        "rollout": RolloutState(R1, R1, R1),
        "traffic": (TrafficTarget(R1, 100, "latest", True),),
        "revisions": revs,
    }
    base.update(kw)
    return ComponentView(**base)  # type: ignore[arg-type]


def kinds(actions: tuple[object, ...]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, Note)]


def test_steady_state_does_nothing() -> None:
    step = reconcile_component(comp(rev()), POLICY, now=100)
    assert step.actions == ()
    assert step.rollout == RolloutState(R1, R1, R1)


def test_new_revision_starts_its_initial_scale_once_models_are_ready() -> None:
    new = rev(R2, 2, ready_once=False, replicas=(), models_ready=False)
    view = comp(rev(), new, rollout=RolloutState(R2, R1, R1))
    assert kinds(reconcile_component(view, POLICY, 1).actions) == []
    ready_models = replace(new, models_ready=True)
    step = reconcile_component(replace(view, revisions=(rev(), ready_models)), POLICY, 1)
    assert StartReplicas(R2, 1) in step.actions
    # traffic stays on the old revision until the new one is ready
    assert step.traffic == (TrafficTarget(R1, 100, "latest", True),)


def test_traffic_moves_when_the_new_revision_is_ready_and_the_old_drains() -> None:
    new = rev(R2, 2)
    view = comp(rev(), new, rollout=RolloutState(R2, R1, R1))
    step = reconcile_component(view, POLICY, 1)
    assert step.traffic == (TrafficTarget(R2, 100, "latest", True),)
    assert step.rollout == RolloutState(R2, R2, R2, R1)
    assert DrainReplicas(R1, (0,)) in step.actions
    assert any(isinstance(a, Note) and a.reason == "TrafficUpdated" for a in step.actions)


def test_canary_splits_traffic_between_latest_and_previous() -> None:
    view = comp(rev(), rev(R2, 2), rollout=RolloutState(R2, R1, R1), canary_traffic_percent=20)
    step = reconcile_component(view, POLICY, 1)
    assert step.traffic == (
        TrafficTarget(R2, 20, "latest", True),
        TrafficTarget(R1, 80, "prev", False),
    )
    assert not any(isinstance(a, DrainReplicas) for a in step.actions)


def test_scale_up_on_demand_and_down_by_dropping_unready_then_least_loaded() -> None:
    busy = rev(demand=Observation(concurrency=5, rps=0, idle_s=0))
    assert StartReplicas(R1, 2) in reconcile_component(comp(busy), POLICY, 1).actions
    three = rev(
        replicas=(
            ReplicaView(0, "ready", inflight=3),
            ReplicaView(1, "ready", inflight=0),
            ReplicaView(2, "starting"),
        )
    )
    assert DrainReplicas(R1, (2, 1)) in reconcile_component(comp(three), POLICY, 1).actions


def test_replicas_to_drop_prefers_unready_then_idle_then_newest() -> None:
    replicas = [
        ReplicaView(0, "ready", inflight=1),
        ReplicaView(1, "ready", inflight=0),
        ReplicaView(2, "ready", inflight=0),
        ReplicaView(3, "backoff"),
    ]
    assert replicas_to_drop(replicas, 3) == (3, 2, 1)
    assert replicas_to_drop(replicas, 0) == ()


def test_replica_housekeeping() -> None:
    r = rev(
        replicas=(
            ReplicaView(0, "ready"),
            ReplicaView(1, "stopped"),
            ReplicaView(2, "backoff", restart_at=5),
            ReplicaView(3, "draining", inflight=0, running=True),
            ReplicaView(4, "draining", inflight=2),
        )
    )
    early = reconcile_component(comp(r), POLICY, now=4).actions
    assert ForgetReplica(R1, 1) in early and StopReplica(R1, 3) in early
    assert not any(isinstance(a, RestartReplica) for a in early)
    assert not any(isinstance(a, StopReplica) and a.index == 4 for a in early)
    assert RestartReplica(R1, 2) in reconcile_component(comp(r), POLICY, now=5).actions


def test_unused_revision_without_replicas_is_retired() -> None:
    old = rev(replicas=())
    view = comp(old, rev(R2, 2), rollout=RolloutState(R2, R2, R2, R1))
    view = replace(view, traffic=(TrafficTarget(R2, 100, "latest", True),))
    assert RetireRevision(R1) in reconcile_component(view, POLICY, 1).actions


def test_a_held_request_keeps_an_old_revision_alive() -> None:
    old = rev(replicas=(), demand=Observation(0, 0, 0, waiting=1))
    view = comp(old, rev(R2, 2), rollout=RolloutState(R2, R2, R2, R1))
    view = replace(view, traffic=(TrafficTarget(R2, 100, "latest", True),))
    assert RetireRevision(R1) not in reconcile_component(view, POLICY, 1).actions


def test_failed_download_is_retried_when_due_and_only_for_the_latest() -> None:
    failed = rev(
        R2, 2, ready_once=False, replicas=(), failure=("ModelDownloadFailed", "x"), retry_at=10
    )
    view = comp(rev(), failed, rollout=RolloutState(R2, R1, R1))
    assert RetryDownload(R2) not in reconcile_component(view, POLICY, 9).actions
    assert RetryDownload(R2) in reconcile_component(view, POLICY, 10).actions
    fetching = replace(view, revisions=(rev(), replace(failed, fetching=True)))
    assert RetryDownload(R2) not in reconcile_component(fetching, POLICY, 10).actions
    # a failed revision runs no replica
    assert not any(
        isinstance(a, StartReplicas) and a.revision == R2
        for a in reconcile_component(view, POLICY, 10).actions
    )


def test_step_observation_feeds_status() -> None:
    crashed = rev(ready_once=False, replicas=(), last_crash="exited with code 1")
    view = comp(crashed, rollout=RolloutState(R1), traffic=())
    step = reconcile_component(view, POLICY, 1)
    obs = step.observation(view)
    assert obs.latest_created is not None and obs.latest_created.last_crash == "exited with code 1"


def test_unbounded_max_means_one_local_process_or_min() -> None:
    assert local_max_replicas(ScalingPlan(1, 0, "concurrency", 1)) == 1
    assert local_max_replicas(ScalingPlan(3, 0, "concurrency", 1)) == 3
    assert local_max_replicas(ScalingPlan(0, 0, "concurrency", 1)) == 1
    assert local_max_replicas(ScalingPlan(1, 5, "concurrency", 1)) == 5
