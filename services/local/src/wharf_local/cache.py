"""The local model cache: one folder per storage URI, content-addressed by the URI's hash.

`wharf_storage.download` makes the folder appear only when complete and returns at once for a
complete one, so a second `wharf up` of the same URI downloads nothing; local sources (file://,
plain paths) are linked, not copied. Downloads of one URI are single-flight: services that
need the same model at the same time wait for one download, and each of them hears its
progress and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

from wharf_storage import DownloadResult, Progress, download

Listener = Callable[[Progress], None]


def cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


def cache_dir(models_root: Path, uri: str) -> Path:
    return models_root / cache_key(uri)


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._inflight: dict[Path, asyncio.Future[DownloadResult]] = {}
        self._listeners: dict[Path, list[Listener]] = {}

    async def fetch(
        self,
        uri: str,
        *,
        env: Mapping[str, str] | None = None,
        on_progress: Listener | None = None,
    ) -> DownloadResult:
        """Download the model at `uri` into its cache folder (a no-op when it is there); a
        caller that asks while the same URI downloads waits for that download.

        `on_progress` is called on the event loop, never on the download's threads. `env`
        carries credentials (from the service account's Secrets) for the first caller's
        download; the folder is shared by URI, as the content is.
        """
        dest = cache_dir(self.root, uri)
        listeners = self._listeners.setdefault(dest, [])
        if on_progress is not None:
            listeners.append(on_progress)
        pending = self._inflight.get(dest)
        if pending is None:
            loop = asyncio.get_running_loop()

            def report(p: Progress) -> None:  # on a download thread
                loop.call_soon_threadsafe(self._tell, dest, p)

            def run() -> DownloadResult:
                dest.parent.mkdir(parents=True, exist_ok=True)
                return download(uri, dest, env=env, progress=report)

            pending = asyncio.ensure_future(asyncio.to_thread(run))
            self._inflight[dest] = pending
            pending.add_done_callback(lambda _: self._done(dest))
        try:
            # one waiter cancelled (its service deleted) must not cancel the others' download
            return await asyncio.shield(pending)
        finally:
            if on_progress is not None:
                with contextlib.suppress(ValueError):
                    listeners.remove(on_progress)

    def _tell(self, dest: Path, p: Progress) -> None:
        for listener in list(self._listeners.get(dest, ())):
            listener(p)

    def _done(self, dest: Path) -> None:
        self._inflight.pop(dest, None)
        if not self._listeners.get(dest):
            self._listeners.pop(dest, None)

    def downloading(self) -> int:
        return len(self._inflight)
