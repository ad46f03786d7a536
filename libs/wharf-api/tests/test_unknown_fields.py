"""Unknown fields: pruned in KServe's own types (as the API server does), kept in the
Kubernetes types KServe embeds (Container, PodSpec, ...)."""

from __future__ import annotations

from pathlib import Path

from wharf_api import k8s, load_documents, parse_object

SEEDS = Path(__file__).parent / "fixtures" / "seeds"


def test_unknown_kserve_field_is_pruned() -> None:
    (doc,) = load_documents(SEEDS / "012-inferenceservice-ab-test-llm.yaml")
    assert "default" in doc["spec"]
    assert "default" not in parse_object(doc).to_dict()["spec"]


def test_unknown_pod_and_container_fields_are_kept() -> None:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m", "uid": "123"},
        "spec": {
            "predictor": {
                "hostNetwork": True,
                "tolerations": [{"key": "gpu", "operator": "Exists"}],
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "livenessProbe": {"httpGet": {"path": "/", "port": 8080}},
                },
            }
        },
    }
    out = parse_object(doc).to_dict()
    assert out["metadata"]["uid"] == "123"
    assert out["spec"]["predictor"]["hostNetwork"] is True
    assert out["spec"]["predictor"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert out["spec"]["predictor"]["model"]["livenessProbe"]["httpGet"]["port"] == 8080


def test_every_embedded_kubernetes_type_names_its_definition() -> None:
    classes = [
        c
        for c in vars(k8s).values()
        if isinstance(c, type) and issubclass(c, k8s.K8sObject) and c is not k8s.K8sObject
    ]
    assert len(classes) > 10
    for cls in classes:
        assert cls.k8s_definition.startswith("io.k8s.api."), cls.__name__
        assert cls.k8s_definition.endswith("." + cls.__name__), cls.__name__
