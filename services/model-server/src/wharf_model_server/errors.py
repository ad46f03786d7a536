"""Server-side errors beyond the protocol's; the protocol's error types carry the status codes."""

from __future__ import annotations


class ModelMissingError(Exception):
    """No model file in a directory: the server falls back to multi-model mode."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no model file found in {path}")
        self.path = path


class NoModelReady(RuntimeError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"none of the models {names} is ready")
