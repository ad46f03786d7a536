"""hf:// through huggingface_hub against a local Hub endpoint (HF_ENDPOINT)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from wharf_storage import AccessDenied, SourceNotFound, StorageError, UnsafePath, download

FILES = {"config.json": b'{"a": 1}', "model.safetensors": b"w" * 4096, "tok/vocab.txt": b"v"}


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def env(hub: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"), **extra}


def test_repository_is_downloaded(hf_hub: Any, tmp_path: Path) -> None:
    hf_hub.add("org/tiny", FILES)
    result = download("hf://org/tiny", tmp_path / "out", env=env(hf_hub, tmp_path))
    assert tree(tmp_path / "out") == FILES
    assert result.files == 3 and result.fetched_bytes == sum(map(len, FILES.values()))


def test_interrupted_download_resumes_with_the_missing_files_only(
    hf_hub: Any, tmp_path: Path
) -> None:
    hf_hub.add("org/tiny", FILES)
    hf_hub.missing.add("model.safetensors")
    with pytest.raises(StorageError):
        download("hf://org/tiny", tmp_path / "out", env=env(hf_hub, tmp_path))
    assert not (tmp_path / "out").exists()
    # The library fetches in parallel and reads results in listing order: config.json is always
    # complete before the failure is seen, while a file not yet started when it is seen is
    # cancelled (a race on a busy machine) and so is missing too.
    first = set(hf_hub.sent)
    assert "config.json" in first
    hf_hub.missing.clear()
    hf_hub.sent.clear()
    result = download("hf://org/tiny", tmp_path / "out", env=env(hf_hub, tmp_path))
    resent = dict(hf_hub.sent)
    assert resent["model.safetensors"] == 4096
    assert "config.json" not in resent
    assert set(resent) == {"model.safetensors"} | (set(FILES) - first)
    assert result.fetched_bytes == sum(len(FILES[name]) for name in resent)
    assert tree(tmp_path / "out") == FILES


def test_revision_is_honoured(hf_hub: Any, tmp_path: Path) -> None:
    sha = hf_hub.add("org/tiny", FILES, refs=("main", "v1"))
    download("hf://org/tiny:v1", tmp_path / "out", env=env(hf_hub, tmp_path))
    assert any("/revision/v1" in path for _, path, _ in hf_hub.requests)
    assert any(f"/resolve/{sha}/" in path for _, path, _ in hf_hub.requests)


def test_token_is_sent_and_never_logged(
    hf_hub: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hf_hub.add("org/private", FILES)
    hf_hub.repos["org/private"]["token"] = "hf_secrettoken123"
    with pytest.raises((AccessDenied, SourceNotFound)):
        download("hf://org/private", tmp_path / "a", env=env(hf_hub, tmp_path))
    download(
        "hf://org/private", tmp_path / "b", env=env(hf_hub, tmp_path, HF_TOKEN="hf_secrettoken123")
    )
    assert tree(tmp_path / "b") == FILES
    assert "hf_secrettoken123" not in caplog.text


def test_missing_repository(hf_hub: Any, tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        download("hf://org/none", tmp_path / "out", env=env(hf_hub, tmp_path))
    assert not (tmp_path / "out").exists()


def test_file_name_escaping_the_folder_is_refused(hf_hub: Any, tmp_path: Path) -> None:
    hf_hub.add("org/evil", {"ok.txt": b"ok", "../evil.txt": b"evil"})
    box = tmp_path / "box"
    box.mkdir()
    with pytest.raises(UnsafePath):
        download("hf://org/evil", box / "out", env=env(hf_hub, tmp_path))
    assert list(box.iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt"))
