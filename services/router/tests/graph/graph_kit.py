"""Helpers for the graph tests, real servers on loopback: `wharf-model-server` processes with tiny
scikit-learn models trained here, small echo/slow HTTP servers, and `wharf-router` processes
started by the real command line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from wharf_e2e.servers import ModelServerProcess, make_iris
from wharf_e2e.testing import free_port, wait_until

ROUTER = Path(sys.executable).with_name("wharf-router")
INSTANCES = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]


def make_judge(folder: Path) -> Path:
    """A model over three features (the iris classes' probabilities): the second step of a
    chain fed the first step's `predictions` as `instances`."""
    code = (
        "import sys, pathlib, joblib\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "X = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0, 0.5, 0.5]]\n"
        "y = [10, 20, 30, 10, 30]\n"
        "out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)\n"
        "joblib.dump(DecisionTreeClassifier(random_state=0).fit(X, y), out / 'model.joblib')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, timeout=120)
    return folder


@dataclass(frozen=True)
class Models:
    iris: str  # V1 predict URL: labels
    proba: str  # V1 predict URL: class probabilities (PREDICT_PROBA=true)
    judge: str  # V1 predict URL: three features in, 10/20/30 out
    iris_v2: str  # V2 infer URL of the iris model
    missing: str  # a model the server does not have: 404 with its own body


@contextmanager
def model_servers(root: Path) -> Iterator[Models]:
    """iris (labels), proba (the same model answering probabilities) and judge, each a
    `wharf-model-server` process."""
    iris_dir = make_iris(root / "iris")
    judge_dir = make_judge(root / "judge")
    servers = [
        ModelServerProcess(iris_dir, "iris", root / "iris.log"),
        ModelServerProcess(iris_dir, "proba", root / "proba.log", env={"PREDICT_PROBA": "true"}),
        ModelServerProcess(judge_dir, "judge", root / "judge.log"),
    ]
    started: list[ModelServerProcess] = []
    try:
        for server in servers:
            started.append(server.__enter__())
        iris, proba, judge = (s.target.url for s in servers)
        yield Models(
            iris=f"{iris}/v1/models/iris:predict",
            proba=f"{proba}/v1/models/proba:predict",
            judge=f"{judge}/v1/models/judge:predict",
            iris_v2=f"{iris}/v2/models/iris/infer",
            missing=f"{iris}/v1/models/nope:predict",
        )
    finally:
        for server in servers:
            server.__exit__()


@dataclass
class Router:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def post(self, body: Any, **kw: Any) -> httpx.Response:
        return httpx.post(self.url, json=body, timeout=60, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


StartRouter = Callable[..., Router]


@contextmanager
def router_starter(tmp_path: Path) -> Iterator[StartRouter]:
    """Starts `wharf-router --graph-json ...` on a free port and waits for `/readyz`."""
    running: list[Router] = []

    def start(spec: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> Router:
        port = free_port()
        log_path = tmp_path / f"router-{port}.log"
        argv = [str(ROUTER), "--graph-json", json.dumps(spec), "--port", str(port), *args]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "WHARF_BIND_HOST": "127.0.0.1", **(env or {})},
            )
        router = Router(f"http://127.0.0.1:{port}", proc, log_path)
        running.append(router)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"router exited {proc.returncode}:\n{router.log()}")
            return httpx.get(f"{router.url}/readyz", timeout=2).status_code == 200

        wait_until(ready, "the router to be ready", 60, every_s=0.1)
        return router

    yield start
    for router in running:
        if router.proc.poll() is None:
            router.proc.send_signal(signal.SIGKILL)
            router.proc.wait()


@contextmanager
def http_server(handler: Callable[..., Any]) -> Iterator[str]:
    """A stdlib HTTP server in a thread (a real socket) whose POST handler is `handler`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            status, answer = handler(self, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            # a step the router gave up on (its timeout) finds the connection closed
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
