"""``--workers 2``: two processes serve one REST and one gRPC port, ``/metrics`` adds up both,
and SIGTERM to the parent stops them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from ms_testkit import ServerProcess, free_port, wait_ready

from wharf_protocol.grpc import pb, pb_grpc

BODY = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
DEADLINE_S = 120


def worker_counts(server: ServerProcess) -> dict[int, float]:
    """Requests served per worker pid, from the per-worker gauge in /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    pattern = r'^wharf_worker_inference_count\{pid="(\d+)"\} (\S+)$'
    return {int(pid): float(n) for pid, n in re.findall(pattern, text, re.MULTILINE)}


def total_count(server: ServerProcess, protocol: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    pattern = rf'^kserve_inference_count_total\{{[^}}]*protocol="{protocol}"[^}}]*\}} (\S+)$'
    return sum(float(n) for n in re.findall(pattern, text, re.MULTILINE))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def two_workers(model_repository: Path, tmp_path: Path) -> ServerProcess:
    http_port, grpc_port = free_port(), free_port()
    cmd = [
        sys.executable, "-m", "wharf_model_server", "--model_name", "iris",
        "--model_dir", str(model_repository / "sklearn-iris"), "--workers", "2",
        "--http_port", str(http_port), "--grpc_port", str(grpc_port),
    ]  # fmt: skip
    log_path = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    server = ServerProcess(proc, http_port, grpc_port, log_path)
    try:
        wait_ready(server)
        yield server  # type: ignore[misc]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_workers_serve_rest_and_grpc_and_stop_on_sigterm(two_workers: ServerProcess) -> None:
    server = two_workers
    sent = 0
    deadline = time.monotonic() + DEADLINE_S
    # A new connection per request: the kernel spreads connections over the workers.
    while len([n for n in worker_counts(server).values() if n > 0]) < 2:
        assert time.monotonic() < deadline, f"one worker served everything:\n{server.log()}"
        with httpx.Client() as client:
            reply = client.post(f"{server.url}/v1/models/iris:predict", json=BODY)
        assert reply.status_code == 200, f"{reply.text}\n{server.log()}"
        assert reply.json() == {"predictions": [1, 1]}
        sent += 1
    counts = worker_counts(server)
    assert len(counts) == 2
    assert server.proc.pid not in counts, "the parent supervises; it serves nothing"
    # The REST count in /metrics is the sum over both workers, whichever one answers.
    assert total_count(server, "v1") == sent
    assert sum(counts.values()) == sent

    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 4])
    tensor.contents.fp32_contents.extend(x for row in BODY["instances"] for x in row)
    with grpc.insecure_channel(server.grpc_host) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert reply.model_name == "iris"
    assert list(reply.outputs[0].shape) == [2]
    assert total_count(server, "grpc-v2") == 1

    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log()
    assert not [pid for pid in counts if alive(pid)], "every worker stopped with the parent"


def test_a_worker_that_fails_at_start_stops_the_server_with_its_status(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "wharf_model_server", "--model_dir", str(tmp_path / "missing"),
        "--workers", "2", "--http_port", str(free_port()), "--grpc_port", str(free_port()),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == 1, result.stderr
    assert "does not exist" in result.stderr
