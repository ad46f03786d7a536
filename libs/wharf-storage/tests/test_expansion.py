"""How far archives may expand: real bombs (gzip and zip of zeros) served over http(s) with the
limits set low, the limits' parsing and the pure decision."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from wharf_storage import StorageError, TransferFailed, download
from wharf_storage.expansion import ExpansionLimits, Planned, parse_size, refusal

ZEROS = 64 * 1024 * 1024  # inflates 1000-fold: the archives below weigh about 64 KiB


def gzip_tar_bomb(path: Path, name: str = "zeros.bin", size: int = ZEROS) -> None:
    """A .tar.gz with one member of `size` zero bytes, written without holding it in memory."""
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.size = size
        tf.addfile(info, _Zeros(size))


def zip_bomb(path: Path, size: int = ZEROS) -> None:
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(size // (1 << 20)):
            member.write(bytes(1 << 20))


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def leftovers(root: Path) -> list[str]:
    """Every file under `root` that is not the downloaded archive itself."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".wharf-archive-")
    )


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_bomb_over_the_maximum_is_refused_before_writing(
    http_files: Any, tmp_path: Path, kind: str
) -> None:
    archive = http_files.root / f"model.{kind}"
    (gzip_tar_bomb if kind == "tar.gz" else zip_bomb)(archive)
    assert archive.stat().st_size < 1024 * 1024
    env = {"WHARF_STORAGE_MAX_EXPANDED": "1Mi"}
    with pytest.raises(TransferFailed, match=r"more than WHARF_STORAGE_MAX_EXPANDED \(1048576"):
        download(http_files.url(archive.name), tmp_path / "w" / "out", env=env)
    # Atomic: no destination, and nothing unpacked in the partial folder (only the archive,
    # kept so that a retry with a higher limit does not fetch it again).
    assert not (tmp_path / "w" / "out").exists()
    assert leftovers(tmp_path / "w") == []
    raised = {"WHARF_STORAGE_MAX_EXPANDED": str(ZEROS)}
    result = download(http_files.url(archive.name), tmp_path / "w" / "out", env=raised)
    assert result.fetched_bytes == 0
    assert (tmp_path / "w" / "out" / "zeros.bin").stat().st_size == ZEROS


def test_sizes_add_up_over_the_members(http_files: Any, tmp_path: Path) -> None:
    archive = http_files.root / "model.tar"
    with tarfile.open(archive, "w") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"part-{i}.bin")
            info.size = 400_000
            tf.addfile(info, io.BytesIO(bytes(400_000)))
    env = {"WHARF_STORAGE_MAX_EXPANDED": "1M"}
    with pytest.raises(TransferFailed, match="1200000 bytes of files"):
        download(http_files.url(archive.name), tmp_path / "out", env=env)
    assert not (tmp_path / "out").exists()


def test_the_free_space_reserve_refuses_before_writing(http_files: Any, tmp_path: Path) -> None:
    archive = http_files.root / "model.tar.gz"
    gzip_tar_bomb(archive, size=1024 * 1024)
    env = {"WHARF_STORAGE_MIN_FREE": "1024Pi"}  # more than any disk: nothing may be unpacked
    with pytest.raises(TransferFailed, match="WHARF_STORAGE_MIN_FREE keeps"):
        download(http_files.url(archive.name), tmp_path / "w" / "out", env=env)
    assert not (tmp_path / "w" / "out").exists()
    assert leftovers(tmp_path / "w") == []


def test_default_limits_unpack_a_model(http_files: Any, tmp_path: Path) -> None:
    archive = http_files.root / "model.tar.gz"
    gzip_tar_bomb(archive, size=8 * 1024 * 1024)
    download(http_files.url(archive.name), tmp_path / "out")
    assert (tmp_path / "out" / "zeros.bin").stat().st_size == 8 * 1024 * 1024


def test_a_bad_limit_names_the_variable(http_files: Any, tmp_path: Path) -> None:
    archive = http_files.root / "model.tar.gz"
    gzip_tar_bomb(archive, size=10)
    with pytest.raises(StorageError, match="WHARF_STORAGE_MAX_EXPANDED='lots' is not a size"):
        download(
            http_files.url(archive.name),
            tmp_path / "out",
            env={"WHARF_STORAGE_MAX_EXPANDED": "lots"},
        )


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("1048576", 1 << 20), ("500Mi", 500 << 20), ("2Ti", 2 << 40), ("10G", 10**10)],
)
def test_sizes_parse(text: str, value: int) -> None:
    assert parse_size("X", text) == value


@pytest.mark.parametrize("text", ["", "-1", "1.5Gi", "10GB", "Gi", "1 2"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(StorageError, match="X="):
        parse_size("X", text)


def test_limits_from_env() -> None:
    assert ExpansionLimits.from_env({}) == ExpansionLimits(None, 128 << 20)
    env = {"WHARF_STORAGE_MAX_EXPANDED": "1Ti", "WHARF_STORAGE_MIN_FREE": "0"}
    assert ExpansionLimits.from_env(env) == ExpansionLimits(1 << 40, 0)


def test_planned_counts_whole_blocks() -> None:
    planned = Planned().plus(1, 4096).plus(4097, 4096).plus(None, 4096).plus(0, 4096)
    assert planned == Planned(content=4098, disk=4096 + 8192 + 4096)


def test_refusal_decides_on_both_limits() -> None:
    limits = ExpansionLimits(max_expanded=1000, min_free=100)
    where = Path("/mnt/models")
    ok = refusal(
        limits, unpacked_before=400, planned=Planned(600, 600), free=700, name="m", where=where
    )
    assert ok is None
    over = refusal(
        limits, unpacked_before=401, planned=Planned(600, 600), free=10**9, name="m", where=where
    )
    assert over is not None and "1001 bytes of files" in over
    full = refusal(
        limits, unpacked_before=0, planned=Planned(600, 601), free=700, name="m", where=where
    )
    assert full is not None and "/mnt/models" in full and "which has 700 free" in full
    no_cap = ExpansionLimits(max_expanded=None, min_free=0)
    assert (
        refusal(
            no_cap,
            unpacked_before=10**15,
            planned=Planned(10**12, 10**12),
            free=10**12,
            name="m",
            where=where,
        )
        is None
    )
