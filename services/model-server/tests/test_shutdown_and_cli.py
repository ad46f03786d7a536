"""The console script as the bench and ServingRuntimes call it, and graceful SIGTERM: stop
accepting, finish the in-flight request, exit 0."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
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


def _non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent for a UDP connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_bind_host_keeps_a_local_replica_on_loopback(
    model_repository: Path, tmp_path: Path
) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    model_dir = model_repository / "sklearn-iris"
    cmd = [sys.executable, "-m", "wharf_model_server", "--model_name", "iris"]
    server = _start(
        [*cmd, "--model_dir", str(model_dir)], tmp_path / "l", {"WHARF_BIND_HOST": "127.0.0.1"}
    )
    try:
        wait_ready(server)
        for port in (server.http_port, server.grpc_port):
            with socket.socket() as s, pytest.raises(ConnectionRefusedError):
                s.settimeout(5)
                s.connect((address, port))
    finally:
        _stop(server)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_model_dir_that_is_not_a_directory_fails_to_start(tmp_path: Path, kind: str) -> None:
    model_dir = tmp_path / "no-such-models"
    if kind == "file":
        model_dir.write_text("not a directory")
    proc = subprocess.run(
        [sys.executable, "-m", "wharf_model_server", "--model_dir", str(model_dir),
         "--http_port", str(free_port()), "--grpc_port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert str(model_dir) in proc.stderr
    assert ("does not exist" if kind == "missing" else "is not a directory") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_shows_every_default() -> None:
    from wharf_model_server.__main__ import build_arg_parser

    exe = shutil.which("wharf-model-server", path=os.path.dirname(sys.executable))
    assert exe is not None
    text = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120).stdout
    # one block per option: from its "  --flag" line to the next one
    blocks: dict[str, str] = {}
    current = ""
    for line in text.split("options:", 1)[1].splitlines():
        stripped = line.strip()
        if line.startswith("  -"):
            current = stripped.split()[0].rstrip(",")
            blocks[current] = ""
        if current:
            blocks[current] += " " + stripped
    flags = [
        action.option_strings[0]
        for action in build_arg_parser()._actions
        if action.option_strings and action.dest != "help"
    ]
    assert len(flags) > 30
    for flag in flags:
        assert "(default:" in " ".join(blocks[flag].split()), (flag, blocks.get(flag))
    assert "(default: 8080)" in blocks["--http_port"]
    assert "64 MiB" in " ".join(blocks["--grpc_max_receive_message_length"].split())
