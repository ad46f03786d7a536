"""file://, plain paths and pvc:// (linked by default, copied on request)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wharf_storage import SourceNotFound, UnsupportedUri, download, remove


@pytest.fixture
def model(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"m" * 10)
    (src / "sub" / "c.json").write_bytes(b"{}")
    return src


def test_folder_is_linked_not_copied(model: Path, tmp_path: Path) -> None:
    result = download(f"file://{model}", tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "model.bin").is_symlink()
    assert (out / "model.bin").resolve() == model / "model.bin"
    assert (out / "sub" / "c.json").read_bytes() == b"{}"
    assert (result.files, result.bytes, result.fetched_bytes) == (2, 12, 0)


def test_plain_path_and_copy(model: Path, tmp_path: Path) -> None:
    result = download(str(model), tmp_path / "out", copy=True)
    assert not (tmp_path / "out" / "model.bin").is_symlink()
    assert (tmp_path / "out" / "sub" / "c.json").read_bytes() == b"{}"
    assert result.fetched_bytes == 12


def test_single_file_source(model: Path, tmp_path: Path) -> None:
    download(str(model / "model.bin"), tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["model.bin"]


def test_pvc_maps_to_the_claims_root(model: Path, tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    (claims / "my-claim").mkdir(parents=True)
    (claims / "my-claim" / "models").symlink_to(model)
    env = {"WHARF_PVC_ROOT": str(claims)}
    download("pvc://my-claim/models", tmp_path / "out", env=env)
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"m" * 10


def test_source_equal_to_destination_is_a_no_op(model: Path) -> None:
    result = download(str(model), model)
    assert result.fetched_bytes == 0 and result.files == 2


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        download(str(tmp_path / "nope"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / ".out.wharf-partial").exists()


def test_malformed_oci_reference_is_unsupported_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedUri, match="oci://"):
        download("oci://registry.example/Org/Model:1", tmp_path / "out")


def test_remove_deletes_destination_and_partial(model: Path, tmp_path: Path) -> None:
    download(str(model), tmp_path / "out", copy=True)
    (tmp_path / ".out.wharf-partial").mkdir()
    remove(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.wharf-partial").exists()
    assert (model / "model.bin").exists()
