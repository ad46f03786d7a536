"""Local sources (file://, plain paths, pvc:// mapped to a folder): linked, or copied on request."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wharf_storage.errors import SourceNotFound


def link_or_copy(source: Path, partial: Path, *, copy: bool) -> int:
    """Put `source` (a file or a folder's entries) into `partial`; return the bytes copied."""
    if not source.exists():
        raise SourceNotFound(f"{source}: no such file or folder")
    entries = [source] if source.is_file() else sorted(source.iterdir())
    copied = 0
    for entry in entries:
        target = partial / entry.name
        if target.exists() or target.is_symlink():
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        if not copy:
            os.symlink(entry.resolve(), target)
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=False)
        else:
            shutil.copy2(entry, target)
    if copy:
        for dirpath, _, filenames in os.walk(partial):
            copied += sum(os.path.getsize(os.path.join(dirpath, n)) for n in filenames)
    return copied
