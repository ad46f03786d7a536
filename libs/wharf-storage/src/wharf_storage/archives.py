"""Unpack .zip/.tar/.tar.gz archives without letting any member land outside the folder.

Every member is checked before anything is written: absolute names, `..` segments, links that
point outside (or anywhere, for hard links to absolute names) and device files are refused with
UnsafePath. tarfile's `data` filter then guards the extraction itself as a second line. The
members' declared sizes are added up on the way and checked against the expansion limits
(`wharf_storage.expansion`) before the first byte is written.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from wharf_storage.errors import InvalidArchive, TransferFailed, UnsafePath
from wharf_storage.expansion import ExpansionBudget, ExpansionLimits, Planned
from wharf_storage.paths import safe_relpath

_PATH_MAX = 4096


def link_target_inside(member: PurePosixPath, target: str, *, hard: bool) -> bool:
    if target.startswith("/") or "\\" in target:
        return False
    # A symlink is relative to its own folder; a hard link to the archive root.
    base = "" if hard else str(member.parent)
    joined = posixpath.normpath(posixpath.join(base, target))
    return joined != ".." and not joined.startswith("../") and not joined.startswith("/")


def is_root(name: str) -> bool:
    return all(part in ("", ".") for part in name.split("/"))


def check_tar(tar: tarfile.TarFile, name: str, *, budget: ExpansionBudget, dest: Path) -> Planned:
    """Check every member; return what extracting them writes (refused early when too much)."""
    block = budget.block_size(dest)
    room = budget.room(dest)
    planned = Planned()
    for member in tar:  # header by header: a refusal does not inflate the rest first
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
        planned = planned.plus(member.size if member.isfile() else None, block)
        budget.early_check(planned, name=name, where=dest, room=room)
    return planned


def check_zip(
    archive: zipfile.ZipFile, name: str, *, budget: ExpansionBudget, dest: Path
) -> Planned:
    block = budget.block_size(dest)
    planned = Planned()
    for info in archive.infolist():
        if info.is_dir() and is_root(info.filename):
            continue
        rel = safe_relpath(info.filename, what=f"{name}: member")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            if info.file_size > _PATH_MAX:  # a link's target is a path, not a payload to inflate
                raise UnsafePath(f"{name}: link member {info.filename!r} has an oversized target")
            target = archive.read(info).decode("utf-8", "replace")
            if not link_target_inside(rel, target, hard=False):
                raise UnsafePath(
                    f"{name}: link member {info.filename!r} points outside the destination "
                    f"({target!r})"
                )
        # zipfile writes links as files; a member is cut at its declared size when written.
        planned = planned.plus(None if info.is_dir() else info.file_size, block)
    return planned


# Python's tar extraction filters (PEP 706) arrived in 3.11.4; an older 3.11 (Debian 12 ships
# 3.11.2) extracts without them, relying on the member checks above and in the OCI layer plan,
# which refuse every escape the "data" filter would.
TAR_FILTER_ERRORS: tuple[type[Exception], ...] = (
    (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
)
TAR_EXTRACT_OPTIONS: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def unpack(
    archive_path: Path,
    kind: str,
    dest: Path,
    *,
    name: str,
    budget: ExpansionBudget | None = None,
) -> None:
    """Unpack `archive_path` (`zip`, `tar` or `tar.gz`) into `dest`.

    `budget` is the download's expansion budget (default: the default limits); nothing is
    written when the archive would exceed it (TransferFailed).
    """
    budget = budget or ExpansionBudget(ExpansionLimits())
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive_path) as zf:
                planned = check_zip(zf, name, budget=budget, dest=dest)
                budget.check(planned, name=name, where=dest)
                zf.extractall(dest)
            budget.commit(planned)
            return
        mode: Literal["r:gz", "r:"] = "r:gz" if kind == "tar.gz" else "r:"
        with tarfile.open(archive_path, mode) as tf:
            planned = check_tar(tf, name, budget=budget, dest=dest)
            budget.check(planned, name=name, where=dest)
            tf.extractall(dest, **TAR_EXTRACT_OPTIONS)
        budget.commit(planned)
    except (UnsafePath, TransferFailed):
        raise
    except TAR_FILTER_ERRORS as exc:
        raise UnsafePath(f"{name}: {exc}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InvalidArchive(f"{name}: cannot unpack {kind} archive: {exc}") from None
