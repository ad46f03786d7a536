"""`wharf` as a kubectl user runs it (issue 17): every kind `up` accepts can be listed, described
and deleted; short names, -A, -o wide|yaml|json; logs -f; up -f -; curls in the service's
protocol; and `up` reports the state of what this apply asked for, not an earlier revision's.

One daemon for the module (WHARF_HOME in a temporary folder, free ports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_e2e.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WHARF = Path(sys.executable).with_name("wharf")


def isvc(name: str, uri: str, **model: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri, **model}}
        },
    }


class Wharf:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.env = {
            **os.environ,
            "WHARF_HOME": str(self.home),
            "WHARF_INGRESS_PORT": str(free_port()),
            "WHARF_INGRESS_GRPC_PORT": str(free_port()),
        }

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(WHARF), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=110,
            input=stdin,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def manifest(self, name: str, doc: dict[str, Any]) -> Path:
        path = self.root / name
        path.write_text(json.dumps(doc))
        return path


@pytest.fixture(scope="module")
def wharf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wharf]:
    w = Wharf(tmp_path_factory.mktemp("wharf"))
    subprocess.run(
        [sys.executable, str(REPO / "examples/models/make_iris.py"), "--out", str(w.root / "iris")],
        check=True,
        capture_output=True,
        timeout=110,
    )
    try:
        yield w
    finally:
        w.run("down", check=False)


def test_up_reads_stdin_and_prints_a_v1_curl_that_works(wharf: Wharf) -> None:
    doc = json.dumps(isvc("iris", (wharf.root / "iris").as_uri()))
    out = wharf.run("up", "-f", "-", stdin=doc).stdout
    assert "inferenceservice/iris created" in out
    curls = [line.strip() for line in out.splitlines() if line.strip().startswith("curl ")]
    assert len(curls) == 2
    for curl in curls:
        assert "/v1/models/iris:predict" in curl and '"instances"' in curl
        answer = subprocess.run(["bash", "-c", curl + " -s --fail"], capture_output=True, text=True)
        assert answer.returncode == 0, answer.stderr
        assert "predictions" in json.loads(answer.stdout)


def test_a_v2_service_gets_a_v2_curl_that_works(wharf: Wharf) -> None:
    doc = isvc("iris-v2", (wharf.root / "iris").as_uri(), protocolVersion="v2")
    out = wharf.run("up", "-f", str(wharf.manifest("v2.json", doc))).stdout
    curls = [line.strip() for line in out.splitlines() if line.strip().startswith("curl ")]
    assert len(curls) == 2
    for curl in curls:
        assert "/v2/models/iris-v2/infer" in curl and '"inputs"' in curl
        answer = subprocess.run(["bash", "-c", curl + " -s --fail"], capture_output=True, text=True)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["outputs"][0]["shape"] == [1]


def test_get_by_short_names_all_namespaces_and_wide(wharf: Wharf) -> None:
    for kind in ("isvc", "ISVC", "inferenceservice", "InferenceServices"):
        rows = wharf.run("get", kind, "iris").stdout.splitlines()
        assert rows[1].split()[0] == "iris", (kind, rows)
    assert wharf.run("get", "isvc/iris").stdout.splitlines()[1].split()[0] == "iris"
    # One service in a second namespace: `get` (the current namespace) must hide it and `-A`
    # show it, so a `-A` that listed only the current namespace would fail here.
    elsewhere = isvc("iris-b", (wharf.root / "iris").as_uri())
    elsewhere["metadata"]["namespace"] = "team-b"
    wharf.run("up", "-f", str(wharf.manifest("team-b.json", elsewhere)))
    try:
        for args in (("get",), ("get", "isvc")):
            here = [r.split() for r in wharf.run(*args).stdout.splitlines() if r.strip()]
            assert here[0][0] == "NAME", (args, here)  # no NAMESPACE column for one namespace
            names = {r[0] for r in here[1:]}
            assert {"iris", "iris-v2"} <= names and "iris-b" not in names, (args, here)
        for args in (("get", "-A"), ("get", "isvc", "-A"), ("get", "--all-namespaces")):
            every = [r.split() for r in wharf.run(*args).stdout.splitlines() if r.strip()]
            assert every[0][:2] == ["NAMESPACE", "NAME"], (args, every)
            rows = {tuple(r[:2]) for r in every[1:]}
            assert rows >= {("default", "iris"), ("default", "iris-v2"), ("team-b", "iris-b")}
            assert ("default", "iris-b") not in rows, (args, every)
        there = [r.split() for r in wharf.run("get", "-n", "team-b").stdout.splitlines()]
        assert [r[0] for r in there[1:] if r] == ["iris-b"]
    finally:
        wharf.run("delete", "isvc", "iris-b", "-n", "team-b", check=False)
    wide = wharf.run("get", "iris", "-o", "wide").stdout.splitlines()
    assert "LATESTREADYREVISION" in wide[0].split()
    assert "iris-predictor-00001" in wide[1].split()
    missing = wharf.run("get", "isvc", "nope", check=False)
    assert missing.returncode == 1
    assert 'inferenceservice "nope" not found' in missing.stderr


def test_yaml_shows_the_defaulted_spec_and_json_lists_are_a_list(wharf: Wharf) -> None:
    item = yaml.safe_load(wharf.run("get", "isvc", "iris", "-o", "yaml").stdout)
    model = item["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v1"  # defaulted: the manifest does not say
    assert item["status"]["url"] == "http://iris-default.example.com"
    listed = json.loads(wharf.run("get", "-o", "json").stdout)
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List"
    assert {i["metadata"]["name"] for i in listed["items"]} >= {"iris", "iris-v2"}


def test_describe_and_logs_take_kind_and_name(wharf: Wharf) -> None:
    described = wharf.run("describe", "isvc", "iris").stdout
    assert "Name:        iris" in described
    assert "Runtime:           kserve-sklearnserver (ClusterServingRuntime" in described
    assert "Name:        iris" in wharf.run("describe", "iris").stdout
    assert "==> iris-predictor-00001-0.log <==" in wharf.run("logs", "isvc", "iris").stdout


def test_logs_follow_prints_what_is_written_later(wharf: Wharf) -> None:
    item = json.loads(wharf.run("get", "iris", "-o", "json").stdout)
    log = Path(item["local"]["revisions"]["predictor"][0]["replicas"][0]["log"])
    with subprocess.Popen(
        [str(WHARF), "logs", "iris", "-f", "--tail", "1"],
        env=wharf.env,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("==> ")  # the tail is printed first
            proc.stdout.readline()
            with log.open("a") as f:
                f.write("a line written after logs -f started\n")
            assert proc.stdout.readline() == "a line written after logs -f started\n"
        finally:
            proc.terminate()


def test_every_kind_up_accepts_is_listed_described_and_deleted(wharf: Wharf) -> None:
    builtins = wharf.run("get", "clusterservingruntimes").stdout
    assert "kserve-sklearnserver" in builtins and "wharf-onnxserver" in builtins
    assert "kserve-sklearnserver" in wharf.run("get", "csr").stdout
    example = str(REPO / "examples" / "serving-runtime.yaml")
    assert "servingruntime/team-sklearn created" in wharf.run("up", "-f", example).stdout
    for kind in ("servingruntimes", "sr", "ServingRuntime"):
        rows = wharf.run("get", kind).stdout.splitlines()
        assert rows[0].split() == ["NAME", "DISABLED", "MODELTYPE", "CONTAINERS"]
        assert rows[1].split()[:3] == ["team-sklearn", "false", "sklearn"]
    described = wharf.run("describe", "sr", "team-sklearn").stdout
    assert "Kind:         ServingRuntime" in described and "--model_dir=/mnt/models" in described
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\n---\n"
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n"
    both = wharf.root / "runtime-and-secret.yaml"
    both.write_text(secret + other + Path(example).read_text())
    applied = wharf.run("up", "-f", str(both)).stdout
    assert "secret/creds created" in applied
    assert "configmap/settings skipped" in applied and "not a kind wharf runs" in applied
    deleted = wharf.run("delete", "-f", str(both))
    assert 'servingruntime "team-sklearn" deleted' in deleted.stdout
    assert 'secret "creds" deleted' in deleted.stdout
    assert "skipped ConfigMap/settings: not a kind wharf runs" in deleted.stdout
    assert "No resources found" in wharf.run("get", "sr").stdout
    again = wharf.run("delete", "sr", "team-sklearn", check=False)
    assert again.returncode == 1 and 'servingruntime "team-sklearn" not found' in again.stderr
    refused = wharf.run("delete", "csr", "kserve-sklearnserver", check=False)
    assert refused.returncode == 1 and "built in" in refused.stderr


def test_up_reports_the_state_of_this_apply_not_an_earlier_one(wharf: Wharf) -> None:
    good = wharf.manifest("good.json", isvc("gen", (wharf.root / "iris").as_uri()))
    bad = wharf.manifest("bad.json", isvc("gen", (wharf.root / "no-such-model").as_uri()))
    wharf.run("up", "-f", str(good))
    failed = wharf.run("up", "-f", str(bad), "--timeout", "100", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "gen failed: ModelDownloadFailed" in failed.stderr
    again = wharf.run("up", "-f", str(good), "--timeout", "100", check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "gen is ready" in again.stdout
    assert "ModelDownloadFailed" not in again.stderr


def test_delete_by_name_and_by_kind_and_name(wharf: Wharf) -> None:
    assert 'inferenceservice "iris-v2" deleted' in wharf.run("delete", "iris-v2").stdout
    assert 'inferenceservice "gen" deleted' in wharf.run("delete", "isvc", "gen").stdout
    names = [r.split()[0] for r in wharf.run("get").stdout.splitlines()[1:]]
    assert "iris-v2" not in names and "gen" not in names


def test_a_killed_daemon_is_reported_with_a_failing_exit(wharf: Wharf) -> None:
    pid = int((wharf.home / "wharfd.pid").read_text())
    assert (wharf.home.stat().st_mode & 0o777) == 0o700
    assert ((wharf.home / "wharf.sock").stat().st_mode & 0o777) == 0o600
    os.kill(pid, 9)
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        time.sleep(0.05)
    result = wharf.run("get", check=False)
    assert result.returncode == 1
    assert "the wharf daemon is not running" in result.stderr
    assert not (wharf.home / "wharf.sock").exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_runtime_written_for_kserves_image_serves_locally(wharf: Wharf) -> None:
    """examples/serving-runtime.yaml names `kserve/sklearnserver` and no command, as KServe's
    docs do: locally it runs Wharf's model server for the same format."""
    example = str(REPO / "examples" / "serving-runtime.yaml")
    wharf.run("up", "-f", example)
    try:
        doc = isvc("team-iris", (wharf.root / "iris").as_uri())
        out = wharf.run("up", "-f", str(wharf.manifest("team-iris.yaml", doc))).stdout
        assert "team-iris is ready" in out
        described = wharf.run("describe", "isvc", "team-iris").stdout
        assert "team-sklearn (ServingRuntime" in described
        curl = next(line.strip() for line in out.splitlines() if line.strip().startswith("curl "))
        answer = subprocess.run(["bash", "-c", curl + " -s --fail"], capture_output=True, text=True)
        assert answer.returncode == 0, answer.stderr
        assert "predictions" in json.loads(answer.stdout)
    finally:
        wharf.run("delete", "isvc", "team-iris", check=False)
        wharf.run("delete", "sr", "team-sklearn", check=False)


def test_up_shows_download_retries_on_the_terminal(wharf: Wharf) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    failures = [503]

    class Flaky(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if failures:
                self.send_error(failures.pop())
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Flaky, directory=str(wharf.root / "iris"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/model.joblib"
        doc = isvc("flaky-iris", uri)
        result = wharf.run("up", "-f", str(wharf.manifest("flaky.yaml", doc)))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        wharf.run("delete", "isvc", "flaky-iris", check=False)
    assert "flaky-iris is ready" in result.stdout
    assert "DownloadRetry: " in result.stderr and "attempt 1" in result.stderr
    assert "ModelReady: " in result.stderr
