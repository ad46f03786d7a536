"""Azure blob URIs against Azurite on loopback (the endpoint is overridden, the URI is real)."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import (
    BlobServiceClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_container_sas,
)

from wharf_storage import AccessDenied, ChecksumMismatch, SourceNotFound, download

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MiB = 1024 * 1024


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


class Container:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.name = f"c{uuid.uuid4().hex[:12]}"
        service = BlobServiceClient(
            endpoint, credential={"account_name": ACCOUNT, "account_key": KEY}
        )
        self.client = service.create_container(self.name)

    def put(self, name: str, data: bytes, md5: bytes | None = None) -> None:
        blob = self.client.upload_blob(name, data, overwrite=True)
        if md5 is not None:
            # Set afterwards: the emulator checks an MD5 sent with the upload, not this one.
            blob.set_http_headers(content_settings=ContentSettings(content_md5=bytearray(md5)))

    def uri(self, prefix: str = "") -> str:
        return f"https://{ACCOUNT}.blob.core.windows.net/{self.name}/{prefix}"

    @property
    def env(self) -> dict[str, str]:
        return {"WHARF_AZURE_BLOB_ENDPOINT": self.endpoint, "AZURE_STORAGE_ACCESS_KEY": KEY}


@pytest.fixture
def azure(azurite_endpoint: str) -> Iterator[Container]:
    container = Container(azurite_endpoint)
    yield container
    container.client.delete_container()


def test_folder_with_account_key(azure: Any, tmp_path: Path) -> None:
    azure.put("model/config.json", b"{}")
    azure.put("model/w/0.bin", b"0" * 1000)
    azure.put("model-v2/other.bin", b"no")
    result = download(azure.uri("model"), tmp_path / "out", env=azure.env)
    assert tree(tmp_path / "out") == {"config.json": b"{}", "w/0.bin": b"0" * 1000}
    assert result.fetched_bytes == 1002


def test_large_blob_in_chunks(azure: Any, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 7)
    azure.put("big/w.bin", data)
    download(azure.uri("big"), tmp_path / "out", env=azure.env)
    assert (tmp_path / "out" / "w.bin").read_bytes() == data


def test_connection_string(azure: Any, tmp_path: Path) -> None:
    azure.put("m/a", b"a")
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={azure.endpoint};"
    )
    download(azure.uri("m"), tmp_path / "out", env={"AZURE_STORAGE_CONNECTION_STRING": conn})
    assert tree(tmp_path / "out") == {"a": b"a"}


def _sas(azure: Any) -> str:
    return generate_container_sas(
        ACCOUNT,
        azure.name,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def test_sas_in_the_uri_and_never_in_logs_or_errors(
    azure: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    azure.put("m/a", b"a")
    sas = _sas(azure)
    env = {"WHARF_AZURE_BLOB_ENDPOINT": azure.endpoint}
    result = download(f"{azure.uri('m')}?{sas}", tmp_path / "out", env=env)
    assert tree(tmp_path / "out") == {"a": b"a"}
    with pytest.raises(SourceNotFound) as info:
        download(f"{azure.uri('missing')}?{sas}", tmp_path / "out2", env=env)
    signature = next(p for p in sas.split("&") if p.startswith("sig=")).split("=", 1)[1]
    for text in (caplog.text, str(info.value), result.uri):
        assert signature not in text


def test_wrong_key_is_access_denied(azure: Any, tmp_path: Path) -> None:
    azure.put("m/a", b"a")
    wrong = KEY[:-8] + "AAAAAAA="
    env = {**azure.env, "AZURE_STORAGE_ACCESS_KEY": wrong}
    with pytest.raises(AccessDenied) as info:
        download(azure.uri("m"), tmp_path / "out", env=env)
    assert wrong not in str(info.value)


def test_content_md5_mismatch_is_detected(azure: Any, tmp_path: Path) -> None:
    azure.put("m/a.bin", b"real content", md5=hashlib.md5(b"other content").digest())
    with pytest.raises(ChecksumMismatch, match="MD5"):
        download(azure.uri("m"), tmp_path / "out", env=azure.env)
    assert not (tmp_path / "out").exists()


def test_content_md5_match_passes(azure: Any, tmp_path: Path) -> None:
    data = b"real content"
    azure.put("m/a.bin", data, md5=hashlib.md5(data).digest())
    download(azure.uri("m"), tmp_path / "out", env=azure.env)
    assert tree(tmp_path / "out") == {"a.bin": data}
