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
