"""Azure Blob Storage through azure-storage-blob (account key, SAS, service principal, anonymous).

`WHARF_AZURE_BLOB_ENDPOINT` (e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite) or
`AZURE_STORAGE_CONNECTION_STRING` replaces the account's public endpoint, so an emulator or a
private endpoint can serve `https://<account>.blob.core.windows.net/...` URIs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient

from wharf_storage.envs import env_int
from wharf_storage.errors import AccessDenied, SourceNotFound, StorageError, TransferFailed
from wharf_storage.objects import RemoteObject, remote_objects
from wharf_storage.uri import StorageUri


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return None


def credential(uri: StorageUri, env: Mapping[str, str]) -> Any:
    """What KServe accepts, in its order: SAS in the URI, service principal, account key."""
    if uri.query:
        return uri.query
    tenant = _first(env, "AZURE_TENANT_ID", "AZ_TENANT_ID")
    client = _first(env, "AZURE_CLIENT_ID", "AZ_CLIENT_ID")
    secret = _first(env, "AZURE_CLIENT_SECRET", "AZ_CLIENT_SECRET")
    if tenant and client and secret:
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(tenant, client, secret)
    key = env.get("AZURE_STORAGE_ACCESS_KEY")
    if key:
        return {"account_name": uri.account, "account_key": key}
    return None  # anonymous: a public container


def container_client(uri: StorageUri, env: Mapping[str, str]) -> ContainerClient:
    conn = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn and not uri.query:
        return ContainerClient.from_connection_string(conn, uri.container)
    endpoint = env.get("WHARF_AZURE_BLOB_ENDPOINT") or f"https://{uri.host}"
    return ContainerClient(endpoint.rstrip("/"), uri.container, credential=credential(uri, env))


class AzureSource:
    def __init__(self, uri: StorageUri, env: Mapping[str, str]) -> None:
        self.uri = uri
        self.what = uri.redacted
        self.client = container_client(uri, env)
        self.chunk_concurrency = env_int(env, "AZURE_MAX_CHUNK_CONCURRENCY", 4)

    def list_objects(self) -> list[RemoteObject]:
        try:
            entries = []
            for blob in self.client.list_blobs(name_starts_with=self.uri.key.rstrip("/") or None):
                md5 = blob.content_settings.content_md5 if blob.content_settings else None
                entries.append((blob.name, int(blob.size), bytes(md5).hex() if md5 else None))
        except Exception as exc:
            raise self.classify(exc) or TransferFailed(
                f"{self.what}: listing failed: {type(exc).__name__}"
            ) from None
        return remote_objects(entries, self.uri.key)

    def fetch(self, obj: RemoteObject, path: Path, on_bytes: Callable[[int], None]) -> None:
        seen = 0

        def hook(current: int, total: int | None) -> None:
            nonlocal seen
            if current > seen:
                on_bytes(current - seen)
                seen = current

        stream = self.client.download_blob(
            obj.key, max_concurrency=self.chunk_concurrency, progress_hook=hook
        )
        with open(path, "wb") as f:
            stream.readinto(f)

    def md5_applies(self, obj: RemoteObject) -> bool:
        return True

    def classify(self, exc: BaseException) -> StorageError | None:
        if isinstance(exc, ResourceNotFoundError):
            return SourceNotFound(f"{self.what}: not found ({_code(exc)})")
        if isinstance(exc, ClientAuthenticationError):
            return AccessDenied(f"{self.what}: access denied ({_code(exc)})")
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            if status in (401, 403):
                return AccessDenied(f"{self.what}: access denied ({_code(exc)})")
            if status >= 500 or status in (408, 429):
                return None
            return TransferFailed(f"{self.what}: {_code(exc)}")
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return None
        if isinstance(exc, OSError) and exc.errno:
            return TransferFailed(f"{self.what}: local write failed: {exc.strerror}")
        if isinstance(exc, ValueError):
            return TransferFailed(f"{self.what}: {type(exc).__name__}")
        return None


def _code(exc: HttpResponseError) -> str:
    # The error code only: messages can echo request URLs with SAS signatures.
    return str(getattr(exc, "error_code", None) or exc.status_code or type(exc).__name__)
