"""TrainedModel, `serving.kserve.io/v1alpha1` (short name `tm`)."""

from __future__ import annotations

from wharf_api.quantity import Quantity
from wharf_api.resources._base import Addressable, Condition, KServeModel, Resource


class TrainedModelModel(KServeModel):
    storage_uri: str
    framework: str
    memory: Quantity


class TrainedModelSpec(KServeModel):
    inference_service: str
    model: TrainedModelModel


class TrainedModelStatus(KServeModel):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    url: str | None = None
    address: Addressable | None = None


class TrainedModel(Resource):
    plural = "trainedmodels"
    singular = "trainedmodel"
    short_names = ("tm",)
    served_versions = ("v1alpha1",)
    storage_version = "v1alpha1"

    api_version: str = "serving.kserve.io/v1alpha1"
    kind: str = "TrainedModel"
    spec: TrainedModelSpec
    status: TrainedModelStatus | None = None
