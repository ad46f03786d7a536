"""A real `wharf-router gateway` process in front of the session's real vLLM workers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from wharf_e2e.testing import free_port, wait_until
from wharf_e2e.vllm_servers import SERVED_MODEL_NAME, VllmWorker

# Generous: the engines share two cores with each other and with the test.
CLIENT_TIMEOUT_S = 300.0


class Gateway:
    """`python -m wharf_router.cli gateway --endpoint URL=ROLE ...` on a free port."""

    def __init__(self, endpoints: list[tuple[VllmWorker, str]], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self._clients: list[openai.OpenAI] = []
        argv = [sys.executable, "-m", "wharf_router.cli", "gateway", "--host", "127.0.0.1",
                "--port", str(self.port), "--scrape-interval", "0.2"]  # fmt: skip
        for worker, role in endpoints:
            argv += ["--endpoint", f"{worker.url}={role}"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._ready, f"the gateway on {self.port} (log {log})", 60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"the gateway exited with {self.process.returncode}: "
                f"{self.log.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            models = httpx.get(f"{self.url}/v1/models", timeout=5).json()
            return any(m["id"] == SERVED_MODEL_NAME for m in models["data"])
        return False

    def client(self) -> openai.OpenAI:
        # No client retries: a request the gateway failed must fail the test.
        client = openai.OpenAI(
            base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_S
        )
        self._clients.append(client)
        return client

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text

    def stop(self) -> None:
        # Closed here, not left to the garbage collector: a failed test's traceback keeps its
        # client alive until the session's final collection, where the order of finalizers
        # lets a pooled socket report itself unclosed (an error under filterwarnings=error).
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[[list[tuple[VllmWorker, str]]], Gateway]]:
    """Starts gateways in front of the given (worker, role) pairs; all stopped after the test."""
    started: list[Gateway] = []

    def start(endpoints: list[tuple[VllmWorker, str]]) -> Gateway:
        gateway = Gateway(endpoints, tmp_path / f"gateway-{len(started)}.log")
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def worker_client() -> Iterator[Callable[[VllmWorker], openai.OpenAI]]:
    """`openai` clients straight to a worker (no gateway); all closed after the test."""
    clients: list[openai.OpenAI] = []

    def connect(worker: VllmWorker) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=worker.openai_base_url, api_key="unused", timeout=CLIENT_TIMEOUT_S
        )
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
