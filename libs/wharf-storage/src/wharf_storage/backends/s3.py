"""S3 (and S3-compatible stores) through boto3."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config

from wharf_storage.envs import env_flag, env_int, s3_endpoint
from wharf_storage.errors import AccessDenied, SourceNotFound, StorageError, TransferFailed
from wharf_storage.objects import RemoteObject, remote_objects
from wharf_storage.uri import StorageUri

MiB = 1024 * 1024
# Objects up to this size are fetched with one GET (no HEAD first, as download_file does);
# larger ones in ranged parts by boto3's transfer manager.
SINGLE_GET_MAX = 16 * MiB
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "403",
    "AllAccessDisabled",
}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404"}


def plain_md5(etag: str | None) -> str | None:
    """The MD5 in an ETag, when it is one (single-part uploads; multipart ETags have a `-`)."""
    if not etag:
        return None
    etag = etag.strip('"')
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower()):
        return etag.lower()
    return None


def make_client(env: Mapping[str, str], *, pool: int) -> Any:
    config = Config(
        signature_version=UNSIGNED if env_flag(env, "awsAnonymousCredential", False) else None,
        retries={"max_attempts": env_int(env, "S3_MAX_ATTEMPTS", 5), "mode": "standard"},
        connect_timeout=env_int(env, "S3_CONNECT_TIMEOUT", 15),
        read_timeout=env_int(env, "S3_READ_TIMEOUT", 60),
        max_pool_connections=pool,
        s3={
            "addressing_style": "virtual"
            if env_flag(env, "S3_USER_VIRTUAL_BUCKET", False)
            else "auto",
            "use_accelerate_endpoint": env_flag(env, "S3_USE_ACCELERATE", False),
        },
    )
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
    )
    verify: bool | str = env_flag(env, "S3_VERIFY_SSL", True)
    if verify and env.get("AWS_CA_BUNDLE"):
        verify = env["AWS_CA_BUNDLE"]
    return session.client("s3", endpoint_url=s3_endpoint(env), config=config, verify=verify)


class S3Source:
    def __init__(self, uri: StorageUri, env: Mapping[str, str], *, workers: int) -> None:
        self.uri = uri
        self.what = uri.redacted
        self.part_concurrency = env_int(env, "WHARF_S3_PART_CONCURRENCY", 8)
        self.client = make_client(env, pool=max(10, workers * self.part_concurrency))
        self.transfer_config = TransferConfig(
            multipart_threshold=SINGLE_GET_MAX,
            multipart_chunksize=env_int(env, "WHARF_S3_PART_MIB", 16) * MiB,
            max_concurrency=self.part_concurrency,
            use_threads=True,
        )

    def _pages(self) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.uri.bucket, Prefix=self.uri.key.rstrip("/"))

    def list_objects(self) -> list[RemoteObject]:
        try:
            entries = [
                (o["Key"], int(o["Size"]), plain_md5(o.get("ETag")))
                for page in self._pages()
                for o in page.get("Contents", [])
            ]
        except Exception as exc:
            raise self.classify(exc) or TransferFailed(
                f"{self.what}: listing failed: {type(exc).__name__}"
            ) from None
        return remote_objects(entries, self.uri.key)

    def fetch(self, obj: RemoteObject, path: Path, on_bytes: Callable[[int], None]) -> None:
        if obj.size <= SINGLE_GET_MAX:
            body = self.client.get_object(Bucket=self.uri.bucket, Key=obj.key)["Body"]
            with open(path, "wb") as f:
                for chunk in body.iter_chunks(chunk_size=MiB):
                    f.write(chunk)
                    on_bytes(len(chunk))
            return
        self.client.download_file(
            self.uri.bucket, obj.key, str(path), Config=self.transfer_config, Callback=on_bytes
        )

    def md5_applies(self, obj: RemoteObject) -> bool:
        # SSE-KMS and SSE-C objects have ETags that are not the MD5 of the content.
        try:
            head = self.client.head_object(Bucket=self.uri.bucket, Key=obj.key)
        except Exception:
            return True
        return head.get("ServerSideEncryption") != "aws:kms" and not head.get(
            "SSECustomerAlgorithm"
        )

    def classify(self, exc: BaseException) -> StorageError | None:
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return AccessDenied(
                f"{self.what}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "or awsAnonymousCredential=true)"
            )
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _DENIED or status == 403:
                return AccessDenied(f"{self.what}: access denied ({code or status})")
            if code in _MISSING or status == 404:
                return SourceNotFound(f"{self.what}: not found ({code or status})")
            if isinstance(status, int) and (status >= 500 or status in (408, 429)):
                return None
            return TransferFailed(f"{self.what}: {code or status}")
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return TransferFailed(f"{self.what}: invalid request: {type(exc).__name__}")
        if isinstance(exc, OSError) and not isinstance(exc, ConnectionError) and exc.errno:
            # Local disk errors (ENOSPC, EACCES) do not heal by retrying.
            return TransferFailed(f"{self.what}: local write failed: {exc.strerror}")
        return None
