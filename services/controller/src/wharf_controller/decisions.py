"""The controller's own decisions (pure): whether an observed child already matches what is
desired, which children to prune, and which resources a configuration change affects (the
deployment mode is `wharf_api.defaulting.deployment_mode`, shared with `wharf up`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from wharf_api.quantity import canonical_quantity

JSON = dict[str, Any]


def _same_scalar(want: Any, have: Any) -> bool:
    if want == have:
        return True
    # the API server stores quantities in canonical form ("0.5" -> "500m") and may turn an
    # int-or-string into the other
    if isinstance(want, str | int | float) and isinstance(have, str | int | float):
        try:
            return canonical_quantity(want) == canonical_quantity(have)
        except (ValueError, TypeError):
            return str(want) == str(have)
    return False


def covers(observed: Any, desired: Any) -> bool:
    """Whether `observed` already holds every field of `desired` with the same value.

    Fields the API server or other managers add (defaults, status, clusterIP) are ignored;
    lists must have the same length and match item by item.
    """
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return False
        return all(k in observed and covers(observed[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            return False
        return all(covers(o, d) for o, d in zip(observed, desired, strict=True))
    return _same_scalar(desired, observed)


def needs_apply(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """An apply is needed when the child is missing or differs in a field the controller sets."""
    if observed is None:
        return True
    want = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    return not covers(observed, want)


def key_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace") or "", meta["name"]


def to_prune(
    observed: Iterable[Mapping[str, Any]], desired: Sequence[Mapping[str, Any]], owner_uid: str
) -> list[Mapping[str, Any]]:
    """Observed children controlled by the owner that are no longer desired."""
    wanted = {key_of(d) for d in desired}
    out = []
    for obj in observed:
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        owned = any(r.get("uid") == owner_uid and r.get("controller") for r in refs)
        if owned and key_of(obj) not in wanted:
            out.append(obj)
    return out


def affected_by_config(
    resources: Iterable[Mapping[str, Any]],
    render_old: Callable[[Mapping[str, Any]], Any],
    render_new: Callable[[Mapping[str, Any]], Any],
) -> list[Mapping[str, Any]]:
    """The resources whose children change between two configurations (render each with both;
    a render that fails counts as a change, so the error reaches the resource's status)."""
    out = []
    for res in resources:
        try:
            before = render_old(res)
        except (ValueError, LookupError) as exc:
            before = exc.__class__.__name__ + str(exc)
        try:
            after = render_new(res)
        except (ValueError, LookupError) as exc:
            after = exc.__class__.__name__ + str(exc)
        if before != after:
            out.append(res)
    return out
