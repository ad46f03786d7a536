"""What has been applied: manifests by kind and name, and the serving runtimes they define.

Parsing, defaulting and validation come from wharf-api; this module keeps the objects that
are not run as processes (ServingRuntime, ClusterServingRuntime, and the manifests of every
kind as applied, for `get` and for restoring a restarted daemon).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wharf_api import WharfValidationError, default, parse_object
from wharf_api import validate as validate_resource
from wharf_api.resources import ClusterServingRuntime, ServingRuntime
from wharf_local.runtimes import builtin_runtimes
from wharf_local.state import ApplyAction, ApplyResult


def applied_key(kind: str, namespace: str | None, name: str) -> str:
    """`Kind/namespace/name`; the namespace is empty for cluster-scoped kinds."""
    return f"{kind}/{namespace or ''}/{name}"


def _action(old: object, new: object) -> ApplyAction:
    return "created" if old is None else "unchanged" if old == new else "configured"


class Catalog:
    def __init__(self) -> None:
        self.serving_runtimes: dict[tuple[str, str], ServingRuntime] = {}
        self.cluster_runtimes: dict[str, ClusterServingRuntime] = {
            rt.name: rt for rt in builtin_runtimes()
        }
        self.applied: dict[str, dict[str, Any]] = {}

    @staticmethod
    def parse(
        documents: Iterable[dict[str, Any]],
    ) -> tuple[list[tuple[dict[str, Any], Any]], list[ApplyResult]]:
        """Defaulted, validated objects (runtimes first) and a result per rejected one."""
        parsed: list[tuple[dict[str, Any], Any]] = []
        rejected: list[ApplyResult] = []
        for doc in documents:
            meta = doc.get("metadata") or {}
            try:
                obj = default(parse_object(doc))
                validate_resource(obj)
            except WharfValidationError as exc:
                kind, name = str(doc.get("kind")), str(meta.get("name"))
                rejected.append(ApplyResult(kind, name, None, "invalid", error=str(exc)))
                continue
            parsed.append((doc, obj))
        parsed.sort(
            key=lambda p: 0 if isinstance(p[1], ServingRuntime | ClusterServingRuntime) else 1
        )
        return parsed, rejected

    def apply_runtime(
        self, doc: dict[str, Any], obj: ServingRuntime | ClusterServingRuntime
    ) -> ApplyResult:
        if isinstance(obj, ClusterServingRuntime):
            action = _action(self.cluster_runtimes.get(obj.name), obj)
            self.cluster_runtimes[obj.name] = obj
            self.applied[applied_key(obj.kind, None, obj.name)] = doc
            return ApplyResult(obj.kind, obj.name, None, action)
        namespace = obj.metadata.namespace or "default"
        action = _action(self.serving_runtimes.get((namespace, obj.name)), obj)
        self.serving_runtimes[(namespace, obj.name)] = obj
        self.applied[applied_key(obj.kind, namespace, obj.name)] = doc
        return ApplyResult(obj.kind, obj.name, namespace, action)

    def runtimes_in(self, namespace: str) -> list[ServingRuntime]:
        return [rt for (ns, _), rt in self.serving_runtimes.items() if ns == namespace]

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Forget an applied object; an applied ClusterServingRuntime that shadowed a built-in
        one brings the built-in back."""
        if kind == "ClusterServingRuntime":
            if self.applied.pop(applied_key(kind, None, name), None) is None:
                return False
            builtin = {rt.name: rt for rt in builtin_runtimes()}
            if name in builtin:
                self.cluster_runtimes[name] = builtin[name]
            else:
                self.cluster_runtimes.pop(name, None)
            return True
        ns = namespace or "default"
        if kind == "ServingRuntime":
            self.serving_runtimes.pop((ns, name), None)
        return self.applied.pop(applied_key(kind, ns, name), None) is not None
