"""An sklearn InferenceService on a real kind cluster, from the manifest to a prediction.

The model is trained here (iris ships with scikit-learn), served to the storage initializer by
an HTTP file server pod in the test's namespace (the model-server image's python, a ConfigMap
holding the file), so nothing is downloaded from outside the cluster. The prediction goes
through the API server's service proxy, the way `kubectl proxy` reaches a ClusterIP Service, and
must equal what the same model predicts in this process.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from wharf_api.names import component_service_name
from wharf_e2e.kube import Kube, KubeError, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(900)]

MODEL_SERVER_IMAGE = "ghcr.io/wharf-serving/model-server:0.1.0"
FILES = "model-files"
FILES_PORT = 8000
ISVC = "sklearn-iris"
# Predictor Services listen on 80 (wharf_controller.desired.routing.SERVICE_PORT)
PREDICTOR_PORT = 80
SAMPLES = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6], [5.1, 3.5, 1.4, 0.2]]
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _model() -> tuple[bytes, list[int]]:
    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue(), [int(p) for p in model.predict(SAMPLES)]


def _file_server(namespace: str, model: bytes) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": FILES}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": FILES, "namespace": namespace},
            "binaryData": {"model.joblib": base64.b64encode(model).decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": FILES, "namespace": namespace, "labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "files",
                        "image": MODEL_SERVER_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-m", "http.server", str(FILES_PORT)],
                        "args": ["--directory", "/models"],
                        "ports": [{"containerPort": FILES_PORT, "name": "http"}],
                        "readinessProbe": {"tcpSocket": {"port": FILES_PORT}},
                        "securityContext": RESTRICTED,
                        "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                    }
                ],
                "volumes": [{"name": "models", "configMap": {"name": FILES}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": FILES, "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": FILES_PORT, "targetPort": "http"}]},
        },
    ]


def _inference_service(namespace: str) -> dict[str, Any]:
    uri = f"http://{FILES}.{namespace}.svc.cluster.local:{FILES_PORT}/model.joblib"
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": ISVC,
            "namespace": namespace,
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}},
    }


def _ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _proxy_post(kube: Kube, namespace: str, service: str, path: str, body: Any) -> Any:
    """POST through the API server's service proxy; the answer's JSON, or KubeError."""
    response = await kube.api.call_api(
        f"/api/v1/namespaces/{namespace}/services/{service}:{PREDICTOR_PORT}/proxy/{path}",
        "POST",
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=60,
    )
    text = await response.text()
    if response.status != 200:
        raise KubeError(response.status, text[:500], {})
    return json.loads(text)


async def test_sklearn_iris_predicts_through_the_cluster(kind: Kube, kind_namespace: str) -> None:
    model, expected = _model()
    for obj in _file_server(kind_namespace, model):
        await kind.apply(obj, kind_namespace)

    async def files_ready() -> bool:
        pod = await kind.get("v1", "Pod", FILES, kind_namespace)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and all(s.get("ready") for s in statuses)

    await wait_for(files_ready, "the model file server pod", within=180, interval=2)

    await kind.apply(_inference_service(kind_namespace), kind_namespace)

    async def isvc() -> dict[str, Any] | None:
        got = await kind.get("serving.kserve.io/v1beta1", "InferenceService", ISVC, kind_namespace)
        return got if _ready(got) else None

    # The storage initializer downloads, the model server loads, the controller reports Ready.
    await wait_for(isvc, f"InferenceService {ISVC} Ready", within=600, interval=3)

    service = component_service_name(ISVC, "predictor")
    v1 = await _proxy_post(
        kind, kind_namespace, service, f"v1/models/{ISVC}:predict", {"instances": SAMPLES}
    )
    assert v1 == {"predictions": expected}

    v2 = await _proxy_post(
        kind,
        kind_namespace,
        service,
        f"v2/models/{ISVC}/infer",
        {
            "inputs": [
                {"name": "input-0", "shape": [len(SAMPLES), 4], "datatype": "FP64", "data": SAMPLES}
            ]
        },
    )
    assert v2["model_name"] == ISVC
    assert v2["outputs"][0]["data"] == expected
