"""Unpack .zip/.tar/.tar.gz archives without letting any member land outside the folder.

Every member is checked before anything is written: absolute names, `..` segments, links that
point outside (or anywhere, for hard links to absolute names) and device files are refused with
UnsafePath. tarfile's `data` filter then guards the extraction itself as a second line.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from wharf_storage.errors import InvalidArchive, UnsafePath
from wharf_storage.paths import safe_relpath


def link_target_inside(member: PurePosixPath, target: str, *, hard: bool) -> bool:
    if target.startswith("/") or "\\" in target:
        return False
    # A symlink is relative to its own folder; a hard link to the archive root.
    base = "" if hard else str(member.parent)
    joined = posixpath.normpath(posixpath.join(base, target))
    return joined != ".." and not joined.startswith("../") and not joined.startswith("/")


def is_root(name: str) -> bool:
    return all(part in ("", ".") for part in name.split("/"))


def check_tar(tar: tarfile.TarFile, name: str) -> None:
    for member in tar.getmembers():
        if member.isdir() and is_root(member.name):
            continue  # `./`, as `tar -C dir .` writes
        rel = safe_relpath(member.name, what=f"{name}: member")
        if member.issym() or member.islnk():
            if not link_target_inside(rel, member.linkname, hard=member.islnk()):
                raise UnsafePath(
                    f"{name}: link member {member.name!r} points outside the destination "
                    f"({member.linkname!r})"
                )
        elif not (member.isfile() or member.isdir()):
            raise UnsafePath(f"{name}: member {member.name!r} is a device or fifo")


def check_zip(archive: zipfile.ZipFile, name: str) -> None:
    for info in archive.infolist():
        if info.is_dir() and is_root(info.filename):
            continue
        rel = safe_relpath(info.filename, what=f"{name}: member")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            target = archive.read(info).decode("utf-8", "replace")
            if not link_target_inside(rel, target, hard=False):
                raise UnsafePath(
                    f"{name}: link member {info.filename!r} points outside the destination "
                    f"({target!r})"
                )


# Python's tar extraction filters (PEP 706) arrived in 3.11.4; an older 3.11 (Debian 12 ships
# 3.11.2) extracts without them, relying on the member checks above and in the OCI layer plan,
# which refuse every escape the "data" filter would.
TAR_FILTER_ERRORS: tuple[type[Exception], ...] = (
    (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
)
TAR_EXTRACT_OPTIONS: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def unpack(archive_path: Path, kind: str, dest: Path, *, name: str) -> None:
    """Unpack `archive_path` (`zip`, `tar` or `tar.gz`) into `dest`."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive_path) as zf:
                check_zip(zf, name)
                zf.extractall(dest)
            return
        mode: Literal["r:gz", "r:"] = "r:gz" if kind == "tar.gz" else "r:"
        with tarfile.open(archive_path, mode) as tf:
            check_tar(tf, name)
            tf.extractall(dest, **TAR_EXTRACT_OPTIONS)
    except UnsafePath:
        raise
    except TAR_FILTER_ERRORS as exc:
        raise UnsafePath(f"{name}: {exc}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InvalidArchive(f"{name}: cannot unpack {kind} archive: {exc}") from None
