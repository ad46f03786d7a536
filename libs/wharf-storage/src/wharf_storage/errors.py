"""Failure classes of a download, each with its own process exit code.

Every error carries a one-line `reason` that is safe to print: it never holds credentials
(URIs in it are redacted by the code that raises it).
"""

from __future__ import annotations

from typing import ClassVar


class StorageError(Exception):
    """A download failed. `exit_code` is what the storage initializer exits with."""

    exit_code: ClassVar[int] = 1

    def __init__(self, reason: str) -> None:
        # One line, whatever the underlying library said.
        self.reason = " ".join(reason.split())
        super().__init__(self.reason)


class UnsupportedUri(StorageError):
    """The URI's scheme or shape is not one Wharf can download."""

    exit_code = 3


class SourceNotFound(StorageError):
    """The bucket, container, object, prefix, repository or file does not exist (or is empty)."""

    exit_code = 4


class AccessDenied(StorageError):
    """The store refused the credentials (or their absence)."""

    exit_code = 5


class UnsafePath(StorageError):
    """An object key, archive member or link would land outside the destination folder."""

    exit_code = 6


class ChecksumMismatch(StorageError):
    """A downloaded file's size or checksum differs from what the store advertised."""

    exit_code = 7


class TransferFailed(StorageError):
    """The transfer kept failing after retries (network, server errors, local disk)."""

    exit_code = 8


class InvalidArchive(StorageError):
    """A downloaded .zip/.tar/.tar.gz/.tgz could not be read."""

    exit_code = 9


class DestinationUnusable(StorageError):
    """DEST_DIR cannot hold the model: it is a file, lies under a file, or cannot be created."""

    exit_code = 10


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "unexpected error": 1,
    "usage": 2,
    **{
        cls.__name__: cls.exit_code
        for cls in (
            UnsupportedUri,
            SourceNotFound,
            AccessDenied,
            UnsafePath,
            ChecksumMismatch,
            TransferFailed,
            InvalidArchive,
            DestinationUnusable,
        )
    },
}
