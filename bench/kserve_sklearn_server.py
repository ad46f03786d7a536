"""KServe's sklearn runtime, for the benchmark: runs in the bench's KServe virtual environment.

PyPI has the `kserve` wheel (model server included) but not KServe's `sklearnserver` runtime
package, which ships only inside KServe's container image. This file does what that runtime's
`SKLearnModel` and `__main__` do: joblib-load the single model file in `--model_dir`, answer V1 and
V2 through `kserve.utils.utils.get_predict_input` / `get_predict_response`, and start
`kserve.ModelServer` with KServe's own argument parser and defaults. The only difference is that
the model directory is read directly instead of through `kserve.storage.Storage.download`, which
is a no-op for a local path and lives in the separate `kserve-storage` package.

Run: `<kserve-venv>/bin/python bench/kserve_sklearn_server.py --model_name iris --model_dir DIR
--http_port P --grpc_port G`.
"""

import argparse
import os
import pathlib
from typing import Any

import joblib  # type: ignore[import-untyped, import-not-found, unused-ignore]
import kserve
from kserve import logging as kserve_logging
from kserve.errors import (
    InferenceError,
    ModelMissingError,
)
from kserve.utils.utils import (
    get_predict_input,
    get_predict_response,
)

MODEL_EXTENSIONS = (".joblib", ".pkl", ".pickle")
ENV_PREDICT_PROBA = "PREDICT_PROBA"


class SKLearnModel(kserve.Model):  # type: ignore[misc, unused-ignore]
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.ready = False

    def load(self) -> bool:
        model_path = pathlib.Path(self.model_dir)
        model_files = [
            p for p in model_path.iterdir() if p.is_file() and p.name.endswith(MODEL_EXTENSIONS)
        ]
        if not model_files:
            raise ModelMissingError(model_path)
        if len(model_files) > 1:
            raise RuntimeError(f"more than one model file in {model_path}: {model_files}")
        self._model = joblib.load(model_files[0])
        self.ready = True
        return self.ready

    # Sync, like KServe's runtime: KServe calls it directly on the event loop.
    def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        try:
            instances = get_predict_input(payload)
            if os.environ.get(ENV_PREDICT_PROBA, "false").lower() == "true" and hasattr(
                self._model, "predict_proba"
            ):
                result = self._model.predict_proba(instances)
            else:
                result = self._model.predict(instances)
            return get_predict_response(payload, result, self.name)
        except Exception as e:
            raise InferenceError(str(e)) from e


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="directory holding the model file")
    args, _ = parser.parse_known_args()
    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    model = SKLearnModel(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
