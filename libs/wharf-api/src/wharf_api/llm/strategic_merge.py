"""Kubernetes' strategic merge patch, as KServe applies it to LLMInferenceService specs.

KServe merges each config onto the one before with `strategicpatch.StrategicMergePatch` on the
`LLMInferenceServiceSpec` Go type. The rules that matter, from the Go struct tags:

- maps merge key by key, recursively; a value of another type replaces;
- lists replace, except the lists Kubernetes tags `patchStrategy: merge`, which merge item by
  item on their merge key: a PodSpec's `containers`, `initContainers`, `ephemeralContainers`,
  `volumes`, `imagePullSecrets`, `resourceClaims`, `schedulingGates` (by `name`), `hostAliases`
  (by `ip`), `topologySpreadConstraints` (by `topologyKey`), and a Container's `env` (by `name`),
  `ports` (by `containerPort`), `volumeMounts` (by `mountPath`), `volumeDevices` (by
  `devicePath`);
- a merged list keeps the base's order, and items that only the override has come before the
  base's items that follow them (Kubernetes' `mergeSortedSlice`): a new env var goes first.

Patch directives (`$patch`, `$retainKeys`, ...) never reach KServe's merge (Go drops them when
it reads the spec into its types), so they are dropped here too. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MergeError", "merge_specs"]

JSON = dict[str, Any]


class MergeError(ValueError):
    """Two specs cannot be merged; the message names the field."""


# type name -> field -> (child type, merge key or None for "replace")
_POD = "PodSpec"
_CONTAINER = "Container"
_SCHEMA: dict[str, dict[str, tuple[str, str | None]]] = {
    "Spec": {
        "template": (_POD, None),
        "worker": (_POD, None),
        "prefill": ("Workload", None),
        "router": ("Router", None),
    },
    "Workload": {"template": (_POD, None), "worker": (_POD, None)},
    "Router": {"scheduler": ("Scheduler", None)},
    "Scheduler": {"template": (_POD, None), "tokenizer": ("Tokenizer", None)},
    "Tokenizer": {"template": (_POD, None)},
    _POD: {
        "containers": (_CONTAINER, "name"),
        "initContainers": (_CONTAINER, "name"),
        "ephemeralContainers": (_CONTAINER, "name"),
        "volumes": ("", "name"),
        "imagePullSecrets": ("", "name"),
        "resourceClaims": ("", "name"),
        "schedulingGates": ("", "name"),
        "hostAliases": ("", "ip"),
        "topologySpreadConstraints": ("", "topologyKey"),
    },
    _CONTAINER: {
        "env": ("", "name"),
        "ports": ("", "containerPort"),
        "volumeMounts": ("", "mountPath"),
        "volumeDevices": ("", "devicePath"),
    },
}


def _without_directives(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_directives(v) for k, v in value.items() if not str(k).startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return value


def _merge_map(base: JSON, patch: Mapping[str, Any], type_name: str, path: str) -> JSON:
    out = dict(base)
    fields = _SCHEMA.get(type_name, {})
    for key, value in patch.items():
        where = f"{path}.{key}" if path else key
        if value is None:
            out.pop(key, None)
            continue
        if key not in out:
            out[key] = value
            continue
        child, merge_key = fields.get(key, ("", None))
        current = out[key]
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = _merge_map(dict(current), value, child, where)
        elif isinstance(current, list) and isinstance(value, list) and merge_key:
            out[key] = _merge_list(current, value, child, merge_key, where)
        else:
            out[key] = value
    return out


def _key_of(item: Any, merge_key: str, where: str) -> Any:
    if not isinstance(item, Mapping) or merge_key not in item:
        raise MergeError(f"{where}: every item needs its merge key {merge_key!r}")
    return item[merge_key]


def _merge_list(
    base: list[Any], patch: list[Any], child: str, merge_key: str, where: str
) -> list[Any]:
    if not base and not patch:
        return []
    merged = list(base)
    base_keys = [_key_of(b, merge_key, where) for b in base]
    for item in patch:
        key = _key_of(item, merge_key, where)
        if key in base_keys:
            i = base_keys.index(key)
            merged[i] = _merge_map(merged[i], item, child, f"{where}[{merge_key}={key}]")
        else:
            merged.append(item)
            base_keys.append(key)
    patch_keys = [_key_of(p, merge_key, where) for p in patch]
    # Kubernetes' normalizeElementOrder: patch items in patch order, base-only items in base
    # order, then interleaved by their base positions; an item the base lacks goes first
    in_patch = [m for m in merged if m[merge_key] in patch_keys]
    in_patch.sort(key=lambda m: patch_keys.index(m[merge_key]))
    server_only = [m for m in merged if m[merge_key] not in patch_keys]
    order = [_key_of(b, merge_key, where) for b in base]
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if i >= len(server_only):
            out.append(in_patch[j])
            j += 1
        elif j >= len(in_patch):
            out.append(server_only[i])
            i += 1
        else:
            left, right = server_only[i][merge_key], in_patch[j][merge_key]
            if left in order and right in order and order.index(left) < order.index(right):
                out.append(server_only[i])
                i += 1
            else:
                out.append(in_patch[j])
                j += 1
    return out


def merge_specs(base: Mapping[str, Any], override: Mapping[str, Any], where: str = "spec") -> JSON:
    """`override` merged onto `base` (both LLMInferenceServiceSpec JSON, camelCase keys).

    Neither argument is changed: both are copied first (without patch directives), so the
    merge below may share their pieces.
    """
    return _merge_map(
        _without_directives(dict(base)), _without_directives(dict(override)), "Spec", where
    )
