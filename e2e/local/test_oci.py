"""`wharf up` of models stored in an OCI registry: a modelcar image (the model under /models)
and an OCI artifact (the model file as a titled layer), pulled from a real registry on loopback
(the CNCF distribution registry that scripts/install-test-tools builds) and served."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_e2e.oci_registry import MISSING, registry_binary, serve_registry
from wharf_e2e.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WHARF = Path(sys.executable).with_name("wharf")
INSTANCES = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = registry_binary()
    if binary is None:
        if os.environ.get("WHARF_STORAGE_REQUIRED") == "1":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    with serve_registry(binary, tmp_path_factory.mktemp("registry")) as host:
        yield host


def push_blob(client: httpx.Client, repo: str, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = client.post(f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202, start.text
    location = start.headers["location"]
    sep = "&" if "?" in location else "?"
    done = client.put(f"{location}{sep}digest={digest}", content=data)
    assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def push_manifest(client: httpx.Client, repo: str, manifest: dict[str, Any]) -> None:
    answer = client.put(
        f"/v2/{repo}/manifests/v1",
        content=json.dumps(manifest).encode(),
        headers={"Content-Type": manifest["mediaType"]},
    )
    assert answer.status_code == 201, answer.text


def layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def push_modelcar(host: str, repo: str, model_dir: Path) -> None:
    files = {
        f"models/{p.relative_to(model_dir)}": p.read_bytes()
        for p in model_dir.rglob("*")
        if p.is_file()
    }
    with httpx.Client(base_url=f"http://{host}", timeout=30) as client:
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
        base = layer({"etc/os-release": b"ID=wharf-test\n"})
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                **push_blob(client, repo, config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    **push_blob(client, repo, data),
                }
                for data in (base, layer(files))
            ],
        }
        push_manifest(client, repo, manifest)


def push_artifact(host: str, repo: str, model_dir: Path) -> None:
    with httpx.Client(base_url=f"http://{host}", timeout=30) as client:
        layers = [
            {
                "mediaType": "application/octet-stream",
                **push_blob(client, repo, p.read_bytes()),
                "annotations": {"org.opencontainers.image.title": p.name},
            }
            for p in sorted(model_dir.iterdir())
            if p.is_file()
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.wharf.model.v1",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                **push_blob(client, repo, b"{}"),
            },
            "layers": layers,
        }
        push_manifest(client, repo, manifest)


def isvc(name: str, uri: str) -> str:
    predictor = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
    return json.dumps(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"predictor": predictor},
        }
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("wharf-oci")
    port = free_port()
    env = {
        **os.environ,
        "WHARF_HOME": str(root / "home"),
        "WHARF_INGRESS_PORT": str(port),
        "WHARF_INGRESS_GRPC_PORT": str(free_port()),
    }
    script = REPO / "examples" / "models" / "make_iris.py"
    code = "import runpy, sys, pathlib; runpy.run_path(sys.argv[1])['make'](pathlib.Path(sys.argv[2]), 1)"
    subprocess.run([sys.executable, "-c", code, str(script), str(root / "iris")], check=True)
    try:
        yield root, env
    finally:
        subprocess.run([str(WHARF), "down"], env=env, capture_output=True, timeout=110)


@pytest.mark.setup_tools  # the registry, from scripts/install-test-tools
@pytest.mark.parametrize("kind", ["modelcar", "artifact"])
def test_oci_model_is_pulled_and_served(
    registry: str, home: tuple[Path, dict[str, str]], kind: str
) -> None:
    root, env = home
    name = f"iris-{kind}"
    repo = f"wharf/{name}-{uuid.uuid4().hex[:8]}"
    (push_modelcar if kind == "modelcar" else push_artifact)(registry, repo, root / "iris")
    manifest = root / f"{name}.json"
    manifest.write_text(isvc(name, f"oci://{registry}/{repo}:v1"))
    up = subprocess.run(
        [str(WHARF), "up", "-f", str(manifest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    port = env["WHARF_INGRESS_PORT"]
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/{name}:predict",
        json={"instances": INSTANCES},
        headers={"host": f"{name}-default.example.com"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
