"""`wharf validate`: parse, default and validate KServe manifests, one result line per object."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wharf_api import WharfValidationError, default, load_documents, parse_object, validation_errors

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Result:
    """The outcome for one object (or for a file that could not be read as objects)."""

    source: Path
    ok: bool
    lines: tuple[str, ...]


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """The files to read: each file as given, each folder's manifests recursively, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
            )
        else:
            files.append(path)
    return files


def _label(document: dict[str, Any]) -> str:
    kind = document.get("kind") or "<no kind>"
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{kind}/{name or '<no name>'}"


def check_file(path: Path) -> Iterator[Result]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        yield Result(path, False, (f"ERROR {path}: cannot read: {exc}",))
        return
    yield from check_text(text, str(path))


def check_text(text: str, source: str) -> Iterator[Result]:
    """The results for a manifest text; `source` (a file name, `<stdin>`) names it in each line."""
    path = Path(source)
    try:
        documents = load_documents(text + "\n")
    except yaml.YAMLError as exc:
        yield Result(path, False, (f"ERROR {source}: not valid YAML: {exc}".replace("\n", " "),))
        return
    except WharfValidationError as exc:
        yield Result(path, False, (f"ERROR {source}: {exc}",))
        return
    for document in documents:
        if not isinstance(document, dict):
            yield Result(path, False, (f"ERROR {source}: a document is not a mapping",))
            continue
        label = _label(document)
        try:
            errors = validation_errors(default(parse_object(document)))
        except WharfValidationError as exc:
            errors = [exc]
        if errors:
            yield Result(
                path,
                False,
                tuple(f"INVALID {label} ({source}): {e.field_path}: {e.message}" for e in errors),
            )
        else:
            yield Result(path, True, (f"OK {label} ({source})",))
