"""The download engine for object stores (S3, GCS, Azure): list, plan, fetch in parallel, verify.

Backends only list objects and write one object to a file; deciding what to fetch, where it may
go, retrying, verifying and counting happens here, once for every store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from wharf_storage.errors import (
    ChecksumMismatch,
    SourceNotFound,
    StorageError,
    TransferFailed,
    UnsafePath,
)
from wharf_storage.network import backoff, no_such_host
from wharf_storage.paths import join_inside, safe_relpath
from wharf_storage.progress import ProgressCallback, Retry, Tracker

log = logging.getLogger("wharf_storage")

TMP_SUFFIX = ".wharf-tmp"


@dataclass(frozen=True)
class RemoteObject:
    key: str  # the key in the store
    rel: PurePosixPath  # where it goes, relative to the destination
    size: int
    md5: str | None = None  # hex digest, when the store gives one for the whole object


class ObjectSource(Protocol):
    what: str  # the redacted URI, for messages

    def list_objects(self) -> list[RemoteObject]: ...

    def fetch(self, obj: RemoteObject, path: Path, on_bytes: Callable[[int], None]) -> None:
        """Write the whole object to `path` (replacing it), reporting bytes as they arrive."""
        ...

    def classify(self, exc: BaseException) -> StorageError | None:
        """The error to fail with, or None when `exc` is transient and worth a retry."""
        ...

    def md5_applies(self, obj: RemoteObject) -> bool:
        """Asked after an MD5 mismatch: whether the store's MD5 really is the content's."""
        ...


class Cancelled(Exception):
    """Raised inside a transfer's byte callback to stop it when another one failed."""


def select_keys(keys: Iterable[str], prefix: str) -> list[tuple[str, str]]:
    """(key, name under the destination) for the objects a URI with `prefix` means.

    The prefix is a folder boundary: `model` selects `model/...`, never `model-hf/...` (KServe
    #3776). When no object lies under the folder and an object is named exactly `prefix`, that
    one object is selected and keeps its base name. Folder markers (keys ending in `/`) are
    skipped. An empty prefix selects the whole bucket.
    """
    keys = list(keys)
    if not prefix:
        return [(k, k) for k in keys if not k.endswith("/")]
    folder = prefix.rstrip("/") + "/"
    under = [(k, k[len(folder) :]) for k in keys if k.startswith(folder) and not k.endswith("/")]
    if under:
        return under
    if not prefix.endswith("/") and prefix in keys:
        return [(prefix, prefix.rsplit("/", 1)[-1])]
    return []


def remote_objects(
    entries: Iterable[tuple[str, int, str | None]], prefix: str
) -> list[RemoteObject]:
    """Objects under `prefix` from (key, size, md5) listings; UnsafePath for escaping names."""
    by_key = {key: (size, md5) for key, size, md5 in entries}
    objects = []
    for key, name in select_keys(by_key, prefix):
        size, md5 = by_key[key]
        objects.append(RemoteObject(key, safe_relpath(name), size, md5))
    _check_layout(objects)
    return objects


def _check_layout(objects: list[RemoteObject]) -> None:
    files = {o.rel for o in objects}
    for o in objects:
        for parent in o.rel.parents:
            if parent in files:
                raise UnsafePath(f"{parent} is both a file and a folder in the source")


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(obj: RemoteObject, path: Path) -> bool:
    """A file left by an earlier run counts when its size (and MD5, if known) match."""
    try:
        if path.is_symlink() or path.stat().st_size != obj.size:
            return False
    except OSError:
        return False
    return obj.md5 is None or md5_of(path) == obj.md5


@dataclass(frozen=True)
class Tally:
    files: int
    bytes: int
    fetched_bytes: int


def download_objects(
    source: ObjectSource,
    root: Path,
    *,
    workers: int,
    attempts: int,
    progress: ProgressCallback | None,
) -> Tally:
    """Download every object of `source` under `root` (the partial folder); resume what is there."""
    objects = source.list_objects()
    if not objects:
        raise SourceNotFound(f"{source.what}: no objects found")
    targets = [(o, join_inside(root, o.rel)) for o in objects]
    tracker = Tracker(
        f"download {source.what}",
        total_bytes=sum(o.size for o in objects),
        files_total=len(objects),
        callback=progress,
    )
    pending = []
    for obj, path in targets:
        if is_complete(obj, path):
            tracker.add_bytes(obj.size, fetched=False)
            tracker.file_done()
        else:
            pending.append((obj, path))
    if len(pending) < len(targets):
        log.info(
            "%s: resuming, %d of %d files already complete",
            source.what,
            len(targets) - len(pending),
            len(targets),
        )
    cancel = threading.Event()
    fetcher = _Fetcher(source, tracker, cancel, attempts)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="wharf-dl") as pool:
        # Largest first: the long transfers start early and the small ones fill the gaps.
        pending.sort(key=lambda item: -item[0].size)
        futures = [pool.submit(fetcher.fetch, obj, path) for obj, path in pending]
        done, not_done = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if not f.cancelled() and f.exception() is not None]
        if failed:
            cancel.set()
            for f in not_done:
                f.cancel()
            wait(not_done)
            errors = [
                f.exception() for f in futures if not f.cancelled() and f.exception() is not None
            ]
            # Report the root cause, not the Cancelled of the transfers it stopped.
            first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
            assert first is not None
            raise first
    tracker.finish()
    return Tally(len(objects), sum(o.size for o in objects), tracker.fetched_bytes)


class _Fetcher:
    def __init__(
        self, source: ObjectSource, tracker: Tracker, cancel: threading.Event, attempts: int
    ) -> None:
        self.source = source
        self.tracker = tracker
        self.cancel = cancel
        self.attempts = max(1, attempts)
        self.callback_error: BaseException | None = None

    def fetch(self, obj: RemoteObject, path: Path) -> None:
        tmp = path.with_name(path.name + TMP_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.attempts + 1):
            if self.cancel.is_set():
                raise Cancelled()
            received = 0

            def on_bytes(n: int) -> None:
                nonlocal received
                if self.cancel.is_set():
                    raise Cancelled()
                received += n
                try:
                    self.tracker.add_bytes(n)
                except BaseException as exc:
                    # The caller's progress callback stops the download: no retry.
                    self.callback_error = exc
                    self.cancel.set()
                    raise

            try:
                self.source.fetch(obj, tmp, on_bytes)
                break
            except (Cancelled, StorageError):
                raise
            except Exception as exc:
                if self.callback_error is not None:
                    raise self.callback_error from None
                # Uncount what this attempt reported; the bytes fetched still count as fetched.
                self.tracker.add_bytes(-received, fetched=False)
                error = self.source.classify(exc)
                if error is not None:
                    raise error from None
                if no_such_host(exc):
                    raise TransferFailed(
                        f"{self.source.what}: {obj.key}: the store's host does not resolve"
                    ) from None
                if attempt == self.attempts:
                    raise TransferFailed(
                        f"{self.source.what}: {obj.key}: failed after {attempt} attempts: "
                        f"{type(exc).__name__}"
                    ) from None
                delay = backoff(attempt)
                self.tracker.retry(
                    Retry(obj.key, attempt, self.attempts, type(exc).__name__, delay)
                )
                time.sleep(delay)
        self._verify(obj, tmp)
        os.replace(tmp, path)
        self.tracker.file_done()

    def _verify(self, obj: RemoteObject, tmp: Path) -> None:
        size = tmp.stat().st_size
        if size != obj.size:
            tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{self.source.what}: {obj.key}: got {size} bytes, the store lists {obj.size}"
            )
        if obj.md5 is None:
            return
        got = md5_of(tmp)
        if got != obj.md5 and self.source.md5_applies(obj):
            tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{self.source.what}: {obj.key}: MD5 {got} differs from the store's {obj.md5}"
            )
