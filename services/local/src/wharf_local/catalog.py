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
from wharf_api.names import dns1123_label_error, dns1123_subdomain_error
from wharf_api.resources import (
    ClusterServingRuntime,
    LLMInferenceServiceConfig,
    ServingRuntime,
)
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
            if is_core(doc):
                why = _core_error(doc)
                if why is None:
                    parsed.append((doc, CORE))
                else:
                    rejected.append(why)
                continue
            skipped = _skipped(doc)
            if skipped is not None:
                rejected.append(skipped)
                continue
            try:
                obj = default(parse_object(doc))
                validate_resource(obj)
            except WharfValidationError as exc:
                kind, name = str(doc.get("kind")), str(meta.get("name"))
                rejected.append(ApplyResult(kind, name, None, "invalid", error=str(exc)))
                continue
            parsed.append((doc, obj))
        # Secrets, runtimes and LLM presets before the services that use them
        parsed.sort(
            key=lambda p: (
                0
                if p[1] is CORE
                or isinstance(
                    p[1], ServingRuntime | ClusterServingRuntime | LLMInferenceServiceConfig
                )
                else 1
            )
        )
        return parsed, rejected

    def apply_core(self, doc: dict[str, Any]) -> ApplyResult:
        """A Secret or ServiceAccount (core/v1): kept for the storage credentials of the
        services in its namespace. Its data is never shown in results or events."""
        meta = doc.get("metadata") or {}
        kind, name = str(doc["kind"]), str(meta["name"])
        namespace = str(meta.get("namespace") or "default")
        key = applied_key(kind, namespace, name)
        action = _action(self.applied.get(key), doc)
        self.applied[key] = doc
        return ApplyResult(kind, name, namespace, action)

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


CORE_KINDS = frozenset({"Secret", "ServiceAccount"})
# the parsed form of a Secret or ServiceAccount: kept as the manifest itself
CORE = object()


def is_core(doc: dict[str, Any]) -> bool:
    """A Secret or ServiceAccount of the core API group, which `wharf up` keeps for storage
    credentials (how KServe users pass them)."""
    return doc.get("apiVersion") == "v1" and doc.get("kind") in CORE_KINDS


def _core_error(doc: dict[str, Any]) -> ApplyResult | None:
    """A Secret's or ServiceAccount's name and namespace, checked as the API server does."""
    meta = doc.get("metadata") or {}
    kind, name, namespace = str(doc.get("kind")), str(meta.get("name") or ""), meta.get("namespace")
    why = dns1123_subdomain_error(name) if name else "a name is required"
    where = "metadata.name"
    if why is None and namespace is not None:
        why, where = dns1123_label_error(str(namespace)), "metadata.namespace"
    if why is None:
        return None
    return ApplyResult(kind, name, None, "invalid", error=f"{kind} {name}: {where}: {why}")


def _skipped(doc: dict[str, Any]) -> ApplyResult | None:
    """Kinds of other API groups (a Deployment, a ConfigMap beside the manifests) are skipped
    with a note, as they would be applied by kubectl and not by Wharf."""
    api_version = str(doc.get("apiVersion") or "")
    if not api_version or api_version.startswith("serving.kserve.io/"):
        return None
    meta = doc.get("metadata") or {}
    kind = str(doc.get("kind"))
    return ApplyResult(
        kind,
        str(meta.get("name") or ""),
        meta.get("namespace"),
        "skipped",
        note=f"{api_version} {kind} is not a kind wharf runs; skipped",
    )
