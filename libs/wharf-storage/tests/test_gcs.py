"""gs:// against fake-gcs-server on loopback (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from wharf_storage import ChecksumMismatch, Progress, SourceNotFound, download
from wharf_storage.backends.gcs import GcsSource
from wharf_storage.objects import RemoteObject, download_objects
from wharf_storage.uri import parse_uri


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


class Bucket:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        client = storage.Client(
            project="wharf",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        self.name = f"wharf-{uuid.uuid4().hex[:12]}"
        self.bucket = client.create_bucket(self.name)
        self.env = {"STORAGE_EMULATOR_HOST": endpoint}

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data)

    def uri(self, key: str = "") -> str:
        return f"gs://{self.name}/{key}"


@pytest.fixture
def gcs(gcs_endpoint: str) -> Bucket:
    return Bucket(gcs_endpoint)


def test_folder_and_prefix_boundary(gcs: Any, tmp_path: Path) -> None:
    gcs.put("model/config.json", b"{}")
    gcs.put("model/w/0.bin", b"0" * 2000)
    gcs.put("model-old/x.bin", b"no")
    result = download(gcs.uri("model"), tmp_path / "out", env=gcs.env)
    assert tree(tmp_path / "out") == {"config.json": b"{}", "w/0.bin": b"0" * 2000}
    assert result.fetched_bytes == 2002


def test_large_object_in_ranged_chunks(gcs: Any, tmp_path: Path) -> None:
    data = os.urandom(33 * 1024 * 1024 + 5)
    gcs.put("big/w.bin", data)
    result = download(gcs.uri("big"), tmp_path / "out", env=gcs.env)
    assert (tmp_path / "out" / "w.bin").read_bytes() == data
    assert result.fetched_bytes == len(data)


def test_single_object(gcs: Any, tmp_path: Path) -> None:
    gcs.put("m/model.pt", b"pt")
    download(gcs.uri("m/model.pt"), tmp_path / "out", env=gcs.env)
    assert tree(tmp_path / "out") == {"model.pt": b"pt"}


def test_interruption_then_resume(gcs: Any, tmp_path: Path) -> None:
    sizes = {f"m/{i}.bin": 50_000 * (i + 1) for i in range(4)}
    for key, size in sizes.items():
        gcs.put(key, os.urandom(size))

    class Stop(Exception):
        pass

    def stop(p: Progress) -> None:
        if p.files_done >= 1:
            raise Stop

    with pytest.raises(Stop):
        download(gcs.uri("m"), tmp_path / "out", env=gcs.env, progress=stop, workers=1)
    partial = tmp_path / ".out.wharf-partial"
    kept = sum(p.stat().st_size for p in partial.glob("*.bin"))
    result = download(gcs.uri("m"), tmp_path / "out", env=gcs.env)
    assert kept > 0
    assert result.fetched_bytes == sum(sizes.values()) - kept
    assert len(tree(tmp_path / "out")) == 4


def test_md5_mismatch(gcs: Any, tmp_path: Path) -> None:
    gcs.put("m/a.bin", b"A" * 64)
    source = GcsSource(parse_uri(gcs.uri("m")), gcs.env)
    listed = source.list_objects()
    assert listed[0].md5 is not None
    gcs.put("m/a.bin", b"B" * 64)

    class Stale:
        what = source.what

        def list_objects(self) -> list[RemoteObject]:
            return listed

        def __getattr__(self, name: str) -> object:
            return getattr(source, name)

    with pytest.raises(ChecksumMismatch):
        download_objects(Stale(), tmp_path, workers=1, attempts=1, progress=None)  # type: ignore[arg-type]


def test_missing_prefix(gcs: Any, tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        download(gcs.uri("nothing"), tmp_path / "out", env=gcs.env)
