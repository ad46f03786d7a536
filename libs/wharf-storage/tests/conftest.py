"""Real servers on loopback for the storage tests: moto's S3 server, an HTTP file server,
Azurite, fake-gcs-server and the CNCF distribution registry (installed by
scripts/install-test-tools into ~/.cache/wharf).

Tests that need a tool that is not installed are skipped with the reason, unless
WHARF_STORAGE_REQUIRED=1 (CI), where they fail instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from moto.server import ThreadedMotoServer

from wharf_e2e.setup_gate import INSTALL_TEST_TOOLS, failure_note, wait_for_setup
from wharf_e2e.testing import free_port

CACHE = Path(os.environ.get("WHARF_CACHE", Path.home() / ".cache" / "wharf"))
REQUIRED = os.environ.get("WHARF_STORAGE_REQUIRED") == "1"
# Azurite's documented development account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
S3_KEY_ID = "AKIAWHARFTESTKEYID00"
S3_SECRET = "wharf-test-secret-Zq8sX3vB7nM2kL9pQ4rT"


def missing_tool(reason: str) -> None:
    if REQUIRED:
        pytest.fail(
            f"{reason} (WHARF_STORAGE_REQUIRED=1; run scripts/install-test-tools){failure_note(INSTALL_TEST_TOOLS)}"
        )
    pytest.skip(f"{reason}; run scripts/install-test-tools{failure_note(INSTALL_TEST_TOOLS)}")


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it lingers, and always reap (no process outlives its fixture)."""
    proc.terminate()
    try:
        proc.wait(timeout=3)  # the emulators keep nothing worth a graceful shutdown
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- S3 (moto) --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class S3Bucket:
    endpoint: str
    name: str
    client: Any

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"


@pytest.fixture
def s3(moto_endpoint: str) -> S3Bucket:
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    name = f"wharf-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(moto_endpoint, name, client)


# --- HTTP file server -------------------------------------------------------------------


@dataclass
class FileServer:
    root: Path
    port: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    fail: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> drop the connection after
    lie_length: dict[str, int] = field(default_factory=dict)  # path -> announced length

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
            statuses = server.fail.get(path)
            if statuses:
                status = statuses.pop(0)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            file = server.root / path.lstrip("/")
            if not file.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            length = server.lie_length.get(path, len(body))
            self.send_header("Content-Length", str(length))
            self.end_headers()
            cut = server.cut_after.pop(path, None)
            if cut is not None:
                body = body[:cut]
                self.close_connection = True
            # counted before writing: the client may have read it all, and the test checked the
            # count, before this thread runs again after the write
            server.sent[path] += len(body)
            self.wfile.write(body)
            self.wfile.flush()

    return Handler


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "www"
    root.mkdir()
    files = FileServer(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    httpd.daemon_threads = True
    files.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield files
    httpd.shutdown()
    httpd.server_close()


# --- Azurite ------------------------------------------------------------------------------


def _azurite_bin() -> str | None:
    wait_for_setup()
    explicit = os.environ.get("WHARF_AZURITE")
    if explicit:
        return explicit
    cached = CACHE / "node" / "node_modules" / ".bin" / "azurite-blob"
    if cached.exists():
        return str(cached)
    return shutil.which("azurite-blob")


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _azurite_bin()
    if binary is None or shutil.which("node") is None:
        missing_tool("Azurite (npm azurite) or node is not installed")
    assert binary is not None
    port = free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, "azurite")
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        stop(proc)


# --- fake-gcs-server ----------------------------------------------------------------------


def _fake_gcs_bin() -> str | None:
    wait_for_setup()
    explicit = os.environ.get("WHARF_FAKE_GCS_SERVER")
    if explicit:
        return explicit
    cached = CACHE / "go" / "bin" / "fake-gcs-server"
    if cached.exists():
        return str(cached)
    return shutil.which("fake-gcs-server")


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _fake_gcs_bin()
    if binary is None:
        missing_tool("fake-gcs-server is not installed")
    assert binary is not None
    port = free_port()
    workdir = tmp_path_factory.mktemp("fake-gcs")
    proc = subprocess.Popen(
        [
            binary,
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            "-public-host",
            f"127.0.0.1:{port}",
            "-log-level",
            "error",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, "fake-gcs-server")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


# --- A Hugging Face Hub endpoint (HF_ENDPOINT) ----------------------------------------------


@dataclass
class FakeHub:
    """Serves the Hub API calls snapshot_download makes: repo info, tree listing, file resolve.

    Repositories are `{repo_id: {"sha": 40-hex commit, "refs": {name: sha}, "files": {...}}}`.
    """

    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    missing: set[str] = field(default_factory=set)  # listed files whose download answers 404

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(
        self, repo_id: str, files: dict[str, bytes], *, refs: tuple[str, ...] = ("main",)
    ) -> str:
        sha = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        self.repos[repo_id] = {"sha": sha, "refs": dict.fromkeys(refs, sha), "files": files}
        return sha


def _blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 404:
            self.send_header("X-Error-Code", "RepoNotFound")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _resolve(self, repo_id: str, rev: str) -> tuple[dict[str, Any], str] | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return None
        sha = repo["refs"].get(rev) or (rev if rev == repo["sha"] else None)
        return (repo, sha) if sha else None

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path, dict(self.headers.items())))
        auth = self.headers.get("Authorization")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            return self._api(parts[2:], auth)
        # /{org}/{name}/resolve/{rev}/{file...}
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file("/".join(parts[:2]), parts[3], "/".join(parts[4:]), auth)
        self._json(404, {"error": "not found"})

    @staticmethod
    def _allowed(repo: dict[str, Any], auth: str | None) -> bool:
        token = repo.get("token")
        return token is None or auth == f"Bearer {token}"

    def _api(self, parts: list[str], auth: str | None) -> None:
        repo_id = "/".join(parts[:2])
        rest = parts[2:]
        found = self._resolve(repo_id, rest[1] if len(rest) > 1 else "main")
        if found is None or not self._allowed(found[0], auth):
            return self._json(404 if found is None else 401, {"error": "Repository Not Found"})
        repo, sha = found
        files: dict[str, bytes] = repo["files"]
        if rest[:1] == ["revision"]:
            siblings = [{"rfilename": name} for name in sorted(files)]
            return self._json(200, {"id": repo_id, "sha": sha, "siblings": siblings})
        if rest[:1] == ["tree"]:
            entries = [
                {"type": "file", "oid": _blob_oid(data), "size": len(data), "path": name}
                for name, data in sorted(files.items())
            ]
            return self._json(200, entries)
        self._json(404, {"error": "not found"})

    def _file(self, repo_id: str, rev: str, name: str, auth: str | None) -> None:
        found = self._resolve(repo_id, rev)
        if found is None or name not in found[0]["files"] or name in self.hub.missing:
            return self._json(404, {"error": "Entry not found"})
        repo, sha = found
        if not self._allowed(repo, auth):
            return self._json(401, {"error": "unauthorized"})
        data: bytes = repo["files"][name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{_blob_oid(data)}"')
        self.send_header("X-Repo-Commit", sha)
        self.end_headers()
        if self.command != "HEAD":
            self.hub.sent[name] += len(data)  # before writing, as in the file server above
            self.wfile.write(data)


@pytest.fixture
def hf_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Hub", (_HubHandler,), {"hub": hub}))
    httpd.daemon_threads = True
    hub.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield hub
    httpd.shutdown()
    httpd.server_close()


# --- OCI registry (CNCF distribution) -------------------------------------------------------

# bcrypt (cost 4) of the password test_oci.py pushes and pulls with: a test fixture, not a secret.
OCI_HTPASSWD = "wharf:$2b$04$j1QMXNyWdZEGzFFh20WQ8OB8RBYbnUXdES7LBQOaz0r6ieZxgPile"


def _registry_bin() -> str | None:
    wait_for_setup()
    explicit = os.environ.get("WHARF_OCI_REGISTRY")
    if explicit:
        return explicit
    cached = CACHE / "go" / "bin" / "registry"
    if cached.exists():
        return str(cached)
    return shutil.which("registry")


def _start_registry(workdir: Path, *, htpasswd: bool) -> tuple[subprocess.Popen[bytes], str]:
    binary = _registry_bin()
    if binary is None:
        missing_tool("the OCI registry (distribution) is not installed")
    assert binary is not None
    port = free_port()
    auth = ""
    if htpasswd:
        (workdir / "htpasswd").write_text(OCI_HTPASSWD + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: wharf\n    path: {workdir / 'htpasswd'}\n"
    (workdir / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
    proc = subprocess.Popen(
        [binary, "serve", str(workdir / "config.yml")],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, "registry")
    except BaseException:
        stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = _start_registry(tmp_path_factory.mktemp("registry"), htpasswd=False)
    try:
        yield base
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def oci_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = _start_registry(tmp_path_factory.mktemp("registry-auth"), htpasswd=True)
    try:
        yield base
    finally:
        stop(proc)
