"""Storage credentials by reference: which Secrets to read, and the variables and files that a
cluster pod takes from them without their values in its spec."""

from __future__ import annotations

import base64
import json
from typing import Any

from wharf_api.credential_refs import (
    EnvReference,
    SecretKeyRef,
    SecretMount,
    credential_references,
    secrets_to_read,
)
from wharf_api.credentials import CredentialSettings, storage_credentials

DIR = "/var/run/secrets/wharf-storage"
SETTINGS = CredentialSettings()
ANNOTATION = SETTINGS.storage_secret_name_annotation


def secret(name: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, **meta},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def account(secrets: list[str], pulls: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": "sa"},
        "secrets": [{"name": n} for n in secrets],
        "imagePullSecrets": [{"name": n} for n in pulls],
    }


def refs(uri: str, sa: dict[str, Any], secrets: list[dict[str, Any]]) -> Any:
    found = storage_credentials(uri, sa, secrets, secrets_dir=DIR, settings=SETTINGS)
    return credential_references(found, secrets, secrets_dir=DIR)


def test_the_service_accounts_secrets_and_the_annotated_one_are_read() -> None:
    sa = account(["b", "a"], pulls=("pull",))
    assert secrets_to_read("s3://b/m", sa, None, SETTINGS) == ("a", "b")
    assert secrets_to_read("s3://b/m", sa, {ANNOTATION: "mine"}, SETTINGS) == ("a", "b", "mine")
    assert secrets_to_read("gs://b/m", None, {ANNOTATION: "mine"}, SETTINGS) == ("mine",)


def test_registry_logins_are_read_for_oci_only() -> None:
    sa = account(["a"], pulls=("pull",))
    assert secrets_to_read("OCI://reg/m:1", sa, None, SETTINGS) == ("a", "pull")
    assert "pull" not in secrets_to_read("hf://org/m", sa, None, SETTINGS)


def test_secret_values_become_key_references_and_the_rest_stay_literal() -> None:
    s3 = secret(
        "s3",
        {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "very-secret"},
        annotations={"serving.kserve.io/s3-endpoint": "minio:9000"},
    )
    out = refs("s3://b/m", account(["s3"]), [s3])
    env = {e.name: e for e in out.env}
    assert env["AWS_SECRET_ACCESS_KEY"] == EnvReference(
        "AWS_SECRET_ACCESS_KEY", secret_ref=SecretKeyRef("s3", "AWS_SECRET_ACCESS_KEY")
    )
    assert env["AWS_ACCESS_KEY_ID"].secret_ref == SecretKeyRef("s3", "AWS_ACCESS_KEY_ID")
    assert env["S3_ENDPOINT"] == EnvReference("S3_ENDPOINT", value="minio:9000")
    assert [e.name for e in out.env] == sorted(env)
    assert "very-secret" not in repr(out)


def test_a_credential_file_is_its_secret_mounted_where_the_variable_points() -> None:
    gcs = secret("gcs", {"gcloud-application-credentials.json": "{}"})
    out = refs("gs://b/m", account(["gcs"]), [gcs])
    assert out.mounts == (SecretMount("gcs", "storage-secret-gcs", f"{DIR}/gcs"),)
    env = {e.name: e.value for e in out.env}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == (
        f"{DIR}/gcs/gcloud-application-credentials.json"
    )


def test_a_merged_registry_file_is_not_mounted_and_says_so() -> None:
    login = json.dumps({"auths": {"reg.example": {"auth": "dTpw"}}})
    pull = secret("pull", {".dockerconfigjson": login})
    pull["type"] = "kubernetes.io/dockerconfigjson"
    out = refs("oci://reg.example/m:1", account([], pulls=("pull",)), [pull])
    assert out.mounts == ()
    assert any("merged credential files are not mounted" in n for n in out.notes)


def test_a_long_secret_name_gives_a_volume_name_of_63_characters() -> None:
    name = "g" * 80
    gcs = secret(name, {"gcloud-application-credentials.json": "{}"})
    (mount,) = refs("gs://b/m", account([name]), [gcs]).mounts
    assert len(mount.volume) == 63 and mount.mount_path == f"{DIR}/{name}"
