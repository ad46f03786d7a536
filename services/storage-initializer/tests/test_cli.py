"""The init-container CLI as Kubernetes runs it: a process, its exit code and its stderr."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from wharf_e2e.oci_registry import MISSING, registry_binary, serve_registry
from wharf_e2e.testing import free_port
from wharf_storage.errors import EXIT_CODES

SECRET = "cli-test-secret-Xy7Qp2Lm9Rt4"


def needs_nxdomain(host: str) -> None:
    """Skip unless this machine's resolver answers "no such name" for `host` (RFC 6761's
    .invalid): without a name server the answer is "try again", which is retried instead."""
    try:
        socket.getaddrinfo(host, 80)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return
        pytest.skip(f"the resolver answers {exc.errno} for {host}, not 'no such name'")
    pytest.skip(f"{host} resolves on this machine")


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[dict[str, str], str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "AKIACLITEST000000000",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    bucket = f"cli-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="model/a.bin", Body=b"a" * 100)
    client.put_object(Bucket=bucket, Key="model/sub/b.bin", Body=b"b" * 50)
    client.put_object(Bucket=bucket, Key="evil/../../escape.txt", Body=b"evil")
    yield env, bucket
    server.stop()


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    (root / "broken.zip").write_bytes(b"not a zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../slip.txt", b"evil")
    (root / "slip.zip").write_bytes(buf.getvalue())

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full_env.update(env or {})
    full_env["WHARF_STORAGE_ATTEMPTS"] = "2"
    return subprocess.run(
        [sys.executable, "-m", "wharf_storage_initializer", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_downloads_and_exits_zero(s3: tuple[dict[str, str], str], tmp_path: Path) -> None:
    env, bucket = s3
    proc = run(f"s3://{bucket}/model", str(tmp_path / "out"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "sub" / "b.bin").read_bytes() == b"b" * 50
    assert SECRET not in proc.stderr + proc.stdout
    assert "2 files" in proc.stderr


def test_several_pairs_like_kserve(s3: tuple[dict[str, str], str], tmp_path: Path) -> None:
    env, bucket = s3
    src = tmp_path / "local"
    src.mkdir()
    (src / "x").write_text("x")
    proc = run(
        f"s3://{bucket}/model/a.bin",
        str(tmp_path / "one"),
        f"file://{src}",
        str(tmp_path / "two"),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "one" / "a.bin").exists() and (tmp_path / "two" / "x").exists()


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("ftp://host/model", "UnsupportedUri"),
        ("s3://{bucket}/missing", "SourceNotFound"),
        ("s3://{bucket}/evil", "UnsafePath"),
        ("{www}/broken.zip", "InvalidArchive"),
        ("{www}/slip.zip", "UnsafePath"),
        ("{www}/absent.bin", "SourceNotFound"),
    ],
)
def test_failure_classes_have_their_exit_code_and_one_line_reason(
    s3: tuple[dict[str, str], str], www: str, tmp_path: Path, uri: str, error: str
) -> None:
    env, bucket = s3
    proc = run(uri.format(bucket=bucket, www=www), str(tmp_path / "out"), env=env)
    assert proc.returncode == EXIT_CODES[error]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"wharf-storage-initializer: {error}: ")
    assert SECRET not in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*escape*")) and not list(tmp_path.rglob("slip.txt"))


def test_access_denied(s3: tuple[dict[str, str], str], tmp_path: Path) -> None:
    env, bucket = s3
    anonymous = {"AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"], "awsAnonymousCredential": "true"}
    proc = run(f"s3://{bucket}/model", str(tmp_path / "out"), env=anonymous)
    assert proc.returncode == EXIT_CODES["AccessDenied"], proc.stderr


def test_signed_url_query_stays_out_of_stderr(www: str, tmp_path: Path) -> None:
    proc = run(f"{www}/absent.bin?X-Amz-Signature=cli-signature-value", str(tmp_path / "o"))
    assert proc.returncode == EXIT_CODES["SourceNotFound"]
    assert "cli-signature-value" not in proc.stderr


@pytest.mark.parametrize("dest", ["file", "file/below"])
def test_destination_that_is_a_file_exits_with_one_line(
    www: str, tmp_path: Path, dest: str
) -> None:
    (tmp_path / "file").write_text("not a folder")
    proc = run(f"{www}/broken.zip", str(tmp_path / dest))
    assert proc.returncode == EXIT_CODES["DestinationUnusable"], proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("wharf-storage-initializer: DestinationUnusable: destination ")
    assert (tmp_path / "file").read_text() == "not a folder"


def test_unresolvable_host_exits_with_the_network_code_at_once(tmp_path: Path) -> None:
    needs_nxdomain("no-such-host.invalid")
    proc = run("http://no-such-host.invalid/m.bin", str(tmp_path / "out"))
    assert proc.returncode == EXIT_CODES["TransferFailed"], proc.stderr
    assert "does not resolve" in proc.stderr.strip().splitlines()[-1]
    assert "retrying" not in proc.stderr


@pytest.mark.parametrize("args", [(), ("only-one",), ("a", "b", "c")])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    assert run(*args).returncode == 2


def test_exit_codes_are_distinct() -> None:
    codes = list(EXIT_CODES.values())
    assert len(codes) == len(set(codes))


SLOW_BODY = os.urandom(1024 * 1024)


class SlowHandler(BaseHTTPRequestHandler):
    """Serves SLOW_BODY at /w.bin in 64 KiB pieces, 100 ms apart, honouring `Range: bytes=N-`."""

    protocol_version = "HTTP/1.1"
    ranges: list[str | None] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng[6:-1]) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header(
                "Content-Range", f"bytes {start}-{len(SLOW_BODY) - 1}/{len(SLOW_BODY)}"
            )
        self.send_header("Content-Length", str(len(SLOW_BODY) - start))
        self.end_headers()
        for i in range(start, len(SLOW_BODY), 64 * 1024):
            self.wfile.write(SLOW_BODY[i : i + 64 * 1024])
            self.wfile.flush()
            if not rng:
                time.sleep(0.1)


def test_killed_process_resumes_where_it_stopped(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/w.bin"
    dest = tmp_path / "out"
    tmp_file = tmp_path / ".out.wharf-partial" / "w.bin.wharf-tmp"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wharf_storage_initializer", url, str(dest)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not tmp_file.exists() or tmp_file.stat().st_size < 128 * 1024
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kept = tmp_file.stat().st_size
        assert 0 < kept < len(SLOW_BODY)
        assert not dest.exists()
        again = run(url, str(dest))
        assert again.returncode == 0, again.stderr
        fetched = int(re.search(r"\((\d+) fetched\)", again.stderr).group(1))  # type: ignore[union-attr]
        assert fetched == len(SLOW_BODY) - kept
        assert SlowHandler.ranges[-1] == f"bytes={kept}-"
        assert (dest / "w.bin").read_bytes() == SLOW_BODY
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- oci://: the same exit codes, against the CNCF distribution registry on loopback ---------

LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`127.0.0.1:<port>` of an anonymous registry (scripts/install-test-tools builds it)."""
    binary = registry_binary()
    if binary is None:
        if os.environ.get("WHARF_STORAGE_REQUIRED") == "1":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    with serve_registry(binary, tmp_path_factory.mktemp("registry")) as host:
        yield host


def _push_image(host: str, repo: str, layers: list[tuple[bytes, str]]) -> None:
    """Push an image (layers as (blob, media type)) with the registry API, tagged v1."""
    with httpx.Client(base_url=f"http://{host}", timeout=30) as client:

        def blob(data: bytes) -> dict[str, object]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
            sep = "&" if "?" in location else "?"
            done = client.put(f"{location}{sep}digest={digest}", content=data)
            assert done.status_code == 201, done.text
            return {"digest": digest, "size": len(data)}

        config = {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(b"{}")}
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [{"mediaType": media, **blob(data)} for data, media in layers],
        }
        answer = client.put(
            f"/v2/{repo}/manifests/v1",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": manifest["mediaType"]},  # type: ignore[dict-item]
        )
        assert answer.status_code == 201, answer.text


def _layer(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.setup_tools  # the registry, from scripts/install-test-tools
@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("absent", "SourceNotFound"),
        ("escape", "UnsafePath"),
        ("not-a-tar", "InvalidArchive"),
        ("zstd", "UnsupportedUri"),
        ("too-big", "TransferFailed"),
        ("bad-credentials", "AccessDenied"),
    ],
)
def test_oci_failures_have_the_same_exit_codes(
    registry: str, tmp_path: Path, case: str, error: str
) -> None:
    repo = f"wharf/cli-{case}-{uuid.uuid4().hex[:8]}"
    env: dict[str, str] = {}
    if case == "escape":
        _push_image(registry, repo, [(_layer({"models/../../escape.txt": b"evil"}), LAYER_GZ)])
    elif case == "not-a-tar":
        _push_image(registry, repo, [(b"not a tar at all", LAYER_GZ)])
    elif case == "zstd":
        _push_image(registry, repo, [(b"x", "application/vnd.oci.image.layer.v1.tar+zstd")])
    elif case == "too-big":
        _push_image(registry, repo, [(_layer({"models/w.bin": bytes(4096)}), LAYER_GZ)])
        env["WHARF_STORAGE_MAX_EXPANDED"] = "1Ki"
    elif case == "bad-credentials":
        _push_image(registry, repo, [(_layer({"models/w.bin": b"w"}), LAYER_GZ)])
        env["WHARF_OCI_AUTH"] = '{"auths": {"' + registry + '": {"password": "' + SECRET  # cut
    proc = run(f"oci://{registry}/{repo}:v1", str(tmp_path / "out"), env=env)
    assert proc.returncode == EXIT_CODES[error], proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"wharf-storage-initializer: {error}: ")
    assert SECRET not in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*escape*"))
