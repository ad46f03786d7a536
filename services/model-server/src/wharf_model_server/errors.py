"""The errors a model may raise (``kserve.errors`` counterparts) and the server's own.

The protocol's error types carry their REST status and gRPC code.
"""

from __future__ import annotations

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
