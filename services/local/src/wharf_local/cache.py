"""The local model cache: one folder per storage URI, content-addressed by the URI's hash.

`wharf_storage.download` makes the folder appear only when complete and returns at once for a
complete one, so a second `wharf up` of the same URI downloads nothing; local sources (file://,
plain paths) are linked, not copied.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from wharf_storage import DownloadResult, download


def cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


def cache_dir(models_root: Path, uri: str) -> Path:
    return models_root / cache_key(uri)


def _download(uri: str, dest: Path) -> DownloadResult:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return download(uri, dest)


async def fetch(models_root: Path, uri: str) -> DownloadResult:
    """Download the model at `uri` into its cache folder (a no-op when it is there)."""
    return await asyncio.to_thread(_download, uri, cache_dir(models_root, uri))
