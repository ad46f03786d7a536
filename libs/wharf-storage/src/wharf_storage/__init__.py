"""wharf_storage: download a model URI into a local folder, atomically, resumably, safely."""

from wharf_storage.download import DownloadResult, download, remove
from wharf_storage.errors import (
    AccessDenied,
    ChecksumMismatch,
    DestinationUnusable,
    InvalidArchive,
    SourceNotFound,
    StorageError,
    TransferFailed,
    UnsafePath,
    UnsupportedUri,
)
from wharf_storage.progress import Progress, Retry
from wharf_storage.uri import StorageUri, parse_uri, redact_uri

__all__ = [
    "AccessDenied",
    "ChecksumMismatch",
    "DestinationUnusable",
    "DownloadResult",
    "InvalidArchive",
    "Progress",
    "Retry",
    "SourceNotFound",
    "StorageError",
    "StorageUri",
    "TransferFailed",
    "UnsafePath",
    "UnsupportedUri",
    "download",
    "parse_uri",
    "redact_uri",
    "remove",
]
