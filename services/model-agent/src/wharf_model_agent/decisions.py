"""What the agent does next, decided from what is wanted and what is there. No I/O here.

One `plan` call per reconcile: the LocalModelNode spec, the cache as scanned, the downloads in
flight and the failures remembered go in; what to delete, cancel and start, and the status to
report, come out. Models are independent: one model's failure never changes another's plan,
except that models share the node group's storage limit, which is handed out in spec order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wharf_model_agent import status
from wharf_model_agent.layout import is_valid_model_name, uri_key

RETRY_BASE_S = 10.0
RETRY_CAP_S = 600.0


@dataclass(frozen=True)
class WantedModel:
    """One `spec.localModels[]` entry. `namespace` is set for a model of a
    LocalModelNamespaceCache (the cache `namespace/name`), unset for a LocalModelCache."""

    name: str
    uri: str
    node_group: str | None = None
    namespace: str | None = None

    @property
    def key(self) -> str:
        return uri_key(self.uri)


@dataclass(frozen=True)
class CachedModel:
    """What the cache holds under one model name."""

    entries: frozenset[str] = frozenset()  # names in models/: the folder and/or its partial
    markers: frozenset[str] = frozenset()  # URI keys with a completion marker
    has_dir: bool = False
    bytes: int = 0  # size of the folder


@dataclass(frozen=True)
class Failure:
    key: str  # the URI key the attempt was for: a new URI starts afresh
    reason: str
    attempts: int
    retry_at: float


@dataclass(frozen=True)
class Plan:
    delete_entries: tuple[str, ...] = ()  # names in models/
    delete_markers: tuple[tuple[str, str], ...] = ()  # (model, key)
    cancel: tuple[str, ...] = ()
    start: tuple[WantedModel, ...] = ()
    model_status: dict[str, str] = field(default_factory=dict)
    model_errors: dict[str, str] = field(default_factory=dict)
    cache_bytes: int = 0  # bytes held by complete, wanted models


def record_failure(previous: Failure | None, key: str, reason: str, now: float) -> Failure:
    """The failure after one more failed attempt: retries back off 10 s, 20 s, ... 10 min."""
    attempts = previous.attempts + 1 if previous is not None and previous.key == key else 1
    delay = min(RETRY_BASE_S * 2 ** (attempts - 1), RETRY_CAP_S)
    return Failure(key=key, reason=reason, attempts=attempts, retry_at=now + delay)


def does_not_fit(name: str, size: int, in_use: int, limit: int | None) -> str | None:
    """The reason `size` more bytes break the storage limit, or None when they fit."""
    if limit is None or in_use + size <= limit:
        return None
    return (
        f"model {name} needs {size} bytes but the node group's storage limit is {limit} bytes "
        f"with {in_use} in use"
    )


def _dedupe(wanted: Sequence[WantedModel]) -> tuple[list[WantedModel], dict[str, str]]:
    kept: dict[str, WantedModel] = {}
    errors: dict[str, str] = {}
    for model in wanted:
        if not is_valid_model_name(model.name):
            errors[model.name] = f"model name {model.name!r} is not a valid folder name"
        elif model.name not in kept:
            kept[model.name] = model
    return list(kept.values()), errors


def _unwanted(
    by_name: Mapping[str, WantedModel],
    cache: Mapping[str, CachedModel],
    running: Mapping[str, str],
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Downloads to cancel, entries and markers to delete: whatever the spec no longer lists.

    A folder still being written is removed only after its download has stopped.
    """
    cancel = [n for n, key in running.items() if n not in by_name or by_name[n].key != key]
    delete_entries: list[str] = []
    delete_markers: list[tuple[str, str]] = []
    for name, cached in cache.items():
        if name in by_name:
            continue
        delete_markers.extend((name, k) for k in sorted(cached.markers))
        if name not in running:
            delete_entries.extend(sorted(cached.entries))
    return cancel, delete_entries, delete_markers


def plan(
    wanted: Sequence[WantedModel],
    cache: Mapping[str, CachedModel],
    running: Mapping[str, str],
    failures: Mapping[str, Failure],
    *,
    declared_sizes: Mapping[str, int] | None = None,
    limit: int | None = None,
    max_parallel: int = 2,
    now: float,
) -> Plan:
    """Decide one reconcile.

    `running` maps model name to the URI key of its download in flight; `declared_sizes` holds
    LocalModelCache `modelSize`s, which reserve space before a download starts.
    """
    declared_sizes = declared_sizes or {}
    models, model_errors = _dedupe(wanted)
    model_status = dict.fromkeys(model_errors, status.ERROR)
    by_name = {m.name: m for m in models}

    cancel, delete_entries, delete_markers = _unwanted(by_name, cache, running)

    in_use = 0
    candidates: list[WantedModel] = []
    for model in models:
        cached = cache.get(model.name, CachedModel())
        stale = cached.markers - {model.key}
        delete_markers.extend((model.name, k) for k in sorted(stale))
        complete = model.key in cached.markers and cached.has_dir
        if complete:
            model_status[model.name] = status.DOWNLOADED
            in_use += cached.bytes
            continue
        if model.key in cached.markers:  # marker without folder: the folder was removed
            delete_markers.append((model.name, model.key))
        if running.get(model.name) == model.key:
            model_status[model.name] = status.DOWNLOADING
            in_use += declared_sizes.get(model.name, 0)
            continue
        if model.name in running:  # a download of the old URI is being cancelled
            model_status[model.name] = status.PENDING
            continue
        if stale and cached.has_dir:
            # The folder holds another URI's copy: start from nothing.
            delete_entries.extend(sorted(cached.entries))
            model_status[model.name] = status.PENDING
            continue
        failure = failures.get(model.name)
        if failure is not None and failure.key == model.key and now < failure.retry_at:
            model_status[model.name] = status.ERROR
            model_errors[model.name] = failure.reason
            continue
        candidates.append(model)

    active = sum(1 for name, key in running.items() if name in by_name and by_name[name].key == key)
    start: list[WantedModel] = []
    for model in candidates:
        size = declared_sizes.get(model.name, 0)
        if (reason := does_not_fit(model.name, size, in_use, limit)) is not None:
            model_status[model.name] = status.ERROR
            model_errors[model.name] = reason
            continue
        if active >= max_parallel:
            model_status[model.name] = status.PENDING
            continue
        in_use += size
        active += 1
        start.append(model)
        model_status[model.name] = status.DOWNLOADING

    cache_bytes = sum(
        cache[m.name].bytes for m in models if model_status.get(m.name) == status.DOWNLOADED
    )
    return Plan(
        delete_entries=tuple(dict.fromkeys(delete_entries)),
        delete_markers=tuple(dict.fromkeys(delete_markers)),
        cancel=tuple(cancel),
        start=tuple(start),
        model_status=model_status,
        model_errors=model_errors,
        cache_bytes=cache_bytes,
    )


def storage_limit(group_limits: Mapping[str, int], groups: Sequence[str | None]) -> int | None:
    """The limit the cache keeps to: the smallest limit among the node groups the models name.

    All of a node's models share one cache folder, so the tightest group bounds it.
    """
    limits = [group_limits[g] for g in groups if g is not None and g in group_limits]
    return min(limits) if limits else None
