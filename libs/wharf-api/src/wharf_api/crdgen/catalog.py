"""Which CRDs Wharf ships: every registered resource kind, with kubectl columns like KServe's."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from wharf_api.crdgen.crd import AGE, CrdSource, CrdVersion, PrinterColumn
from wharf_api.registry import iter_resources
from wharf_api.resources import llm_inference_service_v1alpha1 as llm_v1alpha1

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


# Versions whose shape differs from the stored one get their own model (and so their own schema);
# the API server converts between them through the controller's conversion webhook.
VERSION_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("LLMInferenceService", "v1alpha1"): llm_v1alpha1.LLMInferenceService,
    ("LLMInferenceServiceConfig", "v1alpha1"): llm_v1alpha1.LLMInferenceServiceConfig,
}

# Where the API server sends ConversionReviews: the controller's webhook Service. A placeholder
# the deployment patches (cert-manager injects the CA bundle through the
# `cert-manager.io/inject-ca-from` annotation; tests point it at a URL on loopback).
WEBHOOK_SERVICE = {"name": "wharf-webhook-service", "namespace": "kserve", "port": 443}
CONVERT_PATH = "/convert"


def webhook_conversion() -> dict[str, Any]:
    """The CRD `spec.conversion` stanza of a kind served at versions of different shapes."""
    return {
        "strategy": "Webhook",
        "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {"service": {**WEBHOOK_SERVICE, "path": CONVERT_PATH}},
        },
    }


def crd_sources() -> list[CrdSource]:
    """One CRD source per kind, versions in the order they are declared."""
    sources = []
    for info in iter_resources():
        versions = [
            CrdVersion(
                name,
                VERSION_MODELS.get((info.kind, name), info.model),
                served=True,
                storage=name == info.storage_version,
            )
            for name in info.served_versions
        ]
        converted = any((info.kind, v.name) in VERSION_MODELS for v in versions)
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
                conversion=webhook_conversion() if converted else None,
            )
        )
    return sorted(sources, key=lambda s: s.plural)
