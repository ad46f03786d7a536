"""The download port: a source URI into a folder. Production runs wharf_storage off the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import wharf_storage
from wharf_storage.errors import StorageError


@dataclass(frozen=True)
class Fetched:
    files: int
    bytes: int
    fetched_bytes: int  # bytes that crossed the network this time (0 for a complete folder)


class DownloadFailed(Exception):
    """A download did not complete; `reason` is one line, free of credentials."""

    def __init__(self, reason: str, kind: str = "Error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # a short class name for metrics labels


class DownloadCancelled(Exception):
    """Raised from the progress callback to stop a download the spec no longer wants."""


class Downloader(Protocol):
    async def __call__(
        self, uri: str, dest: Path, *, env: Mapping[str, str] | None, stop: threading.Event
    ) -> Fetched:
        """Download `uri` into `dest` (appearing only when complete); resume if interrupted.

        Raises DownloadFailed, or DownloadCancelled once `stop` is set.
        """
        ...


def _checker(stop: threading.Event) -> Callable[[object], None]:
    def progress(_: object) -> None:
        # wharf_storage propagates an exception from the callback and stops the download,
        # leaving the partial folder for a later resume or for the agent to delete.
        if stop.is_set():
            raise DownloadCancelled

    return progress


async def storage_download(
    uri: str, dest: Path, *, env: Mapping[str, str] | None, stop: threading.Event
) -> Fetched:
    """wharf_storage.download in a worker thread (it blocks).

    Local sources (file://, pvc://) are copied: a cache of links to elsewhere is no cache.
    """
    try:
        result = await asyncio.to_thread(
            wharf_storage.download, uri, dest, env=env, progress=_checker(stop), copy=True
        )
    except DownloadCancelled:
        raise
    except StorageError as exc:
        raise DownloadFailed(f"{type(exc).__name__}: {exc}", type(exc).__name__) from None
    except OSError as exc:
        raise DownloadFailed(f"writing {dest}: {exc.strerror or exc}", "OSError") from None
    if stop.is_set():
        raise DownloadCancelled
    return Fetched(files=result.files, bytes=result.bytes, fetched_bytes=result.fetched_bytes)
