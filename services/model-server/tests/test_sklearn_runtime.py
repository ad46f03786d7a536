"""The scikit-learn runtime in process: predict skips scikit-learn's own finiteness check (the
runtime checks once) and leaves the thread's configuration as it found it; the V2 answer the
built-in runtimes build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
from ms_testkit import iris
from sklearn.linear_model import LogisticRegression

from wharf_model_server.runtimes import sklearn as runtime
from wharf_model_server.runtimes.sklearn import SKLearnModel
from wharf_model_server.utils import as_numpy_output, get_predict_response
from wharf_protocol.datatypes import from_numpy_dtype
from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import InferInput, InferOutput, InferRequest, InferResponse


class _Recorder:
    """A model that records ``assume_finite`` as predict sees it."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def predict(self, x: Any) -> np.ndarray:
        self.seen.append(sklearn.get_config()["assume_finite"])
        return np.zeros(len(x), dtype=np.int64)


def _model(tmp_path: Path, fitted: Any) -> SKLearnModel:
    if isinstance(fitted, _Recorder):  # not picklable by reference from a test module
        model = SKLearnModel("m", "")
        model._model, model.ready = fitted, True
        return model
    joblib.dump(fitted, tmp_path / "model.joblib")
    model = SKLearnModel("m", str(tmp_path / "model.joblib"))
    model.load()
    return model


def _request(x: np.ndarray) -> InferRequest:
    tensor = InferInput("x", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    return InferRequest("m", [tensor])


def test_predict_assumes_finite_and_restores_the_configuration(tmp_path: Path) -> None:
    model = _model(tmp_path, _Recorder())
    x = np.ones((2, 4))
    for outer in (False, True):
        with sklearn.config_context(assume_finite=outer):
            model.predict({"instances": x.tolist()})
            model.predict(_request(x))
            assert sklearn.get_config()["assume_finite"] is outer
    assert model._model.seen == [True] * 4
    assert sklearn.get_config()["assume_finite"] is False


def test_the_configuration_is_restored_when_predict_raises(tmp_path: Path) -> None:
    features, labels = iris()
    fitted = LogisticRegression(max_iter=1000).fit(features, labels)
    model = _model(tmp_path, fitted)
    with pytest.raises(InvalidInput, match="cannot predict"):
        model.predict({"instances": [[1.0, 2.0]]})  # two features for four
    assert sklearn.get_config()["assume_finite"] is False
    with pytest.raises(InvalidInput, match="NaN"):
        model.predict({"instances": [[float("nan"), 1.0, 2.0, 3.0]]})
    answer = model.predict({"instances": features[:3].tolist()})
    assert answer == {"predictions": fitted.predict(features[:3]).tolist()}


def test_without_the_thread_configuration_the_public_context_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "_threadlocal_config", None)
    model = _model(tmp_path, _Recorder())
    model.predict({"instances": [[1.0, 2.0, 3.0, 4.0]]})
    assert model._model.seen == [True]
    assert sklearn.get_config()["assume_finite"] is False


@pytest.mark.parametrize(
    "result",
    [np.array([0, 2], dtype=np.int64), np.array([[0.25, 0.75]]), np.array(["setosa", "virginica"])],
)
def test_a_v2_answer_holds_the_result_as_set_data_from_numpy_would(result: np.ndarray) -> None:
    request = _request(np.ones((2, 4)))
    response = get_predict_response(request, result, "m")
    assert isinstance(response, InferResponse)
    (output,) = response.outputs
    expected = as_numpy_output(result)
    reference = InferOutput("output-0", list(expected.shape), from_numpy_dtype(expected.dtype))
    reference.set_data_from_numpy(expected, binary_data=False)
    assert output == reference
    assert (output.shape, output.datatype, output.parameters) == (
        reference.shape,
        reference.datatype,
        reference.parameters,
    )
    assert output.data is output.as_numpy()
    assert response.model_name == "m" and response.id is not None
