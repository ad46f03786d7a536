"""The errors a model may raise (``kserve.errors`` counterparts) and the server's own.

The protocol's error types carry their REST status and gRPC code.
"""

from __future__ import annotations

import grpc

from wharf_protocol.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    Unsupported,
    WharfError,
)

__all__ = [
    "InferenceError",
    "InvalidInput",
    "ModelMissingError",
    "ModelNotFound",
    "ModelNotReady",
    "NoModelReady",
    "RequestTooLarge",
    "ServerNotLive",
    "ServerNotReady",
    "Unsupported",
    "WharfError",
]


class ModelMissingError(Exception):
    """No model file in a directory: the server falls back to multi-model mode."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no model file found in {path}")
        self.path = path


class NoModelReady(RuntimeError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"none of the models {names} is ready")


MAX_BODY_FLAG = "--max_request_body_bytes"


class RequestTooLarge(WharfError):
    """A request body above the server's limit (413), named with the way to raise it."""

    http_status = 413
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, limit: int, size: int | None = None) -> None:
        from wharf_protocol.limits import MAX_MESSAGE_BYTES_ENV

        what = "the request body" if size is None else f"the request body ({size} bytes)"
        super().__init__(
            f"{what} exceeds the limit of {limit} bytes; raise it with {MAX_BODY_FLAG} "
            f"or ${MAX_MESSAGE_BYTES_ENV}"
        )
        self.limit = limit
