"""Test helpers: free ports, servers in a subprocess or a thread, models trained here."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from wharf_e2e.testing import free_port
from wharf_model_server import ModelServer
from wharf_model_server.model import BaseKServeModel
from wharf_model_server.model_server import parse_args

STARTUP_SECONDS = 120  # imports of sklearn/xgboost/lightgbm/onnxruntime on a busy 2-core box


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_host(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_host(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def wait_ready(server: ServerProcess, path: str = "/v2/health/ready") -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server on {server.url} not ready in {STARTUP_SECONDS}s")


class ThreadServer:
    """A ModelServer on its own event loop in a thread, on free ports."""

    def __init__(self, models: Sequence[BaseKServeModel], **kwargs: Any) -> None:
        self.models = models
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.server = ModelServer(
            http_port=self.http_port,
            grpc_port=self.grpc_port,
            args=parse_args([]),
            configure_logging=False,
            host="127.0.0.1",
            **kwargs,
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_host(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_host(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _run(self) -> None:
        try:
            asyncio.run(self.server.start_async(self.models))
        except BaseException as exc:
            self._error = exc

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._thread.join(60)


# -- models trained here ----------------------------------------------------------------------


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def _onnx_linear(weights: np.ndarray, bias: np.ndarray, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["scores"]),
        ],
        "iris-linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, weights.shape[1]])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_model_repository(root: Path) -> Path:
    """One subdirectory per framework, each holding an iris classifier trained here."""
    import joblib
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    for name in ("sklearn-iris", "xgboost-iris", "lightgbm-iris", "onnx-iris"):
        (root / name).mkdir()
    lr = LogisticRegression(max_iter=1000).fit(x, y)
    joblib.dump(lr, root / "sklearn-iris" / "model.joblib")
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "nthread": 1},
        xgb.DMatrix(x, label=y),
        num_boost_round=5,
    )
    booster.save_model(str(root / "xgboost-iris" / "model.json"))
    lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, label=y),
        num_boost_round=5,
    ).save_model(str(root / "lightgbm-iris" / "model.txt"))
    _onnx_linear(lr.coef_.T, lr.intercept_, root / "onnx-iris" / "model.onnx")
    return root


def framework_predict(root: Path, name: str, x: np.ndarray) -> np.ndarray:
    """The framework's own prediction for the model in ``root/name``."""
    if name == "sklearn-iris":
        import joblib

        return np.asarray(joblib.load(root / name / "model.joblib").predict(x))
    if name == "xgboost-iris":
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(root / name / "model.json"))
        return np.asarray(booster.predict(xgb.DMatrix(x)))
    if name == "lightgbm-iris":
        import lightgbm as lgb

        return np.asarray(lgb.Booster(model_file=str(root / name / "model.txt")).predict(x))
    import onnxruntime as ort

    session = ort.InferenceSession(str(root / name / "model.onnx"))
    return np.asarray(session.run(None, {"input": x})[0])
