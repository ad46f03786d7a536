"""A custom model server written the KServe way; its predict waits for a release file."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from wharf_model_server import Model, ModelServer, model_server


class SlowModel(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        Path(os.environ["SLOW_ENTERED"]).touch()
        release = Path(os.environ["SLOW_RELEASE"])
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"predictions": payload["instances"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    args, _ = parser.parse_known_args()
    ModelServer().start([SlowModel(args.model_name)])
