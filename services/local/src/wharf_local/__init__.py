"""The `wharf` CLI and the local runtime."""

from importlib.metadata import version as _version

__version__ = _version("wharf-local")
