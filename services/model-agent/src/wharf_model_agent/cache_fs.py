"""The cache folder on disk: scan it, write markers, delete entries. Blocking; call off-loop."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from wharf_model_agent.decisions import CachedModel
from wharf_model_agent.layout import CacheLayout, owner_of, parse_marker


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (symlinks are not followed or counted)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def scan(layout: CacheLayout) -> dict[str, CachedModel]:
    """What the cache holds, per model name."""
    entries: dict[str, set[str]] = {}
    dirs: set[str] = set()
    markers: dict[str, set[str]] = {}
    if layout.models_dir.is_dir():
        for child in layout.models_dir.iterdir():
            owner = owner_of(child.name)
            entries.setdefault(owner, set()).add(child.name)
            if child.name == owner and child.is_dir() and not child.is_symlink():
                dirs.add(owner)
    if layout.markers_dir.is_dir():
        for child in layout.markers_dir.iterdir():
            parsed = parse_marker(child.name)
            if parsed is not None:
                markers.setdefault(parsed[0], set()).add(parsed[1])
    cached: dict[str, CachedModel] = {}
    for name in entries.keys() | markers.keys():
        complete = name in dirs and bool(markers.get(name))
        cached[name] = CachedModel(
            entries=frozenset(entries.get(name, ())),
            markers=frozenset(markers.get(name, ())),
            has_dir=name in dirs,
            # Only complete folders count: a partial one is not usable and is still growing.
            bytes=folder_bytes(layout.model_dir(name)) if complete else 0,
        )
    return cached


def prepare(layout: CacheLayout) -> None:
    layout.models_dir.mkdir(parents=True, exist_ok=True)
    layout.markers_dir.mkdir(parents=True, exist_ok=True)


def write_marker(layout: CacheLayout, model: str, key: str, files: int, size: int) -> None:
    """Record that `models/<model>` holds a complete copy of the URI with `key`."""
    path = layout.marker(model, key)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"files": files, "bytes": size}))
    os.replace(tmp, path)


def delete_marker(layout: CacheLayout, model: str, key: str) -> None:
    layout.marker(model, key).unlink(missing_ok=True)


def delete_entry(layout: CacheLayout, name: str) -> None:
    """Remove `models/<name>`, a folder, file or link, if it is there."""
    path = layout.entry(name)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
