"""The console script as the bench and ServingRuntimes call it, and graceful SIGTERM: stop
accepting, finish the in-flight request, exit 0."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from ms_testkit import ServerProcess, framework_predict, free_port, iris, wait_ready

SCRIPT = Path(__file__).parent / "scripts" / "slow_model_server.py"


def _start(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> ServerProcess:
    http_port, grpc_port = free_port(), free_port()
    cmd = [*cmd, "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
    return ServerProcess(proc, http_port, grpc_port, log_path)


def _stop(server: ServerProcess) -> None:
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def test_console_script_single_model(model_repository: Path, tmp_path: Path) -> None:
    exe = shutil.which("wharf-model-server", path=os.path.dirname(sys.executable))
    assert exe is not None, "the console script is installed next to the interpreter"
    model_dir = model_repository / "sklearn-iris"
    server = _start([exe, "--model_name", "iris", "--model_dir", str(model_dir)], tmp_path / "l")
    try:
        wait_ready(server)
        x, _ = iris()
        body = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32",
                            "data": x[:3].ravel().tolist()}]}  # fmt: skip
        reply = httpx.post(f"{server.url}/v2/models/iris/infer", json=body)
        assert reply.status_code == 200, reply.text
        expected = framework_predict(model_repository, "sklearn-iris", x[:3])
        np.testing.assert_array_equal(reply.json()["outputs"][0]["data"], expected)
        assert httpx.get(f"{server.url}/v1/models").json() == {"models": ["iris"]}
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(60) == 0
    finally:
        _stop(server)


def test_sigterm_finishes_in_flight_request(tmp_path: Path) -> None:
    entered, release = tmp_path / "entered", tmp_path / "release"
    env = {"SLOW_ENTERED": str(entered), "SLOW_RELEASE": str(release)}
    server = _start([sys.executable, str(SCRIPT), "--model_name", "slow"], tmp_path / "l", env)
    try:
        wait_ready(server)
        result: dict[str, Any] = {}

        def call() -> None:
            result["reply"] = httpx.post(
                f"{server.url}/v1/models/slow:predict", json={"instances": [1, 2]}, timeout=60
            )

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 60
        while not entered.exists():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.02)
        os.kill(server.proc.pid, signal.SIGTERM)
        # New connections are refused once shutdown began, while the request is still running.
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{server.url}/v2/health/live", timeout=2)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "server kept accepting after SIGTERM"
            time.sleep(0.05)
        assert server.proc.poll() is None, "exited before the in-flight request finished"
        release.touch()
        caller.join(60)
        assert result["reply"].status_code == 200
        assert result["reply"].json() == {"predictions": [1, 2]}
        assert server.proc.wait(60) == 0
    finally:
        _stop(server)


def test_wrong_model_format_fails_with_a_clear_message(model_repository: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wharf_model_server", "--model_dir",
         str(model_repository / "sklearn-iris"), "--model-format", "tensorflow"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--model_format 'tensorflow' is not one of" in proc.stderr
    assert "Traceback" not in proc.stderr
