"""Which CRDs Wharf ships: every registered resource kind, with kubectl columns like KServe's."""

from __future__ import annotations

from wharf_api.crdgen.crd import AGE, CrdSource, CrdVersion, PrinterColumn
from wharf_api.registry import iter_resources

_READY = PrinterColumn("Ready", ".status.conditions[?(@.type=='Ready')].status")
_URL = PrinterColumn("URL", ".status.url")

# The columns `kubectl get` prints, as KServe's CRDs declare them.
COLUMNS: dict[str, tuple[PrinterColumn, ...]] = {
    "InferenceService": (
        _URL,
        _READY,
        PrinterColumn(
            "Prev", ".status.components.predictor.traffic[?(@.tag=='prev')].percent", "integer"
        ),
        PrinterColumn(
            "Latest",
            ".status.components.predictor.traffic[?(@.latestRevision==true)].percent",
            "integer",
        ),
        PrinterColumn(
            "PrevRolledoutRevision",
            ".status.components.predictor.traffic[?(@.tag=='prev')].revisionName",
            priority=1,
        ),
        PrinterColumn(
            "LatestReadyRevision",
            ".status.components.predictor.traffic[?(@.latestRevision==true)].revisionName",
            priority=1,
        ),
        AGE,
    ),
    "LLMInferenceService": (_URL, _READY, AGE),
    "InferenceGraph": (_URL, _READY, AGE),
    "ServingRuntime": (
        PrinterColumn("Disabled", ".spec.disabled", "boolean"),
        PrinterColumn("ModelType", ".spec.supportedModelFormats[*].name"),
        PrinterColumn("Containers", ".spec.containers[*].name"),
        AGE,
    ),
    "TrainedModel": (_URL, _READY, AGE),
}
COLUMNS["ClusterServingRuntime"] = COLUMNS["ServingRuntime"]


def crd_sources() -> list[CrdSource]:
    """One CRD source per kind, versions in the order they are declared."""
    sources = []
    for info in iter_resources():
        versions = [
            CrdVersion(name, info.model, served=True, storage=name == info.storage_version)
            for name in info.served_versions
        ]
        if info.storage_version not in info.served_versions:
            versions.append(CrdVersion(info.storage_version, info.model, served=False))
        sources.append(
            CrdSource(
                group=info.group,
                kind=info.kind,
                plural=info.plural,
                versions=versions,
                scope="Cluster" if info.scope == "Cluster" else "Namespaced",
                short_names=info.short_names,
                columns=COLUMNS.get(info.kind, (AGE,)),
            )
        )
    return sorted(sources, key=lambda s: s.plural)
