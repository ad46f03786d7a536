"""wharf_api: KServe-compatible resource models, defaulting, validation, runtime selection."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from wharf_api.defaulting import default
from wharf_api.errors import NoSupportingRuntimeError, WharfValidationError
from wharf_api.manifest_yaml import KubeYamlLoader
from wharf_api.registry import ResourceInfo, iter_resources, parse_object
from wharf_api.resources import Resource
from wharf_api.runtime_selection import select_runtime
from wharf_api.validation import validate, validate_update, validation_errors


def load_documents(source: str | Path) -> list[dict[str, Any]]:
    """The non-empty mappings of a multi-document YAML text, or of a file.

    A Path is always read; a str is read as a file when it is one line naming an existing
    `.yaml`/`.yml` file, and parsed as YAML text otherwise. Numbers are read as kubectl reads
    them (`1e9` is a number).
    """
    if isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml")):
        candidate = Path(source)
        if candidate.is_file():
            source = candidate
    text = source.read_text() if isinstance(source, Path) else source
    docs: list[dict[str, Any]] = []
    for doc in yaml.load_all(text, Loader=KubeYamlLoader):  # numbers as kubectl reads them
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise WharfValidationError("", "", "", "a YAML document must be a mapping")
        docs.append(dict(doc))
    return docs


__all__ = [
    "NoSupportingRuntimeError",
    "Resource",
    "ResourceInfo",
    "WharfValidationError",
    "default",
    "iter_resources",
    "load_documents",
    "parse_object",
    "select_runtime",
    "validate",
    "validate_update",
    "validation_errors",
]
