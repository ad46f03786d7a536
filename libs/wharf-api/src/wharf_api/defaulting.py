"""KServe's defaulting webhook, as a pure function: `default(obj)` returns a defaulted copy.

It is idempotent: `default(default(x)) == default(x)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from wharf_api.resources import InferenceService, Resource
from wharf_api.resources.inference_service import (
    ComponentExtensionSpec,
    ModelSpec,
    PredictorSpec,
)

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODES: tuple[str, ...] = ("Standard", "Knative", "ModelMesh")
LEGACY_DEPLOYMENT_MODES: dict[str, str] = {"RawDeployment": "Standard", "Serverless": "Knative"}
DEFAULT_MIN_REPLICAS = 1
CONTAINER_NAME = "kserve-container"
V2_DEFAULT_FORMATS: frozenset[str] = frozenset({"triton"})

R = TypeVar("R", bound=Resource)


def normalize_deployment_mode(mode: str) -> str:
    """`RawDeployment` -> `Standard`, `Serverless` -> `Knative`; anything else unchanged."""
    return LEGACY_DEPLOYMENT_MODES.get(mode, mode)


def deployment_mode(isvc: Mapping[str, Any], default_mode: str) -> str:
    """The mode a resource (as a JSON document) runs in, by KServe's precedence: the mode frozen
    in `status.deploymentMode`, then the annotation, then the config's `defaultDeploymentMode`;
    KServe's old names (`RawDeployment`, `Serverless`) read as `Standard` and `Knative`."""
    frozen = (isvc.get("status") or {}).get("deploymentMode")
    if frozen:
        return normalize_deployment_mode(str(frozen))
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    chosen = annotations.get(DEPLOYMENT_MODE_ANNOTATION) or default_mode
    return normalize_deployment_mode(str(chosen))


def predictor_model(predictor: PredictorSpec) -> ModelSpec | None:
    """The predictor's model, converting a single framework shortcut (`sklearn: {...}`)."""
    if predictor.model is not None:
        return predictor.model
    frameworks = predictor.frameworks_set()
    if len(frameworks) != 1:
        return None
    name = frameworks[0]
    ext = getattr(predictor, name)
    data = ext.model_dump(by_alias=True, exclude_none=True)
    data["modelFormat"] = {"name": name}
    return ModelSpec.model_validate(data)


def _default_component(component: ComponentExtensionSpec) -> None:
    if component.min_replicas is None:
        component.min_replicas = DEFAULT_MIN_REPLICAS
    containers = component.containers
    if containers and len(containers) == 1 and not containers[0].name:
        containers[0].name = CONTAINER_NAME


def _default_predictor(predictor: PredictorSpec) -> None:
    _default_component(predictor)
    if predictor.model is None and len(predictor.frameworks_set()) == 1:
        framework = predictor.frameworks_set()[0]
        predictor.model = predictor_model(predictor)
        setattr(predictor, framework, None)
    model = predictor.model
    if model is not None and model.protocol_version is None:
        name = model.model_format.name
        model.protocol_version = "v2" if name in V2_DEFAULT_FORMATS else "v1"


def _default_isvc(isvc: InferenceService) -> None:
    annotations = isvc.metadata.annotations
    if annotations and DEPLOYMENT_MODE_ANNOTATION in annotations:
        mode = annotations[DEPLOYMENT_MODE_ANNOTATION]
        annotations[DEPLOYMENT_MODE_ANNOTATION] = normalize_deployment_mode(mode)
    spec = isvc.spec
    _default_predictor(spec.predictor)
    if spec.transformer is not None:
        _default_component(spec.transformer)
    if spec.explainer is not None:
        _default_component(spec.explainer)
    for canary in spec.canary or []:
        _default_predictor(canary.predictor)


def default(obj: R) -> R:
    """A defaulted copy of `obj`, as KServe's mutating webhook would store it."""
    out = obj.model_copy(deep=True)
    if isinstance(out, InferenceService):
        _default_isvc(out)
    return out
