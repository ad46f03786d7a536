"""The built-in ClusterServingRuntimes (the same YAML as `deploy/base/runtimes/`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from wharf_api import load_documents, parse_object
from wharf_api.resources import ClusterServingRuntime


def builtin_runtimes_folder() -> Path:
    """The folder of the built-in runtimes' YAML (for commands that take a path)."""
    return Path(str(resources.files("wharf_local") / "builtin_runtimes"))


def builtin_runtimes() -> list[ClusterServingRuntime]:
    out: list[ClusterServingRuntime] = []
    folder = resources.files("wharf_local") / "builtin_runtimes"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for doc in load_documents(entry.read_text()):
            obj = parse_object(doc)
            if isinstance(obj, ClusterServingRuntime):
                out.append(obj)
    return out
