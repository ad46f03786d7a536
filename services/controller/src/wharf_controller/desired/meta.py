"""Object metadata every child shares: names, labels, the owner reference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]

FIELD_MANAGER = "wharf-controller"


def owner_reference(owner: Mapping[str, Any]) -> JSON:
    """A controller owner reference to `owner` (a stored object, so it has a uid): the garbage
    collector deletes the child with it."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child(
    api_version: str,
    kind: str,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: JSON | None,
    annotations: Mapping[str, str] | None = None,
) -> JSON:
    metadata: JSON = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}
