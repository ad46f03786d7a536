"""Builds the built-in model for a directory and serves a directory of them (multi-model mode)."""

from __future__ import annotations

import logging
import os
import time

from wharf_model_server import metrics
from wharf_model_server.model import Model
from wharf_model_server.model_repository import ModelRepository
from wharf_model_server.runtimes.detection import ModelFile, find_model_file

logger = logging.getLogger("wharf.runtimes")


def model_for_file(name: str, model_file: ModelFile, nthread: int = 1) -> Model:
    # Imports stay inside the branches: a server for one format never pays for the others.
    if model_file.model_format == "sklearn":
        from wharf_model_server.runtimes.sklearn import SKLearnModel

        return SKLearnModel(name, model_file.path)
    if model_file.model_format == "xgboost":
        from wharf_model_server.runtimes.xgboost import XGBoostModel

        return XGBoostModel(name, model_file.path, nthread)
    if model_file.model_format == "lightgbm":
        from wharf_model_server.runtimes.lightgbm import LightGBMModel

        return LightGBMModel(name, model_file.path, nthread)
    if model_file.model_format == "onnx":
        from wharf_model_server.runtimes.onnx import ONNXModel

        return ONNXModel(name, model_file.path, nthread)
    raise ValueError(f"unknown model format {model_file.model_format!r}")


def load_model_dir(
    name: str, model_dir: str, model_format: str | None = None, nthread: int = 1
) -> Model:
    """Finds the model file, builds its runtime and loads it, recording the load time."""
    start = time.perf_counter()
    ok = False
    try:
        model = model_for_file(name, find_model_file(model_dir, model_format), nthread)
        model.load()
        ok = model.ready
        return model
    finally:
        metrics.observe_model_load(name, ok, time.perf_counter() - start)


class RuntimeModelRepository(ModelRepository):
    """One model per subdirectory of ``models_dir``, each served by its built-in runtime."""

    def __init__(self, models_dir: str, model_format: str | None = None, nthread: int = 1) -> None:
        super().__init__(models_dir)
        self.model_format = model_format
        self.nthread = nthread

    def load_model(self, name: str) -> bool:
        model = load_model_dir(
            name, os.path.join(self.models_dir, name), self.model_format, self.nthread
        )
        self.update(model)
        logger.info("loaded model %s (%s)", name, type(model).__name__)
        return model.ready
