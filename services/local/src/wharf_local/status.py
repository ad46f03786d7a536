"""Status conditions of a local InferenceService, as KServe reports them: pure.

Each component has `{Component}Ready` (PredictorReady, TransformerReady, ExplainerReady);
`IngressReady` is true once every component has a route; `Ready` is true when all of them are.
A condition keeps its lastTransitionTime while its status does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentReadiness:
    component: str
    ready: bool
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    last_transition_time: str
    reason: str | None = None
    message: str | None = None


def _status(ok: bool) -> str:
    return "True" if ok else "False"


def conditions(
    components: Sequence[ComponentReadiness],
    routed: bool,
    now: str,
    previous: Sequence[Condition] = (),
) -> list[Condition]:
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
            "IngressReady", ingress_ok, "RoutesNotReady", "waiting for every component to be ready"
        )
    )
    first = not_ready[0] if not_ready else None
    out.append(
        make(
            "Ready",
            ingress_ok,
            first.reason if first else "IngressNotReady",
            first.message if first else "the ingress has no route yet",
        )
    )
    return sorted(out, key=lambda c: c.type)
