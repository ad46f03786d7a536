"""Which runtime serves a model directory: decided from ``--model_format`` or the files found."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from wharf_model_server.errors import ModelMissingError

FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "sklearn": (".joblib", ".pkl", ".pickle"),
    "xgboost": (".bst", ".json", ".ubj"),
    "lightgbm": (".bst", ".txt"),
    "onnx": (".onnx",),
}
FORMAT_ALIASES = {
    "scikit-learn": "sklearn",
    "xgb": "xgboost",
    "lgb": "lightgbm",
    "lgbm": "lightgbm",
    "onnxruntime": "onnx",
}
# A README.txt or config.json next to a model must not make the directory ambiguous, so these
# extensions count only when nothing more specific is there.
_WEAK_EXTENSIONS = {".json": "xgboost", ".txt": "lightgbm"}
_STRONG_EXTENSIONS = {
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".onnx": "onnx",
    ".ubj": "xgboost",
    ".bst": "",  # xgboost or lightgbm: decided by the file's first bytes
}


@dataclass(frozen=True)
class ModelFile:
    model_format: str
    path: str


def normalize_format(model_format: str | None) -> str | None:
    if not model_format:
        return None
    name = model_format.strip().lower()
    name = FORMAT_ALIASES.get(name, name)
    if name not in FORMAT_EXTENSIONS:
        known = ", ".join(sorted(FORMAT_EXTENSIONS))
        raise ValueError(f"--model_format {model_format!r} is not one of: {known}")
    return name


def bst_format(head: bytes) -> str:
    """LightGBM writes its boosters as text starting with ``tree``; xgboost's are binary."""
    return "lightgbm" if head.lstrip().startswith(b"tree") else "xgboost"


def choose_model_file(
    directory: str,
    filenames: list[str],
    model_format: str | None,
    head: Callable[[str], bytes],
) -> ModelFile:
    fmt = normalize_format(model_format)
    files = sorted(f for f in filenames if not f.startswith("."))
    if fmt is not None:
        candidates = [f for f in files if os.path.splitext(f)[1].lower() in FORMAT_EXTENSIONS[fmt]]
        return _single(directory, candidates, lambda _f: fmt)

    strong = [f for f in files if os.path.splitext(f)[1].lower() in _STRONG_EXTENSIONS]
    if strong:
        return _single(directory, strong, lambda f: _format_of(f, head))
    weak = [f for f in files if os.path.splitext(f)[1].lower() in _WEAK_EXTENSIONS]
    return _single(directory, weak, lambda f: _WEAK_EXTENSIONS[os.path.splitext(f)[1].lower()])


def _format_of(filename: str, head: Callable[[str], bytes]) -> str:
    ext = os.path.splitext(filename)[1].lower()
    return _STRONG_EXTENSIONS[ext] or bst_format(head(filename))


def _single(directory: str, candidates: list[str], fmt_of: Callable[[str], str]) -> ModelFile:
    if not candidates:
        raise ModelMissingError(directory)
    if len(candidates) > 1:
        raise ValueError(
            f"more than one model file in {directory}: {', '.join(candidates)}; "
            "keep one or pass --model_format"
        )
    return ModelFile(fmt_of(candidates[0]), os.path.join(directory, candidates[0]))


def find_model_file(directory: str, model_format: str | None = None) -> ModelFile:
    if not os.path.isdir(directory):
        raise ModelMissingError(directory)
    filenames = [f for f in os.listdir(directory) if os.path.isfile(os.path.join(directory, f))]

    def head(filename: str) -> bytes:
        with open(os.path.join(directory, filename), "rb") as fh:
            return fh.read(64)

    return choose_model_file(directory, filenames, model_format, head)
