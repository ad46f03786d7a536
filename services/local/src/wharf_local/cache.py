"""The local model cache: one folder per storage URI, content-addressed by the URI's hash.

`wharf_storage.download` makes the folder appear only when complete and returns at once for a
complete one, so a second `wharf up` of the same URI downloads nothing; local sources (file://,
plain paths) are linked, not copied. Downloads of one URI are single-flight: services that
need the same model at the same time wait for one download.
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


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._inflight: dict[Path, asyncio.Future[DownloadResult]] = {}

    async def fetch(self, uri: str) -> DownloadResult:
        """Download the model at `uri` into its cache folder (a no-op when it is there); a
        caller that asks while the same URI downloads waits for that download."""
        dest = cache_dir(self.root, uri)
        pending = self._inflight.get(dest)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(_download, uri, dest))
            self._inflight[dest] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(dest, None))
        # one waiter cancelled (its service deleted) must not cancel the others' download
        return await asyncio.shield(pending)

    def downloading(self) -> int:
        return len(self._inflight)
