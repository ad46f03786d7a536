"""A ServiceAccount and its Secret, turned into the storage initializer's environment by
`wharf_api.credentials`, download from a real S3 server (moto): KServe's `s3-*` annotations
are honoured end to end."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from wharf_api.credentials import storage_credentials
from wharf_e2e.testing import free_port

KEY_ID = "AKIAWHARFCREDSTEST01"
SECRET = "creds-test-secret-Vb8nQ1"


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="eu-west-1",
    )
    bucket = f"creds-{uuid.uuid4().hex[:10]}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    client.put_object(Bucket=bucket, Key="model/model.joblib", Body=b"joblib" * 10)
    client.put_object(Bucket=bucket, Key="model/sub/vocab.txt", Body=b"a b")
    yield f"{host}:{port}", bucket
    server.stop()


def manifests(endpoint: str) -> tuple[dict[str, object], list[dict[str, object]]]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s3creds",
            "annotations": {
                "serving.kserve.io/s3-endpoint": endpoint,
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-region": "eu-west-1",
                "serving.kserve.io/s3-verifyssl": "0",
            },
        },
        "type": "Opaque",
        "data": {"AWS_ACCESS_KEY_ID": b64(KEY_ID), "AWS_SECRET_ACCESS_KEY": b64(SECRET)},
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "sa"},
        "secrets": [{"name": "s3creds"}],
    }
    return account, [secret]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    return subprocess.run(
        [sys.executable, "-m", "wharf_storage_initializer", *args],
        env={**base, "WHARF_STORAGE_ATTEMPTS": "2", **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_secret_derived_env_downloads_from_s3(moto: tuple[str, str], tmp_path: Path) -> None:
    endpoint, bucket = moto
    account, secrets = manifests(endpoint)
    creds = storage_credentials(
        f"s3://{bucket}/model", account, secrets, secrets_dir=str(tmp_path / "creds")
    )
    assert creds.env["AWS_ENDPOINT_URL"] == f"http://{endpoint}"
    proc = run(creds.env, f"s3://{bucket}/model", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "model.joblib").read_bytes() == b"joblib" * 10
    assert (tmp_path / "out" / "sub" / "vocab.txt").read_bytes() == b"a b"
    assert SECRET not in proc.stderr


def test_without_the_secret_the_same_download_is_refused(
    moto: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = moto
    account, secrets = manifests(endpoint)
    creds = storage_credentials(
        f"s3://{bucket}/model", account, secrets, secrets_dir=str(tmp_path / "creds")
    )
    env = {k: v for k, v in creds.env.items() if not k.startswith("AWS_")}
    env["AWS_ENDPOINT_URL"] = creds.env["AWS_ENDPOINT_URL"]
    env["awsAnonymousCredential"] = "true"
    proc = run(env, f"s3://{bucket}/model", str(tmp_path / "out"))
    assert proc.returncode == 5, proc.stderr  # AccessDenied
