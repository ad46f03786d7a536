"""Shared fixtures: locally built models and real servers on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers live beside the tests; pytest's importlib mode does not put this folder on the path.
sys.path.insert(0, str(Path(__file__).parent))

from ms_testkit import ServerProcess, build_model_repository, free_port, wait_ready


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def multi_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One real ``wharf-model-server`` process in multi-model mode: a model per subdirectory."""
    http_port, grpc_port = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "wharf_model_server",
        "--model_dir",
        str(model_repository),
        "--http_port",
        str(http_port),
        "--grpc_port",
        str(grpc_port),
    ]
    log_path = tmp_path_factory.mktemp("multi-server") / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    server = ServerProcess(proc, http_port, grpc_port, log_path)
    try:
        wait_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
