"""scikit-learn models saved with joblib or pickle."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import sklearn  # type: ignore[import-untyped]
from sklearn import _config as sklearn_config

from wharf_model_server.model import Model
from wharf_model_server.utils import get_predict_input, get_predict_response
from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import InferRequest, InferResponse

# The calling thread's configuration, which ``set_config`` and ``config_context`` change (a
# scikit-learn without it gets the public context manager).
_threadlocal_config: Callable[[], Any] | None = getattr(
    sklearn_config, "_get_threadlocal_config", None
)


def _assuming_finite(fn: Callable[[Any], Any], instances: Any) -> Any:
    """``fn(instances)`` with scikit-learn's ``assume_finite`` on in this thread.

    ``sklearn.config_context`` copies the whole configuration on the way in and sets all of it
    back on the way out (about 3 us, as much as the finiteness check it skips on a small
    input); here only the one key changes, and is put back."""
    config = _threadlocal_config() if _threadlocal_config is not None else None
    if not isinstance(config, dict):
        with sklearn.config_context(assume_finite=True):
            return fn(instances)
    previous = config.get("assume_finite", False)
    config["assume_finite"] = True
    try:
        return fn(instances)
    finally:
        config["assume_finite"] = previous


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
            method = self._model.predict_proba if self.predict_proba else self._model.predict
            result = _assuming_finite(method, instances)
        except Exception as exc:  # the model rejects the input (feature count, dtype, ...)
            raise InvalidInput(f"model {self.name!r} cannot predict on this input: {exc}") from exc
        return get_predict_response(payload, result, self.name)
