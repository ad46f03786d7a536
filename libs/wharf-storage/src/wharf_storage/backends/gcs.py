"""Google Cloud Storage through google-cloud-storage.

Credentials: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account file), else Application Default
Credentials, else an anonymous client (public buckets). `STORAGE_EMULATOR_HOST` points the client
at an emulator such as fake-gcs-server.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.cloud import storage
from google.cloud.storage import transfer_manager

from wharf_storage.envs import env_int
from wharf_storage.errors import (
    AccessDenied,
    ChecksumMismatch,
    SourceNotFound,
    StorageError,
    TransferFailed,
)
from wharf_storage.objects import RemoteObject, remote_objects
from wharf_storage.uri import StorageUri

MiB = 1024 * 1024
# Objects above this size are fetched in concurrent ranged chunks.
CHUNKED_MIN = 32 * MiB


def make_client(env: Mapping[str, str]) -> storage.Client:
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return storage.Client(
            project=env.get("GOOGLE_CLOUD_PROJECT") or "wharf",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator},
        )
    key_file = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key_file:
        return storage.Client.from_service_account_json(key_file)
    try:
        return storage.Client()
    except (DefaultCredentialsError, OSError):
        return storage.Client.create_anonymous_client()


class _Counting:
    """A file wrapper that reports every write (the library has no progress hook)."""

    def __init__(self, f: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self._f = f
        self._on_bytes = on_bytes

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        self._on_bytes(len(data))
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class GcsSource:
    def __init__(self, uri: StorageUri, env: Mapping[str, str]) -> None:
        self.uri = uri
        self.what = uri.redacted
        try:
            self.client = make_client(env)
        except (GoogleAuthError, OSError, ValueError) as exc:
            raise AccessDenied(
                f"{self.what}: cannot load GCS credentials: {type(exc).__name__}"
            ) from None
        self.bucket = self.client.bucket(uri.bucket)
        self.chunk_size = env_int(env, "WHARF_GCS_CHUNK_MIB", 16) * MiB
        self.chunk_workers = env_int(env, "WHARF_GCS_CHUNK_CONCURRENCY", 8)

    def list_objects(self) -> list[RemoteObject]:
        try:
            entries = [
                (
                    b.name,
                    int(b.size or 0),
                    base64.b64decode(b.md5_hash).hex() if b.md5_hash else None,
                )
                for b in self.client.list_blobs(
                    self.bucket, prefix=self.uri.key.rstrip("/") or None
                )
            ]
        except Exception as exc:
            raise self.classify(exc) or TransferFailed(
                f"{self.what}: listing failed: {type(exc).__name__}"
            ) from None
        return remote_objects(entries, self.uri.key)

    def fetch(self, obj: RemoteObject, path: Path, on_bytes: Callable[[int], None]) -> None:
        if obj.size > CHUNKED_MIN:
            # Ranged chunks in threads, each checked; the whole file's CRC32C is checked too.
            transfer_manager.download_chunks_concurrently(
                self.bucket.blob(obj.key),
                str(path),
                chunk_size=self.chunk_size,
                worker_type=transfer_manager.THREAD,
                max_workers=self.chunk_workers,
                crc32c_checksum=True,
            )
            on_bytes(obj.size)
            return
        blob = self.bucket.blob(obj.key)
        with open(path, "wb") as f:
            # The engine checks the MD5 from the listing; objects without one (composites) are
            # checked by the library's CRC32C.
            blob.download_to_file(_Counting(f, on_bytes), checksum=None if obj.md5 else "crc32c")

    def md5_applies(self, obj: RemoteObject) -> bool:
        return True

    def classify(self, exc: BaseException) -> StorageError | None:
        if isinstance(exc, gexc.NotFound):
            return SourceNotFound(f"{self.what}: not found")
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized | GoogleAuthError):
            return AccessDenied(f"{self.what}: access denied ({type(exc).__name__})")
        if type(exc).__name__ == "DataCorruption":
            return ChecksumMismatch(f"{self.what}: CRC32C of the download differs from the store's")
        if isinstance(exc, gexc.ServerError | gexc.TooManyRequests):
            return None
        if isinstance(exc, gexc.GoogleAPICallError):
            return TransferFailed(f"{self.what}: {type(exc).__name__}")
        if isinstance(exc, OSError) and exc.errno:
            return TransferFailed(f"{self.what}: local write failed: {exc.strerror}")
        return None
