"""Snapshots of the runtime's state for the pure reconcile step: each revision with its
replicas and its demand over the autoscaling window (requests in flight, held, per second)."""

from __future__ import annotations

from wharf_local import reconcile
from wharf_local.autoscaler import Observation
from wharf_local.state import Component, Revision


def component_view(comp: Component, now: float, window: float) -> reconcile.ComponentView:
    return reconcile.ComponentView(
        name=comp.plan.component,
        service_name=comp.plan.service_name,
        canary_traffic_percent=comp.plan.canary_traffic_percent,
        rollout=comp.rollout,
        traffic=comp.traffic,
        revisions=tuple(revision_view(comp, rev, now, window) for rev in comp.revisions.values()),
    )


def revision_view(
    comp: Component, rev: Revision, now: float, window: float
) -> reconcile.RevisionView:
    rev.samples.append((now, rev.inflight + rev.waiting))
    while rev.samples and rev.samples[0][0] < now - window:
        rev.samples.popleft()
    while rev.requests and rev.requests[0] < now - window:
        rev.requests.popleft()
    concurrency = sum(v for _, v in rev.samples) / len(rev.samples) if rev.samples else 0.0
    # scaling settings do not make a new revision: the latest one follows the live plan
    plan = comp.plan if rev.name == comp.rollout.latest_created else rev.plan
    return reconcile.RevisionView(
        name=rev.name,
        number=rev.number,
        scaling=plan.scaling,
        replicas=tuple(
            reconcile.ReplicaView(
                r.index,
                r.state,
                r.inflight,
                r.restart_at,
                r.task is not None and not r.task.done(),
            )
            for r in rev.replicas
        ),
        ready_once=rev.ready_once,
        failure=rev.failure,
        last_crash=rev.last_crash,
        stuck=rev.stuck,
        models_ready=rev.model_dirs is not None,
        fetching=rev.fetching,
        retry_at=rev.retry_at,
        demand=Observation(
            concurrency=concurrency,
            rps=len(rev.requests) / window,
            idle_s=now - rev.last_request,
            waiting=rev.waiting,
        ),
    )
