"""parse_uri and redaction: pure, no I/O."""

from __future__ import annotations

import pytest

from wharf_storage import UnsupportedUri, parse_uri, redact_uri
from wharf_storage.envs import s3_endpoint
from wharf_storage.redaction import scrub, secret_values


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/a/b", {"scheme": "s3", "bucket": "bucket", "key": "a/b"}),
        ("s3://bucket", {"scheme": "s3", "bucket": "bucket", "key": ""}),
        ("gs://b/models/m/", {"scheme": "gs", "bucket": "b", "key": "models/m/"}),
        ("pvc://claim/sub/dir", {"scheme": "pvc", "bucket": "claim", "key": "sub/dir"}),
        ("file:///mnt/models", {"scheme": "file", "key": "/mnt/models"}),
        ("/mnt/models", {"scheme": "file", "key": "/mnt/models"}),
        ("relative/dir", {"scheme": "file", "key": "relative/dir"}),
        ("hf://org/model", {"scheme": "hf", "repo": "org/model", "revision": None}),
        ("hf://org/model:v1.0", {"scheme": "hf", "repo": "org/model", "revision": "v1.0"}),
        (
            "https://acct.blob.core.windows.net/cont/path/to?sv=1&sig=x",
            {"scheme": "azure", "account": "acct", "container": "cont", "key": "path/to"},
        ),
        (
            "https://acct.z12.blob.storage.azure.net/cont/p",
            {"scheme": "azure", "account": "acct", "container": "cont", "key": "p"},
        ),
        ("https://host:8443/m.tgz", {"scheme": "https", "host": "host:8443", "key": "/m.tgz"}),
        ("http://h/m.zip", {"scheme": "http", "host": "h", "key": "/m.zip"}),
        (
            "oci://reg.io/org/model:1",
            {"scheme": "oci", "host": "reg.io", "repo": "org/model", "revision": "1"},
        ),
        (
            "oci://127.0.0.1:5000/org/model",
            {"host": "127.0.0.1:5000", "repo": "org/model", "revision": "latest"},
        ),
        (
            "oci://localhost:5000/m:v1.2@sha256:" + "a" * 64,
            {"host": "localhost:5000", "repo": "m", "revision": "sha256:" + "a" * 64},
        ),
        ("oci://localhost:5000/a/b@sha256:" + "b" * 64, {"repo": "a/b"}),
    ],
)
def test_parse(uri: str, expected: dict[str, object]) -> None:
    parsed = parse_uri(uri)
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


def test_sas_is_kept_for_use_but_hidden_from_repr() -> None:
    parsed = parse_uri("https://acct.blob.core.windows.net/c/p?sv=1&sig=SECRET")
    assert parsed.query == "sv=1&sig=SECRET"
    assert "SECRET" not in repr(parsed)
    assert "SECRET" not in parsed.redacted


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "s3://",
        "s3:///key",
        "gs://",
        "hf://onlyname",
        "hdfs://nn/models",
        "webhdfs://nn/models",
        "ftp://host/file",
        "https://acct.file.core.windows.net/share/dir",
        "https://acct.blob.core.windows.net/",
        "oci://reg.io",
        "oci://reg.io/Upper/case",
        "oci://reg.io/m:bad/tag",
        "oci://reg.io/m@sha256:short",
        "oci://reg.io/../m",
    ],
)
def test_unsupported(uri: str) -> None:
    with pytest.raises(UnsupportedUri):
        parse_uri(uri)


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [(".zip", "zip"), (".tar", "tar"), (".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".bin", None)],
)
def test_archive_kind(suffix: str, kind: str | None) -> None:
    assert parse_uri(f"https://h/model{suffix}").archive_kind == kind


def test_redact_uri() -> None:
    assert redact_uri("https://u:p@h/x?sig=1") == "https://<redacted>@h/x?<redacted>"
    assert redact_uri("s3://b/k") == "s3://b/k"


def test_scrub_hides_known_secret_values_and_credential_pairs() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "abcd1234secret", "PATH": "/usr/bin", "HF_TOKEN": "hf_x1y2"}
    secrets = secret_values(env)
    assert "/usr/bin" not in secrets
    text = scrub("key abcd1234secret token hf_x1y2 AccountKey=zz;x http://h/p?sig=1", secrets)
    assert "abcd1234secret" not in text and "hf_x1y2" not in text
    assert "zz" not in text and "sig=1" not in text


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({}, None),
        ({"AWS_ENDPOINT_URL": "http://a:1"}, "http://a:1"),
        ({"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}, "http://minio:9000"),
        ({"S3_ENDPOINT": "minio:9000"}, "https://minio:9000"),
        ({"S3_ENDPOINT": "http://m:9000", "S3_USE_HTTPS": "1"}, "http://m:9000"),
        ({"AWS_ENDPOINT_URL": "http://a:1", "S3_ENDPOINT": "b:2"}, "http://a:1"),
    ],
)
def test_s3_endpoint_from_env(env: dict[str, str], endpoint: str | None) -> None:
    assert s3_endpoint(env) == endpoint
