"""scikit-learn models saved with joblib or pickle."""

from __future__ import annotations

import os
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import sklearn  # type: ignore[import-untyped]

from wharf_model_server.model import Model
from wharf_model_server.utils import get_predict_input, get_predict_response
from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import InferRequest, InferResponse


class SKLearnModel(Model):
    def __init__(self, name: str, model_file: str) -> None:
        super().__init__(name)
        self.model_file = model_file
        self._model: Any = None
        # KServe's sklearnserver switch: answer class probabilities instead of labels.
        self.predict_proba = os.environ.get("PREDICT_PROBA", "false").lower() == "true"

    def load(self) -> bool:
        self._model = joblib.load(self.model_file)
        self.ready = True
        return self.ready

    def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        instances = get_predict_input(payload)
        if (
            isinstance(instances, np.ndarray)
            and instances.dtype.kind in "fc"
            and not np.isfinite(instances).all()
        ):
            raise InvalidInput(f"model {self.name!r}: the input holds NaN or infinity")
        try:
            # Finiteness is checked above, once; sklearn's own check is a large part of a
            # small model's predict time.
            with sklearn.config_context(assume_finite=True):
                if self.predict_proba:
                    result = self._model.predict_proba(instances)
                else:
                    result = self._model.predict(instances)
        except Exception as exc:  # the model rejects the input (feature count, dtype, ...)
            raise InvalidInput(f"model {self.name!r} cannot predict on this input: {exc}") from exc
        return get_predict_response(payload, result, self.name)
