"""The pure builders: credentials by reference, the storage container by URI, the autoscaler
choice, the route kind, and owner references."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from wharf_api import parse_object
from wharf_api.autoscaling import standard_autoscaler
from wharf_api.config import InferenceServiceConfig, from_configmap_data
from wharf_api.plan import StorageMount, plan_inference_service
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_controller.desired import Inputs, expected_children
from wharf_controller.desired.meta import owner_reference
from wharf_controller.desired.storage import SECRETS_DIR, credential_refs, pod_storage

sys.path.insert(0, str(Path(__file__).parent))
from controller_builders import isvc, secret

RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "sk"},
    "spec": {
        "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
        "containers": [
            {"name": "kserve-container", "image": "sk:1", "args": ["--model_dir=/mnt/models"]}
        ],
    },
}


def _runtime() -> Any:
    return parse_object(RUNTIME)


def _children(
    config: InferenceServiceConfig | None = None, **predictor: Any
) -> list[dict[str, Any]]:
    config = config or InferenceServiceConfig()
    service = isvc(**predictor)
    plan = plan_inference_service(service, [], [_runtime()], config=config)
    owner = owner_reference(
        {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
         "metadata": {"name": "iris", "uid": "u-1"}}
    )  # fmt: skip
    return expected_children(Inputs(isvc=service, plan=plan, config=config, owner=owner))


def test_s3_credentials_are_secret_references_never_values() -> None:
    account = {"metadata": {"name": "default"}, "secrets": [{"name": "s3"}]}
    s3 = secret(
        "s3",
        {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "very-secret"},
        {"serving.kserve.io/s3-endpoint": "minio:9000", "serving.kserve.io/s3-usehttps": "0"},
    )
    refs = credential_refs(
        "s3://b/m", account, [s3], annotations={}, config=InferenceServiceConfig()
    )
    env = {e["name"]: e for e in refs.env}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}},
    }
    assert env["S3_ENDPOINT"] == {"name": "S3_ENDPOINT", "value": "minio:9000"}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert "very-secret" not in repr(refs)


def test_a_gcs_credential_file_is_the_secret_mounted() -> None:
    account = {"metadata": {"name": "sa"}, "secrets": [{"name": "gcs"}]}
    gcs = secret("gcs", {"gcloud-application-credentials.json": "{}"})
    refs = credential_refs(
        "gs://b/m", account, [gcs], annotations={}, config=InferenceServiceConfig()
    )
    assert refs.volumes == (
        {"name": "storage-secret-gcs", "secret": {"secretName": "gcs", "defaultMode": 0o400}},
    )
    assert refs.mounts[0]["mountPath"] == f"{SECRETS_DIR}/gcs"
    env = {e["name"]: e.get("value") for e in refs.env}
    assert (
        env["GOOGLE_APPLICATION_CREDENTIALS"]
        == f"{SECRETS_DIR}/gcs/gcloud-application-credentials.json"
    )


def test_the_storage_container_is_chosen_by_uri() -> None:
    hf = ClusterStorageContainer.model_validate(
        {
            "metadata": {"name": "hf"},
            "spec": {
                "container": {"name": "x", "image": "hf-downloader:2"},
                "supportedUriFormats": [{"prefix": "hf://"}],
            },
        }
    )
    config = InferenceServiceConfig()
    hf_pod = pod_storage([StorageMount("hf://org/model")], config, [hf], None)
    s3_pod = pod_storage([StorageMount("s3://b/m")], config, [hf], None)
    assert hf_pod.init_containers[0]["image"] == "hf-downloader:2"
    assert s3_pod.init_containers[0]["image"] == config.storage_initializer.image


def test_the_autoscaler_follows_the_class_the_metrics_and_a_fixed_size() -> None:
    def kinds(**predictor: Any) -> set[str]:
        return {c["kind"] for c in _children(**predictor)}

    assert "HorizontalPodAutoscaler" in kinds(minReplicas=1, maxReplicas=3)
    assert "HorizontalPodAutoscaler" not in kinds(minReplicas=2, maxReplicas=2)
    fixed = next(c for c in _children(minReplicas=2, maxReplicas=2) if c["kind"] == "Deployment")
    assert fixed["spec"]["replicas"] == 2
    scaled = next(c for c in _children(minReplicas=1, maxReplicas=3) if c["kind"] == "Deployment")
    assert "replicas" not in scaled["spec"]  # the HPA owns the count
    hpa = next(
        c
        for c in _children(scaleMetric="memory", scaleTarget=70)
        if c["kind"] == "HorizontalPodAutoscaler"
    )
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}
    }  # fmt: skip
    assert (
        standard_autoscaler(
            plan_inference_service(isvc(), [], [_runtime()]).components[0].scaling,
            {"serving.kserve.io/autoscalerClass": "external"},
        )
        == "external"
    )


def test_every_child_is_owned_and_the_route_follows_the_config() -> None:
    children = _children()
    assert all(c["metadata"]["ownerReferences"][0]["uid"] == "u-1" for c in children)
    assert children[-1]["kind"] == "Ingress"
    assert children[-1]["spec"]["rules"][0]["host"] == "iris-team.example.com"
    gateway = from_configmap_data({"ingress": '{"enableGatewayApi": true}'})
    assert _children(gateway)[-1]["kind"] == "HTTPRoute"
    none = from_configmap_data({"ingress": '{"disableIngressCreation": true}'})
    assert {c["kind"] for c in _children(none)} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    }
