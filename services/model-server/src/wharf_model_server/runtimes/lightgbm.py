"""LightGBM boosters (.bst, .txt)."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb

from wharf_model_server.model import Model
from wharf_model_server.utils import get_predict_input, get_predict_response
from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import InferRequest, InferResponse


class LightGBMModel(Model):
    def __init__(self, name: str, model_file: str, nthread: int = 1) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.nthread = nthread
        self._booster: lgb.Booster | None = None

    def load(self) -> bool:
        self._booster = lgb.Booster(model_file=self.model_file)
        self.ready = True
        return self.ready

    def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        assert self._booster is not None
        instances = get_predict_input(payload)
        try:
            result = self._booster.predict(instances, num_threads=self.nthread)
        except Exception as exc:
            raise InvalidInput(f"model {self.name!r} cannot predict on this input: {exc}") from exc
        return get_predict_response(payload, result, self.name)
