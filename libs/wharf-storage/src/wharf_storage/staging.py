"""Where a download is written before it is complete, and how it is put in place.

A destination that does not exist yet is built in a sibling folder `.<name>.wharf-partial`
and renamed into place at the end, so `dest` exists only when complete. A destination that
already exists as an empty folder (a volume mount point such as `/mnt/models`, which cannot be
renamed over) is built in `dest/.wharf-partial`, whose entries are moved up at the end. In both
cases an interrupted download leaves the partial folder behind and the next call resumes in it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from wharf_storage.errors import DestinationUnusable

INNER_PARTIAL = ".wharf-partial"


@dataclass(frozen=True)
class Staging:
    dest: Path
    partial: Path
    in_place: bool  # the partial folder is inside dest (dest is a pre-existing empty folder)


def sibling_partial(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.wharf-partial"


def is_complete(dest: Path) -> bool:
    """A destination is complete when it exists and holds no unfinished partial folder."""
    if dest.is_symlink():
        return dest.exists()
    if not dest.is_dir():
        return False
    names = os.listdir(dest)
    return bool(names) and INNER_PARTIAL not in names


def check_dest(dest: Path) -> None:
    """DestinationUnusable when `dest` or a folder above it is an existing non-folder."""
    if (dest.exists() or dest.is_symlink()) and not dest.is_dir():
        raise DestinationUnusable(f"destination {dest} exists and is not a folder")
    for parent in dest.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise DestinationUnusable(f"destination {dest}: {parent} is not a folder")
            return


def prepare(dest: Path) -> Staging:
    """Pick (and create) the partial folder for an incomplete `dest`."""
    check_dest(dest)
    try:
        if dest.is_dir():
            partial = dest / INNER_PARTIAL
            partial.mkdir(exist_ok=True)
            return Staging(dest, partial, in_place=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = sibling_partial(dest)
        partial.mkdir(exist_ok=True)
    except OSError as exc:
        raise DestinationUnusable(
            f"destination {dest}: cannot create {exc.filename or dest}: {exc.strerror}"
        ) from None
    if not partial.is_dir():
        raise DestinationUnusable(f"destination {dest}: {partial} exists and is not a folder")
    return Staging(dest, partial, in_place=False)


def finalize(staging: Staging) -> None:
    if not staging.in_place:
        os.replace(staging.partial, staging.dest)
        return
    _merge_into(staging.partial, staging.dest)
    shutil.rmtree(staging.partial)


def _merge_into(src: Path, dst: Path) -> None:
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _merge_into(Path(entry.path), target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry.path, target)


def discard(staging: Staging) -> None:
    """Remove everything this download wrote (used when the input is unsafe)."""
    shutil.rmtree(staging.partial, ignore_errors=True)


def tally(root: Path) -> tuple[int, int]:
    """Number of files and their bytes under `root`, following links (a linked source counts)."""
    files = 0
    total = 0
    if root.is_file():
        return 1, root.stat().st_size
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if dirpath == str(root) and INNER_PARTIAL in dirnames:
            dirnames.remove(INNER_PARTIAL)
        for name in filenames:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
            files += 1
    return files, total
