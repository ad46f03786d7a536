"""Real Wharf servers on loopback for end-to-end and abuse tests.

- `ModelServerProcess`: one `wharf-model-server` process serving a model folder.
- `WharfDaemon`: the real `wharf` CLI with a private `WHARF_HOME` and free ingress ports; the
  daemon it starts is stopped by `down`.
- `Target`: where a test sends requests (host and ports, the Host header and gRPC authority
  that name the model), the same for a model server and for a service behind the ingress.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from wharf_e2e.testing import die_with_parent, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
WHARF = Path(sys.executable).with_name("wharf")
STARTUP_S = 180.0  # sklearn imports and model loads on a busy 2-core machine


@dataclass(frozen=True)
class Target:
    name: str  # "model-server" or "ingress"
    http_port: int
    grpc_port: int
    host: str  # the Host header that reaches the model
    authority: str  # the gRPC authority that reaches the model
    model: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self, timeout_s: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"host": self.host}, timeout=timeout_s)

    def healthy(self) -> bool:
        """The model answers a prediction and the server (or ingress) its readiness."""
        with self.client() as client:
            ready = client.get(f"/v2/models/{self.model}/ready").status_code == 200
            body = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
            answer = client.post(f"/v1/models/{self.model}:predict", json=body)
            return ready and answer.status_code == 200 and len(answer.json()["predictions"]) == 1


def make_iris(folder: Path) -> Path:
    """The iris classifier of the local examples, trained here into `folder/model.joblib`."""
    script = REPO / "examples" / "models" / "make_iris.py"
    code = (
        "import runpy, sys, pathlib; "
        "runpy.run_path(sys.argv[1])['make'](pathlib.Path(sys.argv[2]), 1)"
    )
    subprocess.run([sys.executable, "-c", code, str(script), str(folder)], check=True, timeout=120)
    return folder


class ModelServerProcess:
    """`python -m wharf_model_server` on free loopback ports; a context manager."""

    def __init__(
        self,
        model_dir: Path,
        model: str,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.model = model
        self.log_path = log_path
        cmd = [
            sys.executable, "-m", "wharf_model_server", "--model_dir", str(model_dir),
            "--model_name", model, "--http_port", str(self.http_port),
            "--grpc_port", str(self.grpc_port), *args,
        ]  # fmt: skip
        with log_path.open("w") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                preexec_fn=die_with_parent,
            )

    @property
    def target(self) -> Target:
        host = f"127.0.0.1:{self.http_port}"
        return Target("model-server", self.http_port, self.grpc_port, host, host, self.model)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ModelServerProcess:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"model server exited:\n{self.log()}")
            return httpx.get(f"{self.target.url}/v2/health/ready", timeout=2).status_code == 200

        try:
            wait_until(ready, "the model server to be ready", STARTUP_S, every_s=0.2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WharfDaemon:
    """The `wharf` CLI with its own `WHARF_HOME` and ingress ports; `down` stops everything."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.port, self.grpc_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "WHARF_HOME": str(root / "home"),
            "WHARF_INGRESS_PORT": str(self.port),
            "WHARF_INGRESS_GRPC_PORT": str(self.grpc_port),
            "WHARF_INGRESS_HOST": "127.0.0.1",
            **env,
        }

    def command(self, *args: str) -> list[str]:
        return [str(WHARF), *args]

    def run(self, *args: str, timeout_s: float = STARTUP_S) -> str:
        result = subprocess.run(
            self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert result.returncode == 0, f"wharf {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def manifest(self, name: str, storage_uri: str, **predictor: Any) -> Path:
        spec = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}}
        doc = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"predictor": {**spec, **predictor}},
        }
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    def up(self, name: str, storage_uri: str, **predictor: Any) -> None:
        self.run("up", "-f", str(self.manifest(name, storage_uri, **predictor)))

    def get(self, name: str) -> dict[str, Any]:
        item: dict[str, Any] = json.loads(self.run("get", name, "-o", "json", timeout_s=60))
        return item

    def replicas(self, name: str) -> list[dict[str, Any]]:
        revisions = self.get(name)["local"]["revisions"]["predictor"]
        return [r for rev in revisions for r in rev["replicas"]]

    def ready_replicas(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.replicas(name) if r["state"] == "ready"]

    def target(self, name: str) -> Target:
        host = f"{name}-default.example.com"
        return Target("ingress", self.port, self.grpc_port, host, host, name)

    def down(self) -> None:
        subprocess.run(self.command("down"), env=self.env, capture_output=True, timeout=120)
