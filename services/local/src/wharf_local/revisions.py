"""A new spec applied to a service's state: which components get a new revision, which keep
theirs (scaling and the canary percent change in place, as in Knative), which go.

Changes only the state objects it is given and returns what the runtime must start or stop;
no processes, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from wharf_api.plan import ServicePlan
from wharf_api.traffic import revision_name
from wharf_local.state import ApplyAction, Component, Revision, Service


@dataclass
class PlanChange:
    action: ApplyAction
    new_revisions: list[Revision] = field(default_factory=list)
    removed: list[Component] = field(default_factory=list)


def new_revision(comp: Component) -> Revision:
    """The component's next revision, now its latest created one."""
    name = revision_name(comp.plan.service_name, comp.next_number)
    rev = Revision(name, comp.next_number, comp.plan)
    comp.next_number += 1
    comp.revisions[name] = rev
    comp.rollout = replace(comp.rollout, latest_created=name)
    return rev


def apply_plan(svc: Service, doc: dict[str, Any], plan: ServicePlan, created: bool) -> PlanChange:
    """Bring `svc` to `plan` (the spec in `doc`). `created`: `svc` was made for this apply."""
    if not created and svc.plan == plan and svc.manifest == doc:
        return PlanChange("unchanged")
    change = PlanChange("created" if created else "configured")
    if not created:
        svc.generation += 1
        svc.manifest, svc.plan = doc, plan
    for cplan in plan.components:
        comp = svc.components.get(cplan.component)
        if comp is None:
            comp = svc.components[cplan.component] = Component(cplan)
        comp.plan = cplan
        latest = comp.latest
        if latest is None or latest.plan.revision_key() != cplan.revision_key():
            change.new_revisions.append(new_revision(comp))
        else:
            latest.plan = cplan
    for gone in set(svc.components) - {c.component for c in plan.components}:
        change.removed.append(svc.components.pop(gone))
    return change
