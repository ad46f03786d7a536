"""Map names from a store or an archive to paths under the destination, refusing escapes."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from wharf_storage.errors import UnsafePath

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relpath(name: str, *, what: str = "object key") -> PurePosixPath:
    """`name` as a relative path that stays inside its root, or UnsafePath.

    Rejected: absolute names, Windows drive or UNC names, backslashes used as separators,
    `..` segments, NUL bytes and names that reduce to nothing.
    """
    shown = name[:200]
    if "\x00" in name:
        raise UnsafePath(f"{what} {shown!r} contains a NUL byte")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafePath(f"{what} {shown!r} is an absolute path")
    if "\\" in name:
        raise UnsafePath(f"{what} {shown!r} contains a backslash")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"{what} {shown!r} has a '..' segment")
    if not parts:
        raise UnsafePath(f"{what} {shown!r} names no file")
    return PurePosixPath(*parts)


def inside(root: Path, target: Path) -> bool:
    """Whether `target` (resolved, links followed) lies within `root` (resolved)."""
    root_real = os.path.realpath(root)
    target_real = os.path.realpath(target)
    return target_real == root_real or target_real.startswith(root_real.rstrip(os.sep) + os.sep)


def join_inside(root: Path, rel: PurePosixPath, *, what: str = "object key") -> Path:
    """`root / rel`, refusing a path that leaves `root` through a link on the way."""
    target = root.joinpath(*rel.parts)
    if not inside(root, target.parent) or (target.is_symlink() and not inside(root, target)):
        raise UnsafePath(f"{what} {str(rel)!r} leads outside the destination through a link")
    return target
