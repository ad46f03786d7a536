"""Errors that retrying cannot fix end the download at once, for the object stores too."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from wharf_storage import AccessDenied, Progress, SourceNotFound, TransferFailed, download
from wharf_storage.download import store_endpoint
from wharf_storage.uri import parse_uri


def needs_nxdomain(host: str) -> None:
    """Skip unless this machine's resolver answers "no such name" for `host` (RFC 6761's
    .invalid): without a name server the answer is "try again", which is retried instead."""
    try:
        socket.getaddrinfo(host, 80)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return
        pytest.skip(f"the resolver answers {exc.errno} for {host}, not 'no such name'")
    pytest.skip(f"{host} resolves on this machine")


def test_missing_bucket_is_not_retried(s3: Any, tmp_path: Path) -> None:
    events: list[Progress] = []
    env = {**s3.env, "WHARF_STORAGE_ATTEMPTS": "5"}
    with pytest.raises(SourceNotFound):
        download("s3://no-such-bucket-wharf/m", tmp_path / "out", env=env, progress=events.append)
    assert all(e.retry is None for e in events)


def test_refused_credentials_are_not_retried(s3: Any, tmp_path: Path) -> None:
    s3.put("m/a.bin", b"a")
    env = {"AWS_ENDPOINT_URL": s3.endpoint, "awsAnonymousCredential": "true"}
    events: list[Progress] = []
    with pytest.raises(AccessDenied):
        download(s3.uri("m"), tmp_path / "out", env=env, progress=events.append)
    assert all(e.retry is None for e in events)


def test_an_endpoint_that_does_not_resolve_fails_before_any_request(tmp_path: Path) -> None:
    needs_nxdomain("no-such-endpoint.invalid")
    env = {
        "AWS_ENDPOINT_URL": "http://no-such-endpoint.invalid:9000",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "S3_MAX_ATTEMPTS": "10",
    }
    with pytest.raises(TransferFailed, match="does not resolve"):
        download("s3://b/m", tmp_path / "out", env=env)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("uri", "env", "endpoint"),
    [
        ("s3://b/k", {}, ("s3.us-east-1.amazonaws.com", 443)),
        ("s3://b/k", {"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}, ("minio", 9000)),
        ("s3://b/k", {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, ("127.0.0.1", 5000)),
        ("gs://b/k", {}, ("storage.googleapis.com", 443)),
        ("gs://b/k", {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443"}, ("127.0.0.1", 4443)),
        ("https://acct.blob.core.windows.net/c/m", {}, ("acct.blob.core.windows.net", 443)),
        (
            "https://acct.blob.core.windows.net/c/m",
            {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;BlobEndpoint=http://h:10000/a"},
            ("h", 10000),
        ),
        ("http://example.com:8081/m.bin", {}, ("example.com", 8081)),
        ("hf://org/model", {}, ("huggingface.co", 443)),
        ("hf://org/model", {"HF_HUB_OFFLINE": "1"}, None),
        ("oci://registry.example.com/org/model:v1", {}, ("registry.example.com", 443)),
        ("file:///models/m", {}, None),
    ],
)
def test_store_endpoint(uri: str, env: dict[str, str], endpoint: tuple[str, int] | None) -> None:
    assert store_endpoint(parse_uri(uri), env) == endpoint
