"""Real LLM workers (vLLM, CPU build) on loopback, shared by every test of a session.

A vLLM server takes 70-155 s to start on a 2-core machine, so each kind is started once per
pytest session, lazily (by the first test that asks), and stopped at the end:

- `VllmWorker`: one `wharf-llm-worker` process (which execs vLLM's OpenAI server in the engine
  environment) on a free port, started through the worker's real command line.
- `WorkerPool`: the session's workers by key ("both", "pd"); a worker a test has stopped (the
  SIGTERM test) is started again when another test asks for it.

The engine environment comes from `scripts/install-llm-engine`. Without it the tests skip with
that reason, except under CI (`CI=true` or `WHARF_LLM_ENGINE_REQUIRED=1`), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from wharf_e2e.testing import die_with_parent, quiet_port

# Started alone on an idle 2-core machine a worker is up in 70-155 s; three at once, or next to
# other test jobs, take several times longer. This only turns a hang into a failure with the log.
STARTUP_S = 900.0
# How long a test that uses workers may take in all, their start included (the pytest-timeout
# of `vllm` tests counts fixture set-up, and a worker a test stopped is started again).
TEST_TIMEOUT_S = 1500
SERVED_MODEL_NAME = "tiny-llama"
# Small and fixed: the same flags for every worker, so greedy outputs compare across them.
ENGINE_ARGS = ("--dtype", "bfloat16", "--max-model-len", "1024", "--enforce-eager")
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the default takes a share of all memory
    "HF_HUB_OFFLINE": "1",  # the model is a local folder; nothing is downloaded
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
REQUIRED_ENV = "WHARF_LLM_ENGINE_REQUIRED"


def engine_required() -> bool:
    """Under CI a missing engine environment fails the `vllm` tests instead of skipping them."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(REQUIRED_ENV) == "1"


def require_engine() -> Path:
    """The engine environment's python. Without one the calling test skips, naming the script
    that installs it, except under CI, where it fails: a must-show test never skips there."""
    from wharf_llm_worker.engine_env import EngineEnvironmentMissing, engine_python

    try:
        return engine_python()
    except EngineEnvironmentMissing as error:
        reason = str(error)  # it names the path tried and the script that installs it
    if engine_required():
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class WorkerSpec:
    role: str  # both, prefill, decode
    model_dir: Path
    log_path: Path
    kv_transfer: str | None = None
    extra_worker_args: tuple[str, ...] = ()


class VllmWorker:
    """One `wharf-llm-worker` process; `start()` returns once vLLM answers /health."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.port = quiet_port()
        self.side_channel_port: int | None = None
        args = [
            "--role", spec.role, "--model", str(spec.model_dir),
            "--served-model-name", SERVED_MODEL_NAME, "--port", str(self.port),
        ]  # fmt: skip
        if spec.kv_transfer is not None:
            args += ["--kv-transfer", spec.kv_transfer]
        uses_nixl = spec.kv_transfer == "nixl" or (spec.kv_transfer is None and spec.role != "both")
        if uses_nixl:
            # NIXL's side channel defaults to 5600 for every worker: two on one host clash. It
            # binds once the engine has loaded, so its port must be one no engine takes at random.
            self.side_channel_port = quiet_port()
            args += ["--kv-side-channel-port", str(self.side_channel_port)]
        self.command = [
            sys.executable, "-m", "wharf_llm_worker.cli", *args, *spec.extra_worker_args,
            "--", *ENGINE_ARGS,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def launch(self) -> None:
        """Start the process without waiting (so several workers load at once)."""
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spec.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **ENGINE_ENV},
                start_new_session=True,  # its engine process goes with it on stop
                preexec_fn=die_with_parent,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.spec.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout_s: float = STARTUP_S) -> None:
        """Until vLLM answers /health; fails at once, with the log, if the process exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                raise AssertionError(
                    f"the {self.spec.role} worker exited while starting; its log "
                    f"({self.spec.log_path}) ends with:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the {self.spec.role} worker on {self.url} was not ready after "
                    f"{timeout_s:.0f}s; its log ends with:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text

    def terminate(self) -> int | None:
        """SIGTERM (vLLM drains), and its exit code once gone; None if it was not running."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait()

    def stop(self) -> None:
        """Stop the worker and everything it started (its process group), whatever its state."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the engine core, if it outlived the server
        if self.proc.poll() is None:
            self.proc.wait()


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The summed value of the samples `name{labels...}` in a Prometheus text exposition (labels
    not given are ignored); None when there is no such sample."""
    found = False
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample_name, _, label_text = head.partition("{")
        if sample_name != name:
            continue
        sample_labels = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        if labels and any(sample_labels.get(k) != f'"{v}"' for k, v in labels.items()):
            continue
        found = True
        total += float(value)
    return total if found else None


class WorkerPool:
    """The session's workers, started on first use and shared. Thread-safe enough for pytest."""

    def __init__(self, model_dir: Path, log_dir: Path) -> None:
        self.model_dir = model_dir
        self.log_dir = log_dir
        self._workers: dict[str, tuple[VllmWorker, ...]] = {}
        self._lock = threading.Lock()
        self._starts = 0

    def _spec(self, role: str, kv_transfer: str | None = None) -> WorkerSpec:
        self._starts += 1
        log = self.log_dir / f"{role}-{self._starts}.log"
        return WorkerSpec(
            role=role, model_dir=self.model_dir, log_path=log, kv_transfer=kv_transfer
        )

    def _specs(self, key: str) -> list[WorkerSpec]:
        if key == "both":
            return [self._spec("both")]
        if key == "pd":
            return [self._spec("prefill"), self._spec("decode")]
        raise KeyError(f"no worker kind {key!r} (both, pd)")

    def get(self, *keys: str) -> dict[str, tuple[VllmWorker, ...]]:
        """The workers of each kind ("both", "pd"), starting every missing one at once (their
        loads overlap) and waiting for all of them."""
        with self._lock:
            missing = [
                key
                for key in keys
                if not all(worker.alive() for worker in self._workers.get(key, ()))
                or key not in self._workers
            ]
            if missing:
                # An engine that loads next to idle P/D workers (their KV connector polls) can
                # stall for many minutes on 2 cores, while engines that load together start:
                # every running worker stops, and the kinds asked for start together.
                for key in list(self._workers):
                    for worker in self._workers.pop(key):
                        worker.stop()
            starting: list[VllmWorker] = []
            for key in keys:
                current = self._workers.get(key)
                if current is not None and all(worker.alive() for worker in current):
                    continue
                for worker in current or ():
                    worker.stop()
                workers = tuple(VllmWorker(spec) for spec in self._specs(key))
                for worker in workers:
                    worker.launch()
                self._workers[key] = workers
                starting += workers
            try:
                for worker in starting:
                    worker.wait_ready()
            except BaseException:
                for key in keys:
                    for worker in self._workers.pop(key, ()):
                        worker.stop()
                raise
            return {key: self._workers[key] for key in keys}

    def both(self) -> VllmWorker:
        """A combined worker (prefill and decode in one engine), no KV connector."""
        (worker,) = self.get("both")["both"]
        return worker

    def prefill_decode(self) -> tuple[VllmWorker, VllmWorker]:
        """A prefill worker and a decode worker with NixlConnector, started together."""
        prefill, decode = self.get("pd")["pd"]
        return prefill, decode

    def close(self) -> None:
        with self._lock:
            for workers in self._workers.values():
                for worker in workers:
                    worker.stop()
            self._workers.clear()
