"""An sklearn InferenceService on a real kind cluster, from the manifest to a prediction.

The model is trained here (iris ships with scikit-learn), served to the storage initializer by
an HTTP file server pod in the test's namespace (the model-server image's python, ConfigMaps
holding the file; wharf_e2e.kind), so nothing is downloaded from outside the cluster. The
prediction goes through the API server's service proxy, the way `kubectl proxy` reaches a
ClusterIP Service, and must equal what the same model predicts in this process.
"""

from __future__ import annotations

import io
from typing import Any

import joblib  # type: ignore[import-untyped]
import pytest
from sklearn.datasets import load_iris  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from wharf_api.names import component_service_name
from wharf_e2e.kind import file_url, proxy_json, serve_files, service_target, wait_ready
from wharf_e2e.kube import Kube

pytestmark = [pytest.mark.kind, pytest.mark.timeout(900)]

ISVC = "sklearn-iris"
# Predictor Services listen on 80 (wharf_controller.desired.routing.SERVICE_PORT)
PREDICTOR_PORT = 80
SAMPLES = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6], [5.1, 3.5, 1.4, 0.2]]


def _model() -> tuple[bytes, list[int]]:
    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue(), [int(p) for p in model.predict(SAMPLES)]


def _inference_service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": ISVC,
            "namespace": namespace,
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": file_url(namespace, "model.joblib"),
                }
            }
        },
    }


async def test_sklearn_iris_predicts_through_the_cluster(kind: Kube, kind_namespace: str) -> None:
    model, expected = _model()
    await serve_files(kind, kind_namespace, {"model.joblib": model})

    await kind.apply(_inference_service(kind_namespace), kind_namespace)
    # The storage initializer downloads, the model server loads, the controller reports Ready.
    await wait_ready(
        kind, "serving.kserve.io/v1beta1", "InferenceService", ISVC, kind_namespace, within=600
    )

    predictor = service_target(component_service_name(ISVC, "predictor"), PREDICTOR_PORT)
    v1 = await proxy_json(
        kind, kind_namespace, predictor, f"v1/models/{ISVC}:predict", {"instances": SAMPLES}
    )
    assert v1 == {"predictions": expected}

    v2 = await proxy_json(
        kind,
        kind_namespace,
        predictor,
        f"v2/models/{ISVC}/infer",
        {
            "inputs": [
                {"name": "input-0", "shape": [len(SAMPLES), 4], "datatype": "FP64", "data": SAMPLES}
            ]
        },
    )
    assert v2["model_name"] == ISVC
    assert v2["outputs"][0]["data"] == expected
