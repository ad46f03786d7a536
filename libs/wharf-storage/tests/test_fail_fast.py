"""Errors that retrying cannot fix end the download at once, for the object stores too."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from wharf_storage import AccessDenied, Progress, SourceNotFound, TransferFailed, download
from wharf_storage.download import store_endpoint
from wharf_storage.network import behind_proxy
from wharf_storage.uri import parse_uri


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        ("s3://b/k", {}, ("s3.us-east-1.amazonaws.com", 443, "https")),
        ("s3://b/k", {"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}, ("minio", 9000, "http")),
        ("s3://b/k", {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, ("127.0.0.1", 5000, "http")),
        ("gs://b/k", {}, ("storage.googleapis.com", 443, "https")),
        (
            "gs://b/k",
            {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443"},
            ("127.0.0.1", 4443, "http"),
        ),
        (
            "https://acct.blob.core.windows.net/c/m",
            {},
            ("acct.blob.core.windows.net", 443, "https"),
        ),
        (
            "https://acct.blob.core.windows.net/c/m",
            {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;BlobEndpoint=http://h:10000/a"},
            ("h", 10000, "http"),
        ),
        ("http://example.com:8081/m.bin", {}, ("example.com", 8081, "http")),
        ("hf://org/model", {}, ("huggingface.co", 443, "https")),
        ("hf://org/model", {"HF_HUB_OFFLINE": "1"}, None),
        ("oci://registry.example.com/org/model:v1", {}, ("registry.example.com", 443, "https")),
        ("file:///models/m", {}, None),
    ],
)
def test_store_endpoint(
    uri: str, env: dict[str, str], endpoint: tuple[str, int, str] | None
) -> None:
    assert store_endpoint(parse_uri(uri), env) == endpoint


@pytest.mark.parametrize(
    ("env", "host", "scheme", "proxied"),
    [
        ({}, "example.com", "https", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "example.com", "https", True),
        ({"https_proxy": "http://proxy:3128"}, "example.com", "http", False),
        ({"ALL_PROXY": "http://proxy:3128"}, "example.com", "http", True),
        (
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "example.com"},
            "example.com",
            "https",
            False,
        ),
        ({"HTTPS_PROXY": "http://p:3128", "no_proxy": ".corp"}, "s3.corp", "https", False),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "a.com,*"}, "b.com", "https", False),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "reg:5000"}, "reg", "https", False),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "other.com"}, "s3.com", "https", True),
    ],
)
def test_no_dns_check_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], host: str, scheme: str, proxied: bool
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    assert behind_proxy(host, scheme, env) is proxied


def test_a_proxied_download_does_not_look_the_host_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The proxy (a closed port on loopback) is the only thing the client talks to: the
    # unresolvable name must not fail the download early; the refused proxy fails it later.
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TransferFailed) as info:
        download(
            "http://no-such-host.invalid/m.bin",
            tmp_path / "out",
            env={"WHARF_STORAGE_ATTEMPTS": "1"},
        )
    assert "does not resolve" not in info.value.reason
