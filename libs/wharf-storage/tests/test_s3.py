"""s3:// against moto's S3 server on loopback."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from wharf_storage import (
    AccessDenied,
    ChecksumMismatch,
    Progress,
    SourceNotFound,
    TransferFailed,
    UnsafePath,
    download,
)
from wharf_storage.backends.s3 import S3Source
from wharf_storage.objects import RemoteObject, download_objects
from wharf_storage.uri import parse_uri

MiB = 1024 * 1024


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_folder_is_downloaded_with_its_layout(s3: Any, tmp_path: Path) -> None:
    s3.put("model/config.json", b"{}")
    s3.put("model/weights/part-0.bin", b"w" * 1000)
    dest = tmp_path / "out"
    result = download(s3.uri("model"), dest, env=s3.env)
    assert tree(dest) == {"config.json": b"{}", "weights/part-0.bin": b"w" * 1000}
    assert (result.files, result.bytes, result.fetched_bytes) == (2, 1002, 1002)
    assert result.path == dest


def test_prefix_is_a_folder_boundary_not_a_string_prefix(s3: Any, tmp_path: Path) -> None:
    # KServe #3776: s3://b/model also pulled model-hf/...
    s3.put("model/a.txt", b"a")
    s3.put("model-hf/b.txt", b"b")
    s3.put("model.bak", b"c")
    download(s3.uri("model"), tmp_path / "out", env=s3.env)
    assert tree(tmp_path / "out") == {"a.txt": b"a"}


def test_a_key_naming_one_object_downloads_that_file(s3: Any, tmp_path: Path) -> None:
    s3.put("models/model.joblib", b"joblib")
    s3.put("models/model.joblib.sig", b"sig")
    download(s3.uri("models/model.joblib"), tmp_path / "out", env=s3.env)
    assert tree(tmp_path / "out") == {"model.joblib": b"joblib"}


def test_trailing_slash_and_whole_bucket(s3: Any, tmp_path: Path) -> None:
    s3.put("m/x", b"x")
    s3.put("top", b"t")
    download(s3.uri("m/"), tmp_path / "a", env=s3.env)
    download(s3.uri(""), tmp_path / "b", env=s3.env)
    assert tree(tmp_path / "a") == {"x": b"x"}
    assert tree(tmp_path / "b") == {"m/x": b"x", "top": b"t"}


def test_large_object_is_fetched_in_ranged_parts_and_verified(s3: Any, tmp_path: Path) -> None:
    data = os.urandom(20 * MiB + 123)
    s3.put("big/weights.bin", data)
    result = download(s3.uri("big"), tmp_path / "out", env=s3.env)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == data
    assert result.fetched_bytes == len(data)


def test_second_call_on_complete_destination_is_a_no_op(s3: Any, tmp_path: Path) -> None:
    s3.put("m/a", b"a" * 10)
    first = download(s3.uri("m"), tmp_path / "out", env=s3.env)
    s3.client.delete_object(Bucket=s3.name, Key="m/a")  # the store is not asked again
    second = download(s3.uri("m"), tmp_path / "out", env=s3.env)
    assert first.fetched_bytes == 10
    assert (second.files, second.bytes, second.fetched_bytes) == (1, 10, 0)


def test_destination_appears_only_when_complete_and_interruption_resumes(
    s3: Any, tmp_path: Path
) -> None:
    sizes = {f"m/file-{i}.bin": (i + 1) * 100_000 for i in range(6)}
    for key, size in sizes.items():
        s3.put(key, os.urandom(size))
    dest = tmp_path / "out"

    class Interrupt(Exception):
        pass

    def stop_after_two_files(p: Progress) -> None:
        if p.files_done >= 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        download(s3.uri("m"), dest, env=s3.env, progress=stop_after_two_files, workers=1)
    assert not dest.exists()
    partial = tmp_path / ".out.wharf-partial"
    kept = {p.name: p.stat().st_size for p in partial.iterdir() if p.suffix == ".bin"}
    assert len(kept) >= 2
    result = download(s3.uri("m"), dest, env=s3.env)
    total = sum(sizes.values())
    assert result.fetched_bytes == total - sum(kept.values())
    assert result.bytes == total and result.files == 6
    assert not partial.exists()
    assert {f"m/{n}": len(b) for n, b in tree(dest).items()} == sizes


def test_existing_empty_folder_is_filled_in_place(s3: Any, tmp_path: Path) -> None:
    # /mnt/models is an emptyDir mount point: it cannot be renamed over.
    s3.put("m/a", b"a")
    dest = tmp_path / "mnt-models"
    dest.mkdir()
    download(s3.uri("m"), dest, env=s3.env)
    assert tree(dest) == {"a": b"a"}
    assert sorted(os.listdir(dest)) == ["a"]


def test_dotdot_key_is_refused_and_nothing_is_written(s3: Any, tmp_path: Path) -> None:
    s3.put("m/good.bin", b"good")
    s3.put("m/../../escaped.txt", b"evil")
    dest = tmp_path / "a" / "out"
    with pytest.raises(UnsafePath, match=r"\.\."):
        download(s3.uri("m"), dest, env=s3.env)
    assert not dest.exists()
    assert list((tmp_path / "a").iterdir()) == []
    assert not list(tmp_path.rglob("escaped.txt"))


def test_absolute_key_is_refused(s3: Any, tmp_path: Path) -> None:
    s3.put("m//etc/passwd-copy", b"evil")
    with pytest.raises(UnsafePath, match="absolute"):
        download(s3.uri("m"), tmp_path / "out", env=s3.env)
    assert not (tmp_path / "out").exists()


def test_checksum_mismatch_is_detected(s3: Any, tmp_path: Path) -> None:
    # The object changes between listing and fetching: the listed ETag (MD5) no longer matches.
    s3.put("m/a.bin", b"A" * 100)
    source = S3Source(parse_uri(s3.uri("m")), s3.env, workers=2)
    listed = source.list_objects()
    s3.put("m/a.bin", b"B" * 100)

    class Stale:
        what = source.what

        def list_objects(self) -> list[RemoteObject]:
            return listed

        def __getattr__(self, name: str) -> object:
            return getattr(source, name)

    with pytest.raises(ChecksumMismatch, match="MD5"):
        download_objects(Stale(), tmp_path, workers=2, attempts=1, progress=None)  # type: ignore[arg-type]
    assert not (tmp_path / "a.bin").exists()


def test_missing_bucket_and_empty_prefix(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        download("s3://no-such-bucket-wharf/m", tmp_path / "a", env=s3.env)
    with pytest.raises(SourceNotFound, match="no objects"):
        download(s3.uri("nothing-here"), tmp_path / "b", env=s3.env)
    assert not (tmp_path / "a").exists() and not (tmp_path / ".a.wharf-partial").exists()


def test_legacy_s3_endpoint_pair(s3: Any, tmp_path: Path) -> None:
    s3.put("m/a", b"a")
    env = {k: v for k, v in s3.env.items() if k != "AWS_ENDPOINT_URL"}
    env["S3_ENDPOINT"] = s3.endpoint.removeprefix("http://")
    env["S3_USE_HTTPS"] = "0"
    download(s3.uri("m"), tmp_path / "out", env=env)
    assert tree(tmp_path / "out") == {"a": b"a"}


def test_anonymous_access(s3: Any, tmp_path: Path) -> None:
    s3.put("m/a", b"a")
    s3.client.put_object_acl(Bucket=s3.name, Key="m/a", ACL="public-read")
    env = {"AWS_ENDPOINT_URL": s3.endpoint, "awsAnonymousCredential": "true"}
    download(s3.uri("m"), tmp_path / "out", env=env)
    assert tree(tmp_path / "out") == {"a": b"a"}


def test_no_credentials_is_access_denied(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    # boto3's chain would otherwise ask the instance metadata address, which is off loopback.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(AccessDenied, match="no AWS credentials"):
        download(s3.uri("m"), tmp_path / "out", env={"AWS_ENDPOINT_URL": s3.endpoint})


def test_secret_key_never_reaches_logs_or_errors(
    s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s3.put("m/a", b"a")
    download(s3.uri("m"), tmp_path / "out", env=s3.env)
    with pytest.raises(SourceNotFound) as info:
        download(s3.uri("missing"), tmp_path / "out2", env=s3.env)
    secret = s3.env["AWS_SECRET_ACCESS_KEY"]
    assert secret not in caplog.text
    assert secret not in str(info.value)
    assert caplog.records, "the download logs its progress"


class _Flaky:
    """The real S3 source whose first `failures` fetches drop the connection mid-object."""

    def __init__(self, source: S3Source, failures: int) -> None:
        self.source = source
        self.what = source.what
        self.failures = failures
        self.calls = 0

    def fetch(self, obj: RemoteObject, path: Path, on_bytes: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            on_bytes(obj.size // 2)
            raise ConnectionResetError("connection reset by peer")
        self.source.fetch(obj, path, on_bytes)

    def __getattr__(self, name: str) -> object:
        return getattr(self.source, name)


def test_transient_failures_are_retried(s3: Any, tmp_path: Path) -> None:
    s3.put("m/a.bin", b"a" * 1000)
    flaky = _Flaky(S3Source(parse_uri(s3.uri("m")), s3.env, workers=1), failures=2)
    seen: list[Progress] = []
    tally = download_objects(flaky, tmp_path, workers=1, attempts=3, progress=seen.append)  # type: ignore[arg-type]
    assert flaky.calls == 3
    assert (tmp_path / "a.bin").read_bytes() == b"a" * 1000
    assert seen[-1].done_bytes == 1000, "bytes of failed attempts are not counted as done"
    assert tally.fetched_bytes == 2000  # 2 x 500 lost + 1000


def test_persistent_failures_end_in_transfer_failed(s3: Any, tmp_path: Path) -> None:
    s3.put("m/a.bin", b"a" * 10)
    flaky = _Flaky(S3Source(parse_uri(s3.uri("m")), s3.env, workers=1), failures=99)
    with pytest.raises(TransferFailed, match="after 2 attempts"):
        download_objects(flaky, tmp_path, workers=1, attempts=2, progress=None)  # type: ignore[arg-type]
    assert flaky.calls == 2
