"""Manifest adjustments for running on this machine. Pure.

A relative local path in a `storageUri` (`./models/iris`, `../models/iris`) names a folder
beside the manifest; the daemon runs elsewhere, so it becomes an absolute `file://` URI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RELATIVE = ("./", "../")


def _absolute(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value.startswith(RELATIVE):
        return (base / value).resolve().as_uri()
    return value


def resolve_local_paths(doc: Any, base: Path) -> Any:
    """A copy of `doc` with every relative `storageUri` (and `storageUris[].uri`) absolute."""
    if isinstance(doc, list):
        return [resolve_local_paths(item, base) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "storageUri":
            out[key] = _absolute(value, base)
        elif key == "storageUris" and isinstance(value, list):
            out[key] = [
                {**item, "uri": _absolute(item.get("uri"), base)}
                if isinstance(item, dict)
                else item
                for item in value
            ]
        else:
            out[key] = resolve_local_paths(value, base)
    return out


def repeated_objects(named: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A warning per object that several documents name (`(source, document)` pairs, in apply
    order): each is applied in turn, so the last one wins, as with `kubectl apply`."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for source, doc in named:
        raw = doc.get("metadata")
        meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
        key = (str(doc.get("kind")), str(meta.get("namespace") or "default"), str(meta.get("name")))
        seen.setdefault(key, []).append(source)
    return [
        f"{kind.lower()}/{name} is named {len(sources)} times ({', '.join(sources)}): "
        f"each is applied in turn and the last one ({sources[-1]}) wins"
        for (kind, _, name), sources in seen.items()
        if len(sources) > 1
    ]
