"""Parse a storage URI into its parts (pure: no I/O, no environment)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from wharf_storage.errors import UnsupportedUri

Scheme = Literal["s3", "gs", "azure", "hf", "http", "https", "pvc", "file", "oci"]

# KServe's Azure blob patterns: the public cloud and the zNN "dnszone" endpoints.
_AZURE_BLOB_HOST = re.compile(
    r"^(?P<account>[a-z0-9]+)\.(?:blob\.core\.windows\.net|z\d+\.blob\.storage\.azure\.net)$",
    re.IGNORECASE,
)
_AZURE_FILE_HOST = re.compile(r"^[a-z0-9]+\.file\.core\.windows\.net$", re.IGNORECASE)
_UNSUPPORTED = {
    "hdfs": "hdfs:// and webhdfs:// are not supported by Wharf",
    "webhdfs": "hdfs:// and webhdfs:// are not supported by Wharf",
    "modelscope": "modelscope:// is not supported by Wharf",
}


@dataclass(frozen=True)
class StorageUri:
    """A parsed URI. `key` is the object key or prefix (no leading slash) or the local path.

    `raw` and `query` may hold credentials (an Azure SAS, a signed URL): they are kept out of
    `repr`; print `redacted` instead.
    """

    scheme: Scheme
    raw: str = field(repr=False)
    bucket: str = ""  # s3/gs bucket, pvc claim name
    key: str = ""  # object key or prefix, path inside the claim, local path
    account: str = ""  # Azure storage account
    container: str = ""  # Azure container
    repo: str = ""  # hf repository id ("org/model"), oci repository
    revision: str | None = None  # hf revision, oci tag or digest
    host: str = ""  # http(s)/azure/oci host (with port)
    query: str = field(default="", repr=False)

    @property
    def redacted(self) -> str:
        return redact_uri(self.raw)

    @property
    def archive_kind(self) -> str | None:
        """For http(s): the archive type named by the path's suffix, if any."""
        if self.scheme not in ("http", "https"):
            return None
        return archive_kind(self.key)


def archive_kind(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if lower.endswith(".tar"):
        return "tar"
    return None


def redact_uri(uri: str) -> str:
    """The URI without what may be a secret: user info and query string values."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable uri>"
    if not parts.scheme or "://" not in uri:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "<redacted>@" + netloc.rsplit("@", 1)[1]
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        text += "?<redacted>"
    return text


def _bucket_and_key(uri: str, rest: str, what: str) -> tuple[str, str]:
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UnsupportedUri(f"{redact_uri(uri)}: no {what} name")
    return bucket, key.lstrip("/")


def parse_uri(uri: str) -> StorageUri:
    """Split `uri` into its parts; raise UnsupportedUri for schemes Wharf cannot download."""
    if not uri or not uri.strip():
        raise UnsupportedUri("empty storage URI")
    uri = uri.strip()
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return StorageUri(scheme="file", raw=uri, key=uri)
    scheme = scheme.lower()
    if scheme == "s3":
        bucket, key = _bucket_and_key(uri, rest, "bucket")
        return StorageUri(scheme="s3", raw=uri, bucket=bucket, key=key)
    if scheme == "gs":
        bucket, key = _bucket_and_key(uri, rest, "bucket")
        return StorageUri(scheme="gs", raw=uri, bucket=bucket, key=key)
    if scheme == "pvc":
        claim, key = _bucket_and_key(uri, rest, "PersistentVolumeClaim")
        return StorageUri(scheme="pvc", raw=uri, bucket=claim, key=key)
    if scheme == "file":
        path = unquote(urlsplit(uri).path) if rest.startswith("/") else rest
        if not path:
            raise UnsupportedUri(f"{uri}: no path")
        return StorageUri(scheme="file", raw=uri, key=path)
    if scheme == "hf":
        return _parse_hf(uri, rest)
    if scheme in ("http", "https"):
        return _parse_http(uri, scheme)
    if scheme == "oci":
        return _parse_oci(uri, rest)
    reason = _UNSUPPORTED.get(scheme, f"unsupported URI scheme {scheme!r}")
    raise UnsupportedUri(f"{redact_uri(uri)}: {reason}")


_OCI_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_OCI_REPO = re.compile(rf"^{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*$")
_OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_OCI_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")


def _parse_oci(uri: str, rest: str) -> StorageUri:
    """`oci://<registry>[:port]/<repository>[:<tag>|@<digest>]` (default tag `latest`)."""
    shape = "expected oci://<registry>/<repository>[:<tag>|@<digest>]"
    host, _, path = rest.partition("/")
    if not host or not path:
        raise UnsupportedUri(f"{redact_uri(uri)}: {shape}")
    if "@" in path:
        repo, _, ref = path.partition("@")
        if ":" in repo.rsplit("/", 1)[-1]:
            repo = repo.rsplit(":", 1)[0]  # name:tag@digest: the digest wins, as in Docker
        if not _OCI_DIGEST.match(ref):
            raise UnsupportedUri(f"{redact_uri(uri)}: {ref!r} is not a sha256/sha512 digest")
    else:
        last = path.rsplit("/", 1)[-1]
        repo, ref = path.rsplit(":", 1) if ":" in last else (path, "latest")
        if not _OCI_TAG.match(ref):
            raise UnsupportedUri(f"{redact_uri(uri)}: {ref!r} is not a valid tag")
    if not _OCI_REPO.match(repo):
        raise UnsupportedUri(f"{redact_uri(uri)}: {repo!r} is not a valid repository name; {shape}")
    return StorageUri(scheme="oci", raw=uri, host=host, repo=repo, revision=ref)


def _parse_hf(uri: str, rest: str) -> StorageUri:
    repo, _, revision = rest.partition(":")
    repo = repo.strip("/")
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise UnsupportedUri(f"{uri}: expected hf://<owner>/<model>[:<revision>]")
    return StorageUri(scheme="hf", raw=uri, repo=repo, revision=revision or None)


def _parse_http(uri: str, scheme: str) -> StorageUri:
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise UnsupportedUri(f"{redact_uri(uri)}: {exc}") from None
    if not host:
        raise UnsupportedUri(f"{redact_uri(uri)}: no host")
    netloc = host if port is None else f"{host}:{port}"
    path = unquote(parts.path)
    match = _AZURE_BLOB_HOST.match(host)
    if match:
        container, _, prefix = path.lstrip("/").partition("/")
        if not container:
            raise UnsupportedUri(f"{redact_uri(uri)}: no Azure container name")
        return StorageUri(
            scheme="azure",
            raw=uri,
            account=match.group("account"),
            container=container,
            key=prefix,
            host=netloc,
            query=parts.query,
        )
    if _AZURE_FILE_HOST.match(host):
        raise UnsupportedUri(f"{redact_uri(uri)}: Azure file shares are not supported by Wharf")
    http_scheme: Scheme = "https" if scheme == "https" else "http"
    return StorageUri(scheme=http_scheme, raw=uri, host=netloc, key=path, query=parts.query)
