"""The ingress's data path end to end: the real CLI, daemon and model server.

One daemon for the module, with one message limit for every hop (`WHARF_MAX_MESSAGE_BYTES`,
which the replicas inherit): large gRPC messages go through the ingress, and a replica killed
with SIGKILL costs no failed request, whether another replica is ready or the killed one must
restart first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from wharf_e2e.testing import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WHARF = Path(sys.executable).with_name("wharf")
INSTANCES = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
# the model server's own gRPC default is 8 MiB; the ingress must not be lower
LIMIT = 8 * 1024 * 1024


class Daemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.grpc_port = free_port()
        self.env = {
            **os.environ,
            "WHARF_HOME": str(root / "home"),
            "WHARF_INGRESS_PORT": str(self.port),
            "WHARF_INGRESS_GRPC_PORT": str(self.grpc_port),
            "WHARF_MAX_MESSAGE_BYTES": str(LIMIT),
        }
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [str(WHARF), *args], env=self.env, capture_output=True, text=True, timeout=110
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def up(self, name: str, **predictor: Any) -> None:
        spec = {
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": self.model.as_uri()},
            **predictor,
        }
        doc = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"predictor": spec},
        }
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(doc))
        self.run("up", "-f", str(path))

    @property
    def model(self) -> Path:
        return self.root / "iris"

    def replicas(self, name: str) -> list[dict[str, Any]]:
        item = json.loads(self.run("get", name, "-o", "json"))
        revs = item["local"]["revisions"]["predictor"]
        return [r for rev in revs for r in rev["replicas"]]

    def predict(self, name: str) -> httpx.Response:
        return self.http.post(
            f"/v1/models/{name}:predict",
            json={"instances": INSTANCES},
            headers={"host": f"{name}-default.example.com"},
        )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("wharf"))
    script = REPO / "examples" / "models" / "make_iris.py"
    code = "import runpy, sys, pathlib; runpy.run_path(sys.argv[1])['make'](pathlib.Path(sys.argv[2]), 1)"
    subprocess.run([sys.executable, "-c", code, str(script), str(d.model)], check=True, timeout=110)
    try:
        d.up("iris")
        yield d
    finally:
        subprocess.run([str(WHARF), "down"], env=d.env, capture_output=True, timeout=110)
        d.http.close()


@pytest.mark.parametrize(
    "rows", [7 * 1024 * 1024 // 16, (LIMIT - 1024) // 16], ids=["7MiB", "near-limit"]
)
def test_a_large_grpc_message_goes_through_the_ingress(daemon: Daemon, rows: int) -> None:
    client = triton_grpc.InferenceServerClient(
        f"127.0.0.1:{daemon.grpc_port}",
        channel_args=[("grpc.default_authority", "iris-default.example.com")],
    )
    try:
        tensor = triton_grpc.InferInput("input-0", [rows, 4], "FP32")
        tensor.set_data_from_numpy(np.tile(np.array(INSTANCES[:1], dtype=np.float32), (rows, 1)))
        out = client.infer("iris", [tensor]).as_numpy("output-0")
        assert out is not None and out.shape == (rows,)
        over = triton_grpc.InferInput("input-0", [LIMIT // 16 + 1, 4], "FP32")
        over.set_data_from_numpy(np.zeros((LIMIT // 16 + 1, 4), dtype=np.float32))
        with pytest.raises(Exception, match=r"RESOURCE_EXHAUSTED|larger than max"):
            client.infer("iris", [over])
    finally:
        client.close()


def _kill_one(daemon: Daemon, name: str) -> int:
    replicas = daemon.replicas(name)
    pid = next(r["pid"] for r in replicas if r["state"] == "ready")
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def test_the_next_request_after_a_replica_is_killed_waits_for_its_restart(
    daemon: Daemon,
) -> None:
    for _ in range(3):  # pooled connections to the replica
        assert daemon.predict("iris").status_code == 200
    killed = _kill_one(daemon, "iris")
    resp = daemon.predict("iris")
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 2
    assert killed not in [r["pid"] for r in daemon.replicas("iris")]


def test_the_next_requests_after_a_replica_is_killed_go_to_another(daemon: Daemon) -> None:
    daemon.up("pair", minReplicas=2, maxReplicas=2)
    wait_until(
        lambda: sum(r["state"] == "ready" for r in daemon.replicas("pair")) == 2,
        "two ready replicas",
    )
    for _ in range(6):
        assert daemon.predict("pair").status_code == 200
    _kill_one(daemon, "pair")
    statuses = [daemon.predict("pair").status_code for _ in range(10)]
    assert statuses == [200] * 10
