"""http(s):// single files and archives through httpx, with Range resume and retries."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import httpx

from wharf_storage.archives import unpack
from wharf_storage.errors import (
    AccessDenied,
    ChecksumMismatch,
    SourceNotFound,
    StorageError,
    TransferFailed,
    UnsupportedUri,
)
from wharf_storage.expansion import ExpansionBudget, ExpansionLimits
from wharf_storage.network import backoff, no_such_host
from wharf_storage.paths import safe_relpath
from wharf_storage.progress import ProgressCallback, Retry, Tracker
from wharf_storage.uri import StorageUri

log = logging.getLogger("wharf_storage")
HEADERS_SUFFIX = "-headers"
ARCHIVE_PREFIX = ".wharf-archive-"


def host_headers(env: Mapping[str, str], host: str) -> dict[str, str]:
    """KServe's `<host>-headers` variable: a JSON object of extra request headers."""
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    raw = env.get(hostname + HEADERS_SUFFIX) or env.get(host + HEADERS_SUFFIX)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise UnsupportedUri(f"{hostname}{HEADERS_SUFFIX} is not a JSON object") from None
    if not isinstance(value, dict):
        raise UnsupportedUri(f"{hostname}{HEADERS_SUFFIX} is not a JSON object")
    return {str(k): str(v) for k, v in value.items()}


def _status_error(what: str, status: int) -> StorageError | None:
    if status in (401, 403):
        return AccessDenied(f"{what}: HTTP {status}")
    if status in (404, 410):
        return SourceNotFound(f"{what}: HTTP {status}")
    if status >= 500 or status in (408, 429):
        return None
    return TransferFailed(f"{what}: HTTP {status}")


class HttpDownload:
    def __init__(
        self,
        uri: StorageUri,
        env: Mapping[str, str],
        *,
        attempts: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.uri = uri
        self.what = uri.redacted
        name = PurePosixPath(uri.key).name
        if not name:
            raise UnsupportedUri(f"{self.what}: the URL path names no file")
        self.name = str(safe_relpath(name, what="file name"))
        # Ask for the bytes as stored, so sizes match and Range offsets mean file offsets.
        self.headers = {"Accept-Encoding": "identity"}
        # Secret per-host headers go to the origin the user named and nowhere else: not to
        # another host, port or scheme that a redirect points to.
        self.secret_headers = host_headers(env, uri.host)
        self.origin = httpx.URL(uri.raw)
        self.attempts = max(1, attempts)
        self.progress = progress
        self.fetched = 0
        self.budget = ExpansionBudget(ExpansionLimits.from_env(env))

    def run(self, partial: Path) -> int:
        """Download into `partial` (unpacking archives); return the bytes fetched."""
        kind = self.uri.archive_kind
        final = partial / (ARCHIVE_PREFIX + self.name if kind else self.name)
        if kind is None and final.exists():
            return 0  # complete from an earlier run, only the rename was missing
        if not final.exists():
            self._fetch(final)
        if kind is not None:
            unpack(final, kind, partial, name=self.what, budget=self.budget)
            final.unlink()
        return self.fetched

    def _fetch(self, final: Path) -> None:
        tmp = final.with_name(final.name + ".wharf-tmp")
        tracker = Tracker(
            f"download {self.what}", total_bytes=None, files_total=1, callback=self.progress
        )
        with httpx.Client(
            headers=self.headers,
            follow_redirects=True,
            timeout=60.0,
            event_hooks={"request": [self._origin_headers]},
        ) as client:
            for attempt in range(1, self.attempts + 1):
                try:
                    self._attempt(client, tmp, tracker)
                    break
                except httpx.TransportError as exc:
                    if no_such_host(exc):
                        raise TransferFailed(
                            f"{self.what}: a host on the way does not resolve (no such name)"
                        ) from None
                    if attempt == self.attempts:
                        raise TransferFailed(
                            f"{self.what}: failed after {attempt} attempts: {type(exc).__name__}"
                        ) from None
                    reason = type(exc).__name__
                except _Retry as exc:
                    if attempt == self.attempts:
                        raise TransferFailed(
                            f"{self.what}: failed after {attempt} attempts: HTTP {exc.status}"
                        ) from None
                    reason = f"HTTP {exc.status}"
                delay = backoff(attempt)
                tracker.retry(Retry(self.name, attempt, self.attempts, reason, delay))
                time.sleep(delay)
        tmp.replace(final)
        tracker.file_done()
        tracker.finish()

    def _origin_headers(self, request: httpx.Request) -> None:
        """Called by httpx for the first request and for every redirect it follows."""
        same_origin = (
            request.url.scheme == self.origin.scheme
            and request.url.host == self.origin.host
            and request.url.port == self.origin.port
        )
        for name, value in self.secret_headers.items():
            if same_origin:
                request.headers[name] = value
            elif name in request.headers:
                del request.headers[name]

    def _attempt(self, client: httpx.Client, tmp: Path, tracker: Tracker) -> None:
        have = tmp.stat().st_size if tmp.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with client.stream("GET", self.uri.raw, headers=headers) as response:
            if response.status_code == 416 and have:
                # The partial file is already whole (or the server changed): start over.
                tmp.unlink()
                raise _Retry(416)
            if response.status_code >= 400:
                error = _status_error(self.what, response.status_code)
                if error is not None:
                    raise error
                raise _Retry(response.status_code)
            resumed = response.status_code == 206 and have > 0
            if resumed:
                log.info("%s: resuming at byte %d", self.what, have)
            expected = self._expected_size(response, have if resumed else 0)
            tracker.total_bytes = expected
            if resumed:
                tracker.add_bytes(have, fetched=False)
            with open(tmp, "ab" if resumed else "wb") as f:
                # Unbuffered: what arrived before a dropped connection is kept for the resume.
                for chunk in response.iter_bytes():
                    f.write(chunk)
                    self.fetched += len(chunk)
                    tracker.add_bytes(len(chunk))
        size = tmp.stat().st_size
        if expected is not None and size != expected:
            if size < expected:
                raise httpx.ReadError(f"short read: {size} of {expected} bytes")
            tmp.unlink()
            raise ChecksumMismatch(
                f"{self.what}: got {size} bytes, the server announced {expected}"
            )

    @staticmethod
    def _expected_size(response: httpx.Response, offset: int) -> int | None:
        length = response.headers.get("content-length")
        if length is None or response.headers.get("content-encoding", "identity") != "identity":
            return None
        try:
            return offset + int(length)
        except ValueError:
            return None


class _Retry(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
