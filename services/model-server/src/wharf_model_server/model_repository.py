"""The set of models a server holds, shaped like KServe's ``ModelRepository``.

Subclasses override ``load_model(name)`` to build a model from ``models_dir/<name>``; the
repository extension (``/v2/repository/models/{name}/load``) calls ``load(name)``.
"""

from __future__ import annotations

import os

from wharf_model_server.model import BaseKServeModel

MODEL_MOUNT_DIRS = "/mnt/models"


class ModelRepository:
    def __init__(self, models_dir: str = MODEL_MOUNT_DIRS) -> None:
        self.models: dict[str, BaseKServeModel] = {}
        self.models_dir = models_dir

    def set_models_dir(self, models_dir: str) -> None:
        self.models_dir = models_dir

    def model_names_on_disk(self) -> list[str]:
        if not os.path.isdir(self.models_dir):
            return []
        return sorted(
            entry
            for entry in os.listdir(self.models_dir)
            if os.path.isdir(os.path.join(self.models_dir, entry)) and not entry.startswith(".")
        )

    def load_models(self) -> None:
        for name in self.model_names_on_disk():
            self.load(name)

    def get_model(self, name: str) -> BaseKServeModel | None:
        return self.models.get(name)

    def get_models(self) -> dict[str, BaseKServeModel]:
        return self.models

    async def is_model_ready(self, name: str) -> bool:
        model = self.models.get(name)
        return False if model is None else await model.healthy()

    def update(self, model: BaseKServeModel, name: str | None = None) -> None:
        self.models[name or model.name] = model

    def load(self, name: str) -> bool:
        return self.load_model(name)

    def load_model(self, name: str) -> bool:
        """Builds and registers ``name`` from ``models_dir``; this base class knows no format."""
        return False

    def unload(self, name: str) -> None:
        model = self.models.pop(name, None)
        if model is None:
            raise KeyError(f"model {name!r} does not exist")
        model.stop()
        model.stop_engine()
