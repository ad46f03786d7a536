"""A local service as `kubectl get -o yaml` would show it, plus what only a local run has
(revisions, replicas, pids, ports, logs, events). Pure serialisation of the runtime's state."""

from __future__ import annotations

import time
from typing import Any

from wharf_api.status import status_document
from wharf_local.state import Revision, Service
from wharf_storage import redact_uri


def shown_uri(uri: str | None) -> str | None:
    """A storage URI as events and status show it: no user info or query (SAS tokens)."""
    return None if uri is None else redact_uri(uri)


def _revision(rev: Revision) -> dict[str, Any]:
    return {
        "name": rev.name,
        "storageUri": shown_uri(rev.plan.storage_uri),
        "modelDirs": rev.model_dirs,
        "inflight": rev.inflight,
        "failure": list(rev.failure) if rev.failure else None,
        "replicas": [
            {
                "index": r.index,
                "state": r.state,
                "pid": r.process.pid if r.process else None,
                "httpPort": r.http_port,
                "grpcPort": r.grpc_port,
                "inflight": r.inflight,
                "crashes": r.crashes,
                "log": str(r.process.log_path) if r.process else None,
            }
            for r in rev.replicas
        ],
    }


def describe(svc: Service) -> dict[str, Any]:
    metadata = dict(svc.manifest.get("metadata") or {})
    metadata.update(
        namespace=svc.namespace, generation=svc.generation, creationTimestamp=svc.created
    )
    predictor = svc.plan.component("predictor")
    doc: dict[str, Any] = {
        "observedGeneration": svc.observed_generation,
        "conditions": [c.as_dict() for c in svc.conditions],
        "components": {},
        "url": svc.plan.url,
    }
    if svc.status is not None:
        doc = status_document(svc.status, svc.plan.url)
    if predictor is not None and predictor.runtime:
        key = (
            "clusterServingRuntimeName"
            if predictor.runtime_kind == "ClusterServingRuntime"
            else "servingRuntimeName"
        )
        doc[key] = predictor.runtime
    return {
        **svc.manifest,
        "metadata": metadata,
        "status": doc,
        "local": {
            "revisions": {
                name: [_revision(rev) for rev in comp.revisions.values()]
                for name, comp in svc.components.items()
            },
            "events": [e.__dict__ for e in svc.events],
            "ageSeconds": round(time.monotonic() - svc.created_at, 1),
        },
    }
