"""Storage credentials from ServiceAccounts and Secrets, as KServe's credential builder gives
them to the storage initializer (table tests of pure functions)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wharf_api.credentials import (
    CredentialsError,
    CredentialSettings,
    S3Settings,
    SecretFile,
    parse_secret,
    storage_credentials,
)

DIR = "/run/wharf/creds"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(
    name: str,
    data: dict[str, str] | None = None,
    *,
    string_data: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    type_: str | None = None,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    if annotations:
        manifest["metadata"]["annotations"] = annotations
    if data is not None:
        manifest["data"] = {k: b64(v) for k, v in data.items()}
    if string_data is not None:
        manifest["stringData"] = string_data
    if type_:
        manifest["type"] = type_
    return manifest


def sa(
    *secrets: str, pull: tuple[str, ...] = (), annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "sa", "annotations": annotations or {}},
        "secrets": [{"name": s} for s in secrets],
    }
    if pull:
        manifest["imagePullSecrets"] = [{"name": p} for p in pull]
    return manifest


S3_KEYS = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "shh"}
A = "serving.kserve.io/"
DOCKER = json.dumps({"auths": {"reg.example:5000": {"auth": b64("u:p")}}})

CASES: list[tuple[str, str, list[dict[str, Any]], dict[str, str]]] = [
    ("s3 keys only", "s3://b/m", [secret("s", S3_KEYS)], S3_KEYS),
    (
        "s3 with every annotation",
        "s3://b/m",
        [
            secret(
                "s",
                S3_KEYS,
                annotations={
                    A + "s3-endpoint": "minio.local:9000",
                    A + "s3-usehttps": "0",
                    A + "s3-region": "eu-west-1",
                    A + "s3-verifyssl": "0",
                    A + "s3-useanoncredential": "false",
                    A + "s3-usevirtualbucket": "true",
                    A + "s3-cabundle": "/etc/ca.pem",
                },
            )
        ],
        {
            **S3_KEYS,
            "S3_ENDPOINT": "minio.local:9000",
            "S3_USE_HTTPS": "0",
            "AWS_ENDPOINT_URL": "http://minio.local:9000",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "S3_VERIFY_SSL": "0",
            "awsAnonymousCredential": "false",
            "S3_USER_VIRTUAL_BUCKET": "true",
            "AWS_CA_BUNDLE": "/etc/ca.pem",
        },
    ),
    (
        "s3 endpoint defaults to https",
        "s3://b/m",
        [secret("s", S3_KEYS, annotations={A + "s3-endpoint": "s3.example.com"})],
        {**S3_KEYS, "S3_ENDPOINT": "s3.example.com", "AWS_ENDPOINT_URL": "https://s3.example.com"},
    ),
    (
        "s3 with KServe's code-default key names",
        "s3://b/m",
        [secret("s", {"awsAccessKeyID": "AKIA2", "awsSecretAccessKey": "x"})],
        {"AWS_ACCESS_KEY_ID": "AKIA2", "AWS_SECRET_ACCESS_KEY": "x"},
    ),
    (
        "s3 from stringData",
        "s3://b/m",
        [secret("s", string_data=S3_KEYS)],
        S3_KEYS,
    ),
    (
        "azure service principal, legacy keys renamed",
        "https://a.blob.core.windows.net/c/m",
        [
            secret(
                "az",
                {
                    "AZ_CLIENT_ID": "cid",
                    "AZ_CLIENT_SECRET": "cs",
                    "AZ_TENANT_ID": "t",
                    "AZURE_SUBSCRIPTION_ID": "sub",
                },
            )
        ],
        {
            "AZURE_CLIENT_ID": "cid",
            "AZURE_CLIENT_SECRET": "cs",
            "AZURE_TENANT_ID": "t",
            "AZURE_SUBSCRIPTION_ID": "sub",
        },
    ),
    (
        "azure account key",
        "https://a.blob.core.windows.net/c/m",
        [secret("az", {"AZURE_STORAGE_ACCESS_KEY": "key=="})],
        {"AZURE_STORAGE_ACCESS_KEY": "key=="},
    ),
    (
        "http headers",
        "https://models.example.com/m.tgz",
        [secret("h", {"https-host": "models.example.com", "headers": '{"X-Key": "v"}'})],
        {"models.example.com-headers": '{"X-Key": "v"}'},
    ),
    (
        "hugging face token",
        "hf://org/m",
        [secret("hf", {"HF_TOKEN": "hf_x"})],
        {"HF_TOKEN": "hf_x"},
    ),
    ("unrelated secret", "s3://b/m", [secret("x", {"password": "p"})], {}),
    (
        "registry credentials are ignored for s3",
        "s3://b/m",
        [secret("d", {".dockerconfigjson": DOCKER}, type_="kubernetes.io/dockerconfigjson")],
        {},
    ),
]


@pytest.mark.parametrize(("case", "uri", "secrets", "env"), CASES, ids=[c[0] for c in CASES])
def test_env_from_service_account_secrets(
    case: str, uri: str, secrets: list[dict[str, Any]], env: dict[str, str]
) -> None:
    names = [s["metadata"]["name"] for s in secrets]
    result = storage_credentials(uri, sa(*names), secrets, secrets_dir=DIR)
    assert result.env == env
    assert result.files == ()


def test_gcs_key_file_is_a_file_named_by_the_variable() -> None:
    key = '{"type": "service_account"}'
    result = storage_credentials(
        "gs://b/m",
        sa("g"),
        [secret("g", {"gcloud-application-credentials.json": key})],
        secrets_dir=DIR,
    )
    path = f"{DIR}/g/gcloud-application-credentials.json"
    assert result.env == {"GOOGLE_APPLICATION_CREDENTIALS": path}
    assert result.files == (SecretFile(path, key.encode(), 0o600),)
    assert result.secrets_used == ("g",)


def test_oci_registry_credentials_merge_into_one_docker_config() -> None:
    other = json.dumps(
        {
            "auths": {
                "ghcr.io": {"auth": b64("a:b")},
                "reg.example:5000": {"auth": b64("late:x")},
            }
        }
    )
    secrets = [
        secret("pull", {".dockerconfigjson": DOCKER}, type_="kubernetes.io/dockerconfigjson"),
        secret("sa-pull", {".dockerconfigjson": other}, type_="kubernetes.io/dockerconfigjson"),
    ]
    result = storage_credentials(
        "oci://reg.example:5000/org/model:v1",
        sa(pull=("sa-pull",)),
        secrets,
        secrets_dir=DIR,
        image_pull_secrets=["pull"],
    )
    path = f"{DIR}/oci/config.json"
    assert result.env == {"KSERVE_OCI_DOCKER_CONFIG": path}
    (file,) = result.files
    assert file.path == path
    assert json.loads(file.content)["auths"] == {
        "reg.example:5000": {"auth": b64("u:p")},
        "ghcr.io": {"auth": b64("a:b")},
    }
    assert result.secrets_used == ("pull", "sa-pull")
    assert any("reg.example:5000" in n for n in result.notes)


def test_storage_secret_name_annotation_replaces_the_service_account_list() -> None:
    secrets = [secret("first", S3_KEYS), secret("chosen", {"HF_TOKEN": "t"})]
    result = storage_credentials(
        "hf://o/m",
        sa("first"),
        secrets,
        secrets_dir=DIR,
        annotations={"serving.kserve.io/storageSecretName": "chosen"},
    )
    assert result.env == {"HF_TOKEN": "t"}
    assert result.secrets_used == ("chosen",)


def test_later_secrets_win_and_skipped_ones_are_noted() -> None:
    secrets = [
        secret("one", S3_KEYS),
        secret("two", {"AWS_ACCESS_KEY_ID": "AKIA9", "AWS_SECRET_ACCESS_KEY": "y"}),
        secret("three", {"HDFS_NAMENODE": "nn"}),
    ]
    result = storage_credentials("s3://b/m", sa("one", "two", "three"), secrets, secrets_dir=DIR)
    assert result.env == {"AWS_ACCESS_KEY_ID": "AKIA9", "AWS_SECRET_ACCESS_KEY": "y"}
    assert result.secrets_used == ("one", "two")
    assert result.notes == ("Secret three: hdfs:// is not supported by Wharf: skipped",)


def test_irsa_service_account_gives_its_s3_annotations() -> None:
    account = sa(
        annotations={
            "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r",
            A + "s3-region": "us-west-2",
            A + "s3-endpoint": "s3.us-west-2.amazonaws.com",
        }
    )
    result = storage_credentials("s3://b/m", account, [], secrets_dir=DIR)
    assert result.env == {
        "AWS_DEFAULT_REGION": "us-west-2",
        "S3_ENDPOINT": "s3.us-west-2.amazonaws.com",
        "AWS_ENDPOINT_URL": "https://s3.us-west-2.amazonaws.com",
    }


def test_config_defaults_apply_when_annotations_are_absent() -> None:
    settings = CredentialSettings.from_config(
        {
            "s3": {
                "s3AccessKeyIDName": "id",
                "s3SecretAccessKeyName": "key",
                "s3Endpoint": "ceph:7480",
                "s3UseHttps": "0",
                "s3Region": "r1",
            },
            "gcs": {"gcsCredentialFileName": "sa.json"},
        }
    )
    assert settings.s3 == S3Settings("id", "key", "ceph:7480", "0", "r1")
    result = storage_credentials(
        "s3://b/m",
        sa("s"),
        [secret("s", {"id": "AKIA3", "key": "z"}, annotations={A + "s3-region": "r2"})],
        secrets_dir=DIR,
        settings=settings,
    )
    assert result.env == {
        "AWS_ACCESS_KEY_ID": "AKIA3",
        "AWS_SECRET_ACCESS_KEY": "z",
        "S3_USE_HTTPS": "0",
        "S3_ENDPOINT": "ceph:7480",
        "AWS_ENDPOINT_URL": "http://ceph:7480",
        "AWS_DEFAULT_REGION": "r2",
    }


def test_no_service_account_gives_nothing() -> None:
    result = storage_credentials("s3://b/m", None, [secret("s", S3_KEYS)], secrets_dir=DIR)
    assert result.env == {} and result.files == ()


@pytest.mark.parametrize(
    ("account", "secrets", "kwargs", "message"),
    [
        (sa("absent"), [], {}, "ServiceAccount sa: secrets names Secret absent, which was not"),
        (sa("s"), [{"metadata": {"name": "s"}, "data": {"k": "%%%"}}], {}, "data.k is not valid"),
        (sa("s"), [{"metadata": {}}], {}, "metadata.name is required"),
        ({"metadata": {"name": "sa"}, "secrets": [{}]}, [], {}, "secrets[0].name is required"),
        (None, [], {"secrets_dir": "relative"}, "must be an absolute path"),
        (
            sa(pull=("d",)),
            [secret("d", {"x": "y"}, type_="kubernetes.io/dockerconfigjson")],
            {"uri": "oci://r/m"},
            "needs data..dockerconfigjson",
        ),
        (
            sa(pull=("d",)),
            [secret("d", {".dockerconfigjson": "{"}, type_="kubernetes.io/dockerconfigjson")],
            {"uri": "oci://r/m"},
            "is not JSON",
        ),
    ],
)
def test_errors_name_the_object_and_field(
    account: dict[str, Any] | None,
    secrets: list[dict[str, Any]],
    kwargs: dict[str, str],
    message: str,
) -> None:
    with pytest.raises(CredentialsError, match=message.replace("[", r"\[").replace(".", r"\.")):
        storage_credentials(
            kwargs.get("uri", "s3://b/m"),
            account,
            secrets,
            secrets_dir=kwargs.get("secrets_dir", DIR),
        )


def test_parse_secret_prefers_string_data() -> None:
    parsed = parse_secret(
        {"metadata": {"name": "s"}, "data": {"k": b64("old")}, "stringData": {"k": "new"}}
    )
    assert parsed.data == {"k": b"new"} and parsed.type == "Opaque"
