"""KServe's defaulting: framework shortcuts, deployment-mode names, protocol, replicas."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api import default, parse_object
from wharf_api.resources import InferenceService
from wharf_api.resources.inference_service import FRAMEWORKS


def _isvc(predictor: dict[str, Any], annotations: dict[str, str] | None = None) -> InferenceService:
    meta: dict[str, Any] = {"name": "m"}
    if annotations is not None:
        meta["annotations"] = annotations
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": meta,
            "spec": {"predictor": predictor},
        }
    )
    assert isinstance(obj, InferenceService)
    return obj


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_framework_shortcut_becomes_model_format(framework: str) -> None:
    src = {framework: {"storageUri": "gs://b/m", "runtimeVersion": "1.2", "args": ["--x"]}}
    out = default(_isvc(src)).to_dict()["spec"]["predictor"]
    assert framework not in out
    assert out["model"]["modelFormat"] == {"name": framework}
    assert out["model"]["storageUri"] == "gs://b/m"
    assert out["model"]["runtimeVersion"] == "1.2"
    assert out["model"]["args"] == ["--x"]
    assert out["model"]["protocolVersion"] == ("v2" if framework == "triton" else "v1")


def test_explicit_protocol_is_kept() -> None:
    out = default(_isvc({"sklearn": {"protocolVersion": "v2"}}))
    assert out.spec.predictor.model is not None
    assert out.spec.predictor.model.protocol_version == "v2"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("RawDeployment", "Standard"),
        ("Serverless", "Knative"),
        ("Standard", "Standard"),
        ("Knative", "Knative"),
        ("ModelMesh", "ModelMesh"),
    ],
)
def test_deployment_mode_names_are_normalised(given: str, stored: str) -> None:
    out = default(_isvc({"sklearn": {}}, {"serving.kserve.io/deploymentMode": given}))
    assert out.metadata.annotations == {"serving.kserve.io/deploymentMode": stored}


def test_min_replicas_defaults_to_one_on_every_component_but_is_kept_when_set() -> None:
    obj = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": {
                "predictor": {"minReplicas": 0, "sklearn": {}},
                "transformer": {"containers": [{"image": "t"}]},
            },
        }
    )
    assert isinstance(obj, InferenceService)
    out = default(obj)
    assert out.spec.predictor.min_replicas == 0
    assert out.spec.transformer is not None
    assert out.spec.transformer.min_replicas == 1
    assert out.spec.transformer.containers is not None
    assert out.spec.transformer.containers[0].name == "kserve-container"


def test_default_does_not_mutate_its_input() -> None:
    obj = _isvc({"sklearn": {}}, {"serving.kserve.io/deploymentMode": "Serverless"})
    before = obj.to_dict()
    default(obj)
    assert obj.to_dict() == before


def test_two_frameworks_are_left_for_validation_to_reject() -> None:
    out = default(_isvc({"sklearn": {}, "xgboost": {}}))
    assert out.spec.predictor.model is None
    assert out.spec.predictor.frameworks_set() == ["sklearn", "xgboost"]
