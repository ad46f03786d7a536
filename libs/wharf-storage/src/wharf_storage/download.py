"""`download(uri, dest)`: the one entry point every Wharf component uses."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wharf_storage import staging
from wharf_storage.envs import env_flag, env_int, s3_endpoint
from wharf_storage.errors import StorageError, UnsafePath, UnsupportedUri
from wharf_storage.network import behind_proxy, resolve
from wharf_storage.objects import ObjectSource, download_objects
from wharf_storage.progress import Progress, ProgressCallback, Retry
from wharf_storage.redaction import guard_library_loggers
from wharf_storage.uri import StorageUri, parse_uri

log = logging.getLogger("wharf_storage")

DEFAULT_PVC_ROOT = "/mnt/pvc"


@dataclass(frozen=True)
class DownloadResult:
    uri: str  # redacted: safe to log
    path: Path
    files: int
    bytes: int
    fetched_bytes: int  # what this call transferred; 0 for a no-op or a link


def local_source_path(uri: StorageUri, env: Mapping[str, str]) -> Path:
    """The folder a file://, plain-path or pvc:// URI names on this machine.

    `pvc://<claim>/<path>` maps to `$WHARF_PVC_ROOT/<claim>/<path>` (default /mnt/pvc): on
    Kubernetes the claim is mounted into the pod; locally the runtime mounts nothing, so it
    says where claims live.
    """
    if uri.scheme == "pvc":
        root = Path(env.get("WHARF_PVC_ROOT") or DEFAULT_PVC_ROOT)
        return root / uri.bucket / uri.key
    return Path(uri.key).expanduser()


def download(
    uri: str,
    dest: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    copy: bool = False,
    workers: int | None = None,
) -> DownloadResult:
    """Make `dest` hold the model at `uri`.

    `dest` appears only when complete; an interrupted call leaves a partial folder that the next
    call resumes; a call for a complete `dest` returns at once. `env` (default: os.environ)
    supplies credentials and endpoints. Local sources are symlinked unless `copy` is set.
    Raises a `wharf_storage.errors.StorageError` subclass on failure.
    """
    guard_library_loggers()
    parsed = parse_uri(uri)
    environ: Mapping[str, str] = os.environ if env is None else env
    dest_path = Path(dest).absolute()
    if staging.is_complete(dest_path):
        files, nbytes = staging.tally(dest_path)
        log.info("%s: %s is already complete (%d files)", parsed.redacted, dest_path, files)
        return DownloadResult(parsed.redacted, dest_path, files, nbytes, 0)
    if parsed.scheme in ("file", "pvc"):
        source = local_source_path(parsed, environ)
        if source.exists() and source.resolve() == dest_path.resolve():
            files, nbytes = staging.tally(dest_path)
            return DownloadResult(parsed.redacted, dest_path, files, nbytes, 0)
    n_workers = workers or env_int(environ, "WHARF_STORAGE_CONCURRENCY", 16)
    attempts = env_int(environ, "WHARF_STORAGE_ATTEMPTS", 5)
    staging.check_dest(dest_path)
    endpoint = store_endpoint(parsed, environ)
    if endpoint is not None and not behind_proxy(endpoint[0], endpoint[2], environ):
        # A host name that does not exist fails here, before anything is written.
        _preflight(parsed, endpoint, attempts, progress)
    stage = staging.prepare(dest_path)
    try:
        fetched = _fetch(parsed, stage.partial, environ, progress, copy, n_workers, attempts)
    except UnsafePath:
        staging.discard(stage)
        raise
    except BaseException:
        _drop_if_empty(stage.partial)
        raise
    staging.finalize(stage)
    files, nbytes = staging.tally(dest_path)
    log.info("%s: downloaded to %s (%d files)", parsed.redacted, dest_path, files)
    return DownloadResult(parsed.redacted, dest_path, files, nbytes, fetched)


def store_endpoint(uri: StorageUri, env: Mapping[str, str]) -> tuple[str, int, str] | None:
    """The (host, port, scheme) a download of `uri` talks to first, for the DNS check (pure)."""
    url: str | None
    if uri.scheme in ("http", "https"):
        url = uri.raw
    elif uri.scheme == "s3":
        region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
        url = s3_endpoint(env) or f"https://s3.{region}.amazonaws.com"
    elif uri.scheme == "gs":
        emulator = env.get("STORAGE_EMULATOR_HOST")
        url = emulator if emulator and "://" in emulator else None
        if emulator and url is None:
            url = f"http://{emulator}"
        url = url or "https://storage.googleapis.com"
    elif uri.scheme == "azure":
        url = env.get("WHARF_AZURE_BLOB_ENDPOINT") or _connection_string_endpoint(uri, env)
        url = url or f"https://{uri.host}"
    elif uri.scheme == "hf":
        if env_flag(env, "HF_HUB_OFFLINE", False):
            return None
        url = env.get("HF_ENDPOINT") or "https://huggingface.co"
    elif uri.scheme == "oci":
        url = f"https://{uri.host}"  # only the host and port matter here
    else:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return None
    return (host, port, parts.scheme or "https") if host else None


def _connection_string_endpoint(uri: StorageUri, env: Mapping[str, str]) -> str | None:
    conn = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if not conn or uri.query:
        return None
    fields = dict(part.split("=", 1) for part in conn.split(";") if "=" in part)
    if fields.get("BlobEndpoint"):
        return fields["BlobEndpoint"]
    if fields.get("AccountName"):
        suffix = fields.get("EndpointSuffix") or "core.windows.net"
        return f"https://{fields['AccountName']}.blob.{suffix}"
    return None


def _preflight(
    uri: StorageUri,
    endpoint: tuple[str, int, str],
    attempts: int,
    progress: ProgressCallback | None,
) -> None:
    retries = 0

    def on_retry(retry: Retry) -> None:
        nonlocal retries
        retries += 1
        log.warning(
            "%s: %s: attempt %d of %d failed (%s), retrying in %.1fs",
            uri.redacted,
            retry.what,
            retry.attempt,
            retry.attempts,
            retry.reason,
            retry.delay,
        )
        if progress is not None:
            progress(Progress(0, None, 0, None, retries, retry))

    resolve(endpoint[0], endpoint[1], what=uri.redacted, attempts=attempts, on_retry=on_retry)


def _drop_if_empty(path: Path) -> None:
    try:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    except OSError:
        pass


def _fetch(
    uri: StorageUri,
    partial: Path,
    env: Mapping[str, str],
    progress: ProgressCallback | None,
    copy: bool,
    workers: int,
    attempts: int,
) -> int:
    if uri.scheme in ("file", "pvc"):
        from wharf_storage.backends.local import link_or_copy

        return link_or_copy(local_source_path(uri, env), partial, copy=copy)
    if uri.scheme in ("http", "https"):
        from wharf_storage.backends.http import HttpDownload

        return HttpDownload(uri, env, attempts=attempts, progress=progress).run(partial)
    if uri.scheme == "oci":
        from wharf_storage.backends.oci import OciDownload

        oci = OciDownload(uri, env, attempts=attempts, progress=progress, workers=workers)
        return oci.run(partial)
    if uri.scheme == "hf":
        from wharf_storage.backends.hf import download_hf

        return download_hf(uri, partial, env, workers=workers, progress=progress)
    source = _object_source(uri, env, workers)
    tally = download_objects(source, partial, workers=workers, attempts=attempts, progress=progress)
    return tally.fetched_bytes


def _object_source(uri: StorageUri, env: Mapping[str, str], workers: int) -> ObjectSource:
    # Imported lazily: each store's client library is slow to import and most runs use one.
    if uri.scheme == "s3":
        from wharf_storage.backends.s3 import S3Source

        return S3Source(uri, env, workers=workers)
    if uri.scheme == "gs":
        from wharf_storage.backends.gcs import GcsSource

        return GcsSource(uri, env)
    if uri.scheme == "azure":
        from wharf_storage.backends.azure import AzureSource

        return AzureSource(uri, env)
    raise UnsupportedUri(f"{uri.redacted}: unsupported URI scheme {uri.scheme!r}")


def remove(dest: str | os.PathLike[str]) -> None:
    """Delete a destination and any partial folder next to or inside it."""
    path = Path(dest).absolute()
    for candidate in (staging.sibling_partial(path), path):
        if candidate.is_symlink() or candidate.is_file():
            candidate.unlink()
        elif candidate.is_dir():
            shutil.rmtree(candidate)


__all__ = ["DownloadResult", "StorageError", "download", "remove"]
