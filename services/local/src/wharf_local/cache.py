"""The local model cache: one folder per storage URI, content-addressed by the URI's hash.

A second `wharf up` of the same URI finds the folder complete and downloads nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path


def cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


def cache_dir(models_root: Path, uri: str) -> Path:
    return models_root / cache_key(uri)


def _download(uri: str, dest: Path) -> Path:
    import wharf_storage

    dest.parent.mkdir(parents=True, exist_ok=True)
    download = getattr(wharf_storage, "download", None)
    if download is None:  # until the download engine lands: local folders only, linked
        source = Path(uri.removeprefix("file://")).expanduser()
        if not source.exists():
            raise FileNotFoundError(f"storageUri {uri}: {source} does not exist")
        if not dest.exists():
            dest.symlink_to(source.resolve())
        return dest
    result = download(uri, dest)
    return Path(result.path)


async def fetch(models_root: Path, uri: str) -> Path:
    """The local folder holding the model at `uri` (downloaded on first use)."""
    dest = cache_dir(models_root, uri)
    return await asyncio.to_thread(_download, uri, dest)
