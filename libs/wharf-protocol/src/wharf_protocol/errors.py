"""Error types of the data plane, each with its REST status and gRPC code.

Transports map any `WharfError` to `http_status` + `body()` (REST) or `grpc_status` + `message`
(gRPC); everything a malformed request can cause is an `InvalidInput`.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class WharfError(Exception):
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        """The REST error body: `{"error": message}`."""
        return {"error": self.message}


class InvalidInput(WharfError):
    """The request is malformed: bad JSON, missing fields, shape/datatype/data mismatch."""

    http_status = 400
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFound(WharfError):
    http_status = 404
    grpc_status = grpc.StatusCode.NOT_FOUND

    def __init__(self, name: str) -> None:
        super().__init__(f"Model with name {name} does not exist.")
        self.name = name


class ModelNotReady(WharfError):
    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE

    def __init__(self, name: str) -> None:
        super().__init__(f"Model with name {name} is not ready.")
        self.name = name


class ServerNotReady(WharfError):
    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str = "Server is not ready.") -> None:
        super().__init__(message)


class ServerNotLive(WharfError):
    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str = "Server is not live.") -> None:
        super().__init__(message)


class Unsupported(WharfError):
    """A feature the server does not offer (e.g. model versions, explain without explainer)."""

    http_status = 501
    grpc_status = grpc.StatusCode.UNIMPLEMENTED


class InferenceError(WharfError):
    """The model failed on a well-formed request."""

    http_status = 500
    grpc_status = grpc.StatusCode.INTERNAL
