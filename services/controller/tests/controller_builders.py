"""Builders for the controller's tests."""

from __future__ import annotations

import base64
from typing import Any

from wharf_api import default, parse_object
from wharf_api.resources import InferenceService


def isvc(name: str = "iris", namespace: str = "team", **predictor: Any) -> InferenceService:
    spec = {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://bucket/iris"},
        **predictor,
    }
    obj = default(
        parse_object(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"predictor": spec},
            }
        )
    )
    assert isinstance(obj, InferenceService)
    return obj


def secret(
    name: str, data: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "annotations": annotations or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def deployment(
    name: str, *, replicas: int, available: int, generation: int = 1, observed: int = 1
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": replicas,
            "availableReplicas": available,
        },
    }
