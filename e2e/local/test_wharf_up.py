"""`wharf up` end to end, as a user runs it: the CLI, the daemon, the real model server.

One daemon for the module (WHARF_HOME in a temporary folder, free ports); the tests run in
order: up -> predict over REST (Host and path) and gRPC -> roll out a new model version under a
request loop -> canary 20% -> scale to zero and back -> down leaves no process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
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
HOST = "iris-default.example.com"


def isvc(name: str, model: Path, **predictor: Any) -> str:
    spec = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": model.as_uri()}}
    spec.update(predictor)
    return json.dumps(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"predictor": spec},
        }
    )


class Wharf:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.port = free_port()
        self.grpc_port = free_port()
        self.env = {
            **os.environ,
            "WHARF_HOME": str(self.home),
            "WHARF_INGRESS_PORT": str(self.port),
            "WHARF_INGRESS_GRPC_PORT": str(self.grpc_port),
            "WHARF_AUTOSCALE_WINDOW": "1",
            "WHARF_SCALE_TO_ZERO_AFTER": "3",
        }
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(WHARF), *args], env=self.env, capture_output=True, text=True, timeout=110
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def manifest(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def item(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run("get", name, "-o", "json").stdout)
        return out

    def predict(self, name: str = "iris", **kw: Any) -> httpx.Response:
        return self.http.post(
            f"/v1/models/{name}:predict",
            json={"instances": INSTANCES},
            headers={"host": f"{name}-default.example.com"},
            **kw,
        )


def make_models(root: Path) -> None:
    """iris-v1 and iris-v2 under `root`, by the examples' own script (one process for both)."""
    script = REPO / "examples" / "models" / "make_iris.py"
    code = (
        "import runpy, sys; make = runpy.run_path(sys.argv[1])['make']; "
        "make(__import__('pathlib').Path(sys.argv[2]), 1); "
        "make(__import__('pathlib').Path(sys.argv[3]), 2)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(script), str(root / "iris-v1"), str(root / "iris-v2")],
        check=True,
        timeout=110,
    )


@pytest.fixture(scope="module")
def wharf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wharf]:
    w = Wharf(tmp_path_factory.mktemp("wharf"))
    make_models(w.root)
    try:
        yield w
    finally:
        w.run("down", check=False)
        w.http.close()


def test_up_waits_for_ready_and_prints_the_url(wharf: Wharf) -> None:
    result = wharf.run(
        "up", "-f", str(wharf.manifest("iris.yaml", isvc("iris", wharf.root / "iris-v1")))
    )
    assert "inferenceservice/iris created" in result.stdout
    assert f"iris is ready: http://{HOST}" in result.stdout
    table = wharf.run("get").stdout.splitlines()
    assert table[0].split() == ["NAME", "URL", "READY", "PREV", "LATEST", "AGE"]
    assert table[1].split()[:4] == ["iris", f"http://{HOST}", "True", "100"]


def test_predict_over_rest_by_host_and_by_path(wharf: Wharf) -> None:
    by_host = wharf.predict()
    assert by_host.status_code == 200, by_host.text
    assert len(by_host.json()["predictions"]) == 2
    by_path = wharf.http.post(
        "/serving/default/iris/v1/models/iris:predict", json={"instances": INSTANCES}
    )
    assert by_path.status_code == 200
    assert by_path.json() == by_host.json()
    v2 = wharf.http.post(
        "/serving/default/iris/v2/models/iris/infer",
        json={"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": INSTANCES}]},
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["shape"] == [2]
    unknown = wharf.http.get("/v1/models/x", headers={"host": "nope-default.example.com"})
    assert unknown.status_code == 404
    assert "no InferenceService for host 'nope-default.example.com'" in unknown.json()["error"]


@pytest.mark.parametrize("port", ["grpc", "http"], ids=["grpc-port", "shared-http-port"])
@pytest.mark.parametrize("by", ["authority", "metadata"])
def test_predict_over_grpc_through_the_ingress(wharf: Wharf, port: str, by: str) -> None:
    # the gRPC port, and the HTTP port (h2c connections are piped to the gRPC ingress); the
    # service is named by the channel's :authority or by a host metadata entry
    address = f"127.0.0.1:{wharf.grpc_port if port == 'grpc' else wharf.port}"
    channel_args = [("grpc.default_authority", HOST)] if by == "authority" else None
    headers = {"host": HOST} if by == "metadata" else None
    client = triton_grpc.InferenceServerClient(address, channel_args=channel_args)
    try:
        tensor = triton_grpc.InferInput("input-0", [2, 4], "FP32")
        tensor.set_data_from_numpy(np.array(INSTANCES, dtype=np.float32))
        result = client.infer("iris", [tensor], headers=headers)
        out = result.as_numpy("output-0")
        assert out is not None and out.shape == (2,)
        with pytest.raises(Exception, match="no InferenceService"):
            client.infer("iris", [tensor], headers={"host": "nope-default.example.com"})
        plain = triton_grpc.InferenceServerClient(address)
        with pytest.raises(Exception, match=r"grpc\.default_authority"):
            plain.infer("iris", [tensor])
        plain.close()
    finally:
        client.close()


def test_new_model_version_rolls_out_without_a_failed_request(wharf: Wharf) -> None:
    statuses: Counter[int] = Counter()
    revisions: Counter[str] = Counter()
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=str(wharf.http.base_url), timeout=60) as client:
            while not stop.is_set():
                try:
                    resp = client.post(
                        "/v1/models/iris:predict",
                        json={"instances": INSTANCES},
                        headers={"host": HOST},
                    )
                except httpx.HTTPError as exc:
                    statuses[-1] += 1
                    revisions[repr(exc)] += 1
                    continue
                statuses[resp.status_code] += 1
                revisions[resp.headers.get("x-wharf-revision", "?")] += 1

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: revisions["iris-predictor-00001"] >= 5, "traffic on the first revision")
        manifest = wharf.manifest("iris-v2.yaml", isvc("iris", wharf.root / "iris-v2"))
        result = wharf.run("up", "-f", str(manifest))
        assert "inferenceservice/iris configured" in result.stdout
        wait_until(
            lambda: len(wharf.item("iris")["local"]["revisions"]["predictor"]) == 1,
            "the old revision to drain",
        )
        after_drain = revisions["iris-predictor-00002"]
        wait_until(
            lambda: revisions["iris-predictor-00002"] >= after_drain + 10,
            "requests served after the drain",
        )
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(statuses) == {200}, (statuses, revisions)
    assert revisions["iris-predictor-00001"] > 0
    assert revisions["iris-predictor-00002"] > 0
    predictor = wharf.item("iris")["status"]["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == "iris-predictor-00002"
    assert predictor["previousRolledoutRevision"] == "iris-predictor-00001"


def test_canary_gets_about_its_percent(wharf: Wharf) -> None:
    canary = isvc("iris", wharf.root / "iris-v1", canaryTrafficPercent=20)
    wharf.run("up", "-f", str(wharf.manifest("iris-canary.yaml", canary)))
    served: Counter[str] = Counter()
    for _ in range(100):
        resp = wharf.predict()
        assert resp.status_code == 200
        served[resp.headers["x-wharf-revision"]] += 1
    assert set(served) == {"iris-predictor-00002", "iris-predictor-00003"}
    assert 15 <= served["iris-predictor-00003"] <= 25, served
    row = wharf.run("get").stdout.splitlines()[1].split()
    assert row[:5] == ["iris", f"http://{HOST}", "True", "80", "20"]


def test_scale_to_zero_and_the_next_request_succeeds(wharf: Wharf) -> None:
    manifest = wharf.manifest(
        "zero.yaml", isvc("iris-zero", wharf.root / "iris-v1", minReplicas=0, maxReplicas=2)
    )
    wharf.run("up", "-f", str(manifest))

    def replicas() -> int:
        revs = wharf.item("iris-zero")["local"]["revisions"]["predictor"]
        return sum(len(r["replicas"]) for r in revs)

    wait_until(lambda: replicas() == 0, "scale to zero")
    assert wharf.item("iris-zero")["status"]["conditions"][-1]["status"] == "True"
    resp = wharf.predict("iris-zero")
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 2
    events = wharf.run("describe", "iris-zero").stdout
    assert "1 -> 0 replicas" in events and "0 -> 1 replicas" in events


def test_down_leaves_no_process_behind(wharf: Wharf) -> None:
    pids = [int(wharf.home.joinpath("wharfd.pid").read_text())]
    for name in ("iris", "iris-zero"):
        for rev in wharf.item(name)["local"]["revisions"]["predictor"]:
            pids += [r["pid"] for r in rev["replicas"] if r["pid"]]
    assert len(pids) >= 3
    assert "wharf stopped" in wharf.run("down").stdout
    assert not (wharf.home / "state.json").exists()  # the next `up` starts empty
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert alive == []
    leftovers = [p for p in _cmdlines() if str(wharf.home) in p]
    assert leftovers == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _cmdlines() -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out.append(proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return out
