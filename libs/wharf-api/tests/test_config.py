"""The `inferenceservice-config` ConfigMap as a model: KServe's defaults, parsing, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wharf_api.config import (
    ConfigError,
    InferenceServiceConfig,
    from_configmap_data,
    from_file,
    to_configmap_data,
)


def test_defaults_are_kserves() -> None:
    cfg = InferenceServiceConfig()
    assert cfg.ingress.ingress_domain == "example.com"
    assert cfg.ingress.domain_template == "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}"
    assert cfg.ingress.url_scheme == "http"
    assert cfg.deploy.default_deployment_mode == "Knative"
    assert cfg.credentials.storage_spec_secret_name == "storage-config"
    assert cfg.credentials.s3.s3_access_key_id_name == "AWS_ACCESS_KEY_ID"
    assert cfg.credentials.gcs.gcs_credential_file_name == "gcloud-application-credentials.json"
    assert cfg.batcher.max_batch_size == "32"
    assert cfg.router.headers.propagate == []
    assert cfg.local_model.enabled is False
    assert cfg.scale_target("concurrency") == 100
    assert cfg.scale_target("rps") == 200


def test_configmap_data_is_json_per_key_and_unknown_keys_are_kept() -> None:
    data = {
        "ingress": json.dumps({"ingressDomain": "corp.dev", "urlScheme": "https", "newKey": 1}),
        "deploy": json.dumps({"defaultDeploymentMode": "Standard"}),
        "credentials": json.dumps({"s3": {"s3Endpoint": "minio:9000", "s3VerifySSL": "0"}}),
        "router": json.dumps({"headers": {"propagate": ["Authorization", "X-.*"]}}),
        "_example": "ignored",
        "somethingNew": json.dumps({"x": True}),
    }
    cfg = from_configmap_data(data)
    assert cfg.ingress.ingress_domain == "corp.dev"
    assert cfg.ingress.url_scheme == "https"
    assert cfg.deploy.default_deployment_mode == "Standard"
    assert cfg.credentials.s3.s3_endpoint == "minio:9000"
    assert cfg.credentials.s3.s3_verify_ssl == "0"
    assert cfg.router.headers.propagate == ["Authorization", "X-.*"]
    dumped = to_configmap_data(cfg)
    assert json.loads(dumped["ingress"])["newKey"] == 1
    assert json.loads(dumped["somethingNew"]) == {"x": True}
    assert from_configmap_data(dumped) == cfg


def test_bad_json_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.ingress: not JSON"):
        from_configmap_data({"ingress": "{nope"})


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"localModel\.enabled"):
        from_configmap_data({"localModel": json.dumps({"enabled": "maybe"})})


def test_file_may_be_the_configmap_or_plain_keys(tmp_path: Path) -> None:
    cm = tmp_path / "cm.yaml"
    cm.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inferenceservice-config}\n"
        'data:\n  ingress: \'{"ingressDomain": "a.dev"}\'\n'
    )
    assert from_file(cm).ingress.ingress_domain == "a.dev"
    plain = tmp_path / "plain.yaml"
    plain.write_text("ingress:\n  ingressDomain: b.dev\n")
    assert from_file(plain).ingress.ingress_domain == "b.dev"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert from_file(empty) == InferenceServiceConfig()


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        from_file(bad)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        from_file(tmp_path / "missing.yaml")
