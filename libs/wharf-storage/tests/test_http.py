"""http(s):// single files and archives against a local HTTP server."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from wharf_storage import (
    AccessDenied,
    InvalidArchive,
    SourceNotFound,
    TransferFailed,
    UnsafePath,
    download,
)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def make_tar(path: Path, members: dict[str, bytes], *, gz: bool = False) -> None:
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def add_link(path: Path, name: str, target: str, *, hard: bool = False) -> None:
    with tarfile.open(path, "a") as tf:
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        info.linkname = target
        tf.addfile(info)


ENV: dict[str, str] = {"WHARF_STORAGE_ATTEMPTS": "3"}


def test_single_file_lands_in_the_folder(http_files: Any, tmp_path: Path) -> None:
    (http_files.root / "model.onnx").write_bytes(b"onnx" * 100)
    result = download(http_files.url("model.onnx"), tmp_path / "out", env=ENV)
    assert tree(tmp_path / "out") == {"model.onnx": b"onnx" * 100}
    assert (result.files, result.bytes, result.fetched_bytes) == (1, 400, 400)


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz", ".tgz"])
def test_archives_are_unpacked(http_files: Any, tmp_path: Path, suffix: str) -> None:
    members = {"model/config.json": b"{}", "model/weights.bin": b"w" * 5000, "README": b"r"}
    archive = http_files.root / f"model{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        make_tar(archive, members, gz=suffix != ".tar")
    download(http_files.url(archive.name), tmp_path / "out", env=ENV)
    assert tree(tmp_path / "out") == members


def test_host_headers_are_sent(http_files: Any, tmp_path: Path) -> None:
    (http_files.root / "m.bin").write_bytes(b"x")
    env = {**ENV, "127.0.0.1-headers": json.dumps({"Authorization": "Bearer s3cr3t-token"})}
    download(http_files.url("m.bin"), tmp_path / "out", env=env)
    assert http_files.requests[-1][1]["authorization"] == "Bearer s3cr3t-token"


def test_dropped_connection_resumes_with_a_range_request(http_files: Any, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (http_files.root / "w.bin").write_bytes(data)
    http_files.cut_after["/w.bin"] = 100_000
    result = download(http_files.url("w.bin"), tmp_path / "out", env=ENV)
    assert (tmp_path / "out" / "w.bin").read_bytes() == data
    assert http_files.sent["/w.bin"] == len(data)  # nothing fetched twice
    assert http_files.requests[-1][1]["range"] == "bytes=100000-"
    assert result.fetched_bytes == len(data)


def test_interrupted_call_is_resumed_by_the_next_one(http_files: Any, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    (http_files.root / "w.bin").write_bytes(data)
    http_files.cut_after["/w.bin"] = 50_000
    with pytest.raises(TransferFailed):
        download(http_files.url("w.bin"), tmp_path / "out", env={"WHARF_STORAGE_ATTEMPTS": "1"})
    assert not (tmp_path / "out").exists()
    result = download(http_files.url("w.bin"), tmp_path / "out", env=ENV)
    assert result.fetched_bytes == len(data) - 50_000
    assert (tmp_path / "out" / "w.bin").read_bytes() == data


def test_server_errors_are_retried(http_files: Any, tmp_path: Path) -> None:
    (http_files.root / "m.bin").write_bytes(b"ok")
    http_files.fail["/m.bin"] = [503, 502]
    download(http_files.url("m.bin"), tmp_path / "out", env=ENV)
    assert tree(tmp_path / "out") == {"m.bin": b"ok"}


def test_persistent_server_errors_fail_after_retries(http_files: Any, tmp_path: Path) -> None:
    (http_files.root / "m.bin").write_bytes(b"ok")
    http_files.fail["/m.bin"] = [500] * 5
    with pytest.raises(TransferFailed, match="after 3 attempts"):
        download(http_files.url("m.bin"), tmp_path / "out", env=ENV)


def test_status_classes(http_files: Any, tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="404"):
        download(http_files.url("missing.bin"), tmp_path / "a", env=ENV)
    (http_files.root / "m.bin").write_bytes(b"x")
    http_files.fail["/m.bin"] = [403]
    with pytest.raises(AccessDenied, match="403"):
        download(http_files.url("m.bin"), tmp_path / "b", env=ENV)


def test_body_shorter_than_announced_fails_and_nothing_is_in_place(
    http_files: Any, tmp_path: Path
) -> None:
    (http_files.root / "m.bin").write_bytes(b"x" * 100)
    http_files.lie_length["/m.bin"] = 150  # announces 150 bytes, sends 100, closes
    http_files.cut_after["/m.bin"] = 100
    with pytest.raises(TransferFailed):
        download(http_files.url("m.bin"), tmp_path / "out", env={"WHARF_STORAGE_ATTEMPTS": "1"})
    assert not (tmp_path / "out").exists()


def test_corrupt_archive(http_files: Any, tmp_path: Path) -> None:
    (http_files.root / "m.zip").write_bytes(b"not a zip")
    with pytest.raises(InvalidArchive):
        download(http_files.url("m.zip"), tmp_path / "out", env=ENV)


def test_signed_url_query_stays_out_of_logs_and_errors(
    http_files: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (http_files.root / "m.bin").write_bytes(b"x")
    result = download(http_files.url("m.bin?X-Amz-Signature=topsecret"), tmp_path / "a", env=ENV)
    with pytest.raises(SourceNotFound) as info:
        download(http_files.url("gone.bin?sig=topsecret"), tmp_path / "b", env=ENV)
    assert "topsecret" not in caplog.text
    assert "topsecret" not in str(info.value) and "topsecret" not in result.uri


# --- Archive safety: nothing outside DEST_DIR, nothing left behind ----------------------


def _unsafe(http_files: Any, tmp_path: Path, name: str) -> None:
    dest = tmp_path / "box" / "out"
    (tmp_path / "box").mkdir()
    with pytest.raises(UnsafePath):
        download(http_files.url(name), dest, env=ENV)
    assert list((tmp_path / "box").iterdir()) == [], "nothing left behind"
    assert not list(tmp_path.rglob("evil*")), "nothing written outside"


def test_zip_slip_is_refused(http_files: Any, tmp_path: Path) -> None:
    with zipfile.ZipFile(http_files.root / "slip.zip", "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("../../evil.txt", b"evil")
    _unsafe(http_files, tmp_path, "slip.zip")


def test_zip_absolute_name_is_refused(http_files: Any, tmp_path: Path) -> None:
    with zipfile.ZipFile(http_files.root / "abs.zip", "w") as zf:
        zf.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo("ok2.txt")
        zf.writestr(info, b"x")
    # ZipFile.writestr normalizes names: write the absolute name into the archive bytes.
    raw = (http_files.root / "abs.zip").read_bytes().replace(b"ok2.txt", b"/evil_1")
    (http_files.root / "abs.zip").write_bytes(raw)
    _unsafe(http_files, tmp_path, "abs.zip")


def test_zip_symlink_pointing_out_is_refused(http_files: Any, tmp_path: Path) -> None:
    with zipfile.ZipFile(http_files.root / "link.zip", "w") as zf:
        info = zipfile.ZipInfo("evil-link")
        info.external_attr = (0o120777 << 16) | 0
        zf.writestr(info, "../../../etc")
    _unsafe(http_files, tmp_path, "link.zip")


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil-abs.txt"])
def test_tar_slip_and_absolute_names_are_refused(
    http_files: Any, tmp_path: Path, name: str
) -> None:
    make_tar(http_files.root / "slip.tar.gz", {"ok.txt": b"fine", name: b"evil"}, gz=True)
    _unsafe(http_files, tmp_path, "slip.tar.gz")


@pytest.mark.parametrize(
    ("target", "hard"), [("/etc/passwd", False), ("../../outside", False), ("/etc/passwd", True)]
)
def test_tar_links_pointing_out_are_refused(
    http_files: Any, tmp_path: Path, target: str, hard: bool
) -> None:
    archive = http_files.root / "links.tar"
    make_tar(archive, {"ok.txt": b"fine"})
    add_link(archive, "evil-link", target, hard=hard)
    _unsafe(http_files, tmp_path, "links.tar")


def test_tar_write_through_a_symlink_is_refused(http_files: Any, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = http_files.root / "via.tar"
    make_tar(archive, {})
    add_link(archive, "evil-dir", str(outside))
    with tarfile.open(archive, "a") as tf:
        info = tarfile.TarInfo("evil-dir/evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    _unsafe(http_files, tmp_path, "via.tar")
    assert list(outside.iterdir()) == []


def test_tar_links_inside_are_kept(http_files: Any, tmp_path: Path) -> None:
    archive = http_files.root / "ok.tar"
    make_tar(archive, {"weights/v1.bin": b"v1"})
    add_link(archive, "weights/current.bin", "v1.bin")
    download(http_files.url("ok.tar"), tmp_path / "out", env=ENV)
    assert (tmp_path / "out" / "weights" / "current.bin").read_bytes() == b"v1"
