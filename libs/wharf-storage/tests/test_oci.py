"""oci:// modelcar images and OCI artifacts against a real registry on loopback (the CNCF
distribution registry, built by scripts/install-test-tools), with images the tests push."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import logging
import socket
import tarfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_storage import (
    AccessDenied,
    ChecksumMismatch,
    InvalidArchive,
    Progress,
    SourceNotFound,
    TransferFailed,
    UnsafePath,
    download,
)
from wharf_storage.backends.oci import realm_refusal, registry_base, registry_credentials

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
EMPTY = "application/vnd.oci.empty.v1+json"
USER = "wharf"
PASSWORD = "wharf-registry-password-7Hq2"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A tar member: a file (data), a folder (dir=True), or a link (link=target)."""

    data: bytes = b""
    dir: bool = False
    link: str | None = None
    hard: bool = False
    fifo: bool = False


def tar_bytes(members: dict[str, Entry | bytes], *, gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, value in members.items():
            entry = value if isinstance(value, Entry) else Entry(value)
            info = tarfile.TarInfo(name)
            if entry.fifo:
                info.type = tarfile.FIFOTYPE
                tf.addfile(info)
            elif entry.dir:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            elif entry.link is not None:
                info.type = tarfile.LNKTYPE if entry.hard else tarfile.SYMTYPE
                info.linkname = entry.link
                tf.addfile(info)
            else:
                info.size = len(entry.data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(entry.data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


class Pusher:
    """Pushes blobs and manifests with the registry's HTTP API (monolithic uploads)."""

    def __init__(self, base: str, auth: tuple[str, str] | None = None) -> None:
        self.host = base.split("://", 1)[1]
        self.client = httpx.Client(base_url=base, auth=auth, timeout=30)

    def blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        start = self.client.post(f"/v2/{repo}/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["location"]
        sep = "&" if "?" in location else "?"
        done = self.client.put(
            f"{location}{sep}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        return digest

    def manifest(self, repo: str, ref: str, manifest: dict[str, Any]) -> str:
        body = json.dumps(manifest).encode()
        answer = self.client.put(
            f"/v2/{repo}/manifests/{ref}",
            content=body,
            headers={"Content-Type": manifest["mediaType"]},
        )
        assert answer.status_code == 201, answer.text
        return digest_of(body)

    def image(
        self,
        repo: str,
        layers: list[tuple[bytes, str]],
        *,
        tag: str = "v1",
        sizes: dict[int, int] | None = None,
    ) -> str:
        """Push an image whose layers are (blob, media type); returns the manifest digest."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
        descriptors = []
        for i, (blob, media) in enumerate(layers):
            digest = self.blob(repo, blob)
            size = (sizes or {}).get(i, len(blob))
            descriptors.append({"mediaType": media, "digest": digest, "size": size})
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": IMAGE_CONFIG,
                "digest": self.blob(repo, config),
                "size": len(config),
            },
            "layers": descriptors,
        }
        return self.manifest(repo, tag, manifest)

    def artifact(
        self, repo: str, files: list[tuple[str, bytes, str, dict[str, str]]], *, tag: str = "v1"
    ) -> str:
        """An ORAS-style artifact: (title, blob, media type, extra annotations) per layer."""
        descriptors = [
            {
                "mediaType": media,
                "digest": self.blob(repo, data),
                "size": len(data),
                "annotations": {"org.opencontainers.image.title": title, **extra},
            }
            for title, data, media, extra in files
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.wharf.model.v1",
            "config": {"mediaType": EMPTY, "digest": self.blob(repo, b"{}"), "size": 2},
            "layers": descriptors,
        }
        return self.manifest(repo, tag, manifest)


@pytest.fixture
def push(oci_registry: str) -> Iterator[Pusher]:
    pusher = Pusher(oci_registry)
    yield pusher
    pusher.client.close()


@pytest.fixture
def auth_push(oci_auth_registry: str) -> Iterator[Pusher]:
    pusher = Pusher(oci_auth_registry, auth=(USER, PASSWORD))
    yield pusher
    pusher.client.close()


def tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = b"-> " + str(p.readlink()).encode()
        elif p.is_file():
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def repo_name() -> str:
    return f"wharf/m{uuid.uuid4().hex[:10]}"


def test_modelcar_image_gives_the_models_folder(push: Pusher, tmp_path: Path) -> None:
    repo = repo_name()
    base = tar_bytes(
        {
            "bin/": Entry(dir=True),
            "bin/sh": Entry(link="/bin/busybox"),  # outside /models: not part of the model
            "etc/os-release": b"ID=test",
            "models/": Entry(dir=True),
            "models/config.json": b'{"a": 1}',
            "models/old.bin": b"old",
            "models/dir/a": b"a",
            "models/link.json": Entry(link="config.json"),
        },
        gz=True,
    )
    upper = tar_bytes(
        {
            "models/.wh.old.bin": b"",
            "models/dir/.wh..wh..opq": b"",
            "models/dir/b": b"b",
            "./models/weights.bin": b"w" * 3000,
        },
        gz=False,
    )
    push.image(repo, [(base, LAYER_GZ), (upper, LAYER_TAR)])
    events: list[Progress] = []
    result = download(f"oci://{push.host}/{repo}:v1", tmp_path / "out", progress=events.append)
    assert tree(tmp_path / "out") == {
        "config.json": b'{"a": 1}',
        "dir/b": b"b",
        "link.json": b"-> config.json",
        "weights.bin": b"w" * 3000,
    }
    assert result.fetched_bytes == len(base) + len(upper)
    assert (events[-1].files_done, events[-1].files_total) == (2, 2)
    assert events[-1].done_bytes == events[-1].total_bytes == len(base) + len(upper)
    assert not list(tmp_path.glob(".*"))  # no partial folder or blob store left


def test_index_picks_the_platform(push: Pusher, tmp_path: Path) -> None:
    repo = repo_name()
    amd = push.image(repo, [(tar_bytes({"models/m": b"amd64"}, gz=True), LAYER_GZ)], tag="a")
    arm = push.image(repo, [(tar_bytes({"models/m": b"arm64"}, gz=True), LAYER_GZ)], tag="b")

    def entry(digest: str, arch: str) -> dict[str, Any]:
        size = len(push.client.get(f"/v2/{repo}/manifests/{digest}").content)
        platform = {"os": "linux", "architecture": arch}
        return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": platform}

    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(arm, "arm64"), entry(amd, "amd64")],
    }
    index_digest = push.manifest(repo, "multi", index)
    download(f"oci://{push.host}/{repo}@{index_digest}", tmp_path / "out")
    assert tree(tmp_path / "out") == {"m": b"amd64"}
    env = {"WHARF_OCI_PLATFORM": "linux/arm64"}
    download(f"oci://{push.host}/{repo}:multi", tmp_path / "arm", env=env)
    assert tree(tmp_path / "arm") == {"m": b"arm64"}


def test_artifact_layers_are_files(push: Pusher, tmp_path: Path) -> None:
    repo = repo_name()
    folder = tar_bytes({"tokenizer/vocab.txt": b"a b c", "tokenizer/": Entry(dir=True)}, gz=True)
    push.artifact(
        repo,
        [
            ("model.onnx", b"onnx" * 500, "application/octet-stream", {}),
            ("tokenizer", folder, LAYER_GZ, {"io.deis.oras.content.unpack": "true"}),
        ],
    )
    result = download(f"oci://{push.host}/{repo}:v1", tmp_path / "out")
    assert tree(tmp_path / "out") == {
        "model.onnx": b"onnx" * 500,
        "tokenizer/tokenizer/vocab.txt": b"a b c",
    }
    assert result.files == 2


def test_interrupted_pull_resumes_per_blob(push: Pusher, tmp_path: Path) -> None:
    repo = repo_name()
    one, two = b"1" * 4000, b"2" * 6000
    push.artifact(
        repo,
        [("a.bin", one, "application/octet-stream", {}), ("b.bin", two, "x/y", {})],
    )

    kept: list[int] = []

    def stop_after_first_file(p: Progress) -> None:
        if p.files_done == 1:
            kept.append(p.done_bytes)
            raise KeyboardInterrupt

    uri = f"oci://{push.host}/{repo}:v1"
    with pytest.raises(KeyboardInterrupt):
        download(uri, tmp_path / "out", progress=stop_after_first_file, workers=1)
    assert not (tmp_path / "out").exists()
    assert kept[0] in (len(one), len(two))
    result = download(uri, tmp_path / "out")
    assert tree(tmp_path / "out") == {"a.bin": one, "b.bin": two}
    assert result.fetched_bytes == len(one) + len(two) - kept[0]


@pytest.mark.parametrize(
    "members",
    [
        {"models/../../escape.txt": b"evil"},
        {"../escape.txt": b"evil"},
        {"/models/abs.txt": b"evil"},
        {"models/link": Entry(link="/etc/passwd")},
        {"models/link": Entry(link="../../escape.txt")},
        {"models/hard": Entry(link="etc/passwd", hard=True)},
        {"models/up": Entry(link=".."), "models/up/escape.txt": b"evil"},
        {"models/.wh..": b""},
        {"models/pipe": Entry(fifo=True)},
    ],
    ids=[
        "dotdot-in-models",
        "dotdot",
        "absolute-name",
        "abs-symlink",
        "rel-symlink",
        "hard",
        "via",
        "whiteout-of-parent",
        "fifo",
    ],
)
def test_escaping_layers_are_refused_and_nothing_is_written(
    push: Pusher, tmp_path: Path, members: dict[str, Entry | bytes]
) -> None:
    repo = repo_name()
    good = tar_bytes({"models/ok.txt": b"ok"}, gz=True)
    push.image(repo, [(good, LAYER_GZ), (tar_bytes(members, gz=True), LAYER_GZ)])
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    with pytest.raises(UnsafePath):
        download(f"oci://{push.host}/{repo}:v1", work / "out")
    assert not (work / "out").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]


def test_artifact_title_that_escapes_is_refused(push: Pusher, tmp_path: Path) -> None:
    repo = repo_name()
    push.artifact(repo, [("../escape.bin", b"x", "application/octet-stream", {})])
    with pytest.raises(UnsafePath):
        download(f"oci://{push.host}/{repo}:v1", tmp_path / "w" / "out")
    assert not list(tmp_path.rglob("escape.bin"))
    assert not (tmp_path / "w" / "out").exists()


# --- How far layers may expand ---------------------------------------------------------------

ZEROS = 64 * 1024 * 1024


def zeros_layer(name: str, size: int = ZEROS) -> bytes:
    """A gzip tar layer with one member of `size` zero bytes (about 64 KiB for 64 MiB), built
    as a stream: the tar header, the zeros, the padding and the end blocks."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    out = [packer.compress(info.tobuf(format=tarfile.PAX_FORMAT))]
    chunk = bytes(1 << 20)
    for _ in range(size // len(chunk)):
        out.append(packer.compress(chunk))
    out.append(packer.compress(bytes(-size % 512 + 1024)))
    out.append(packer.flush())
    return b"".join(out)


def test_modelcar_bomb_is_refused_and_resumes_when_allowed(push: Pusher, tmp_path: Path) -> None:
    repo = repo_name()
    base = tar_bytes({"models/config.json": b"{}"}, gz=True)
    bomb = zeros_layer("models/zeros.bin")
    assert len(bomb) < 1024 * 1024
    push.image(repo, [(base, LAYER_GZ), (bomb, LAYER_GZ)])
    uri = f"oci://{push.host}/{repo}:v1"
    work = tmp_path / "w"
    work.mkdir()
    env = {"WHARF_STORAGE_MAX_EXPANDED": "1Mi"}
    with pytest.raises(TransferFailed, match=r"layer sha256:.*WHARF_STORAGE_MAX_EXPANDED"):
        download(uri, work / "out", env=env)
    assert not (work / "out").exists()
    # What the layers wrote is gone; the verified blobs stay for the next attempt.
    assert not [p for p in work.rglob("*") if p.is_file() and "blobs" not in p.parts]
    result = download(uri, work / "out", env={"WHARF_STORAGE_MAX_EXPANDED": "65Mi"})
    assert result.fetched_bytes == 0
    assert (work / "out" / "zeros.bin").stat().st_size == ZEROS


def test_artifact_folder_bomb_is_refused(push: Pusher, tmp_path: Path) -> None:
    repo = repo_name()
    push.artifact(
        repo,
        [
            (
                "weights",
                zeros_layer("zeros.bin"),
                LAYER_GZ,
                {"io.deis.oras.content.unpack": "true"},
            ),
        ],
    )
    env = {"WHARF_STORAGE_MIN_FREE": "1024Pi"}  # more than any disk: nothing may be unpacked
    with pytest.raises(TransferFailed, match="WHARF_STORAGE_MIN_FREE keeps"):
        download(f"oci://{push.host}/{repo}:v1", tmp_path / "w" / "out", env=env)
    assert not (tmp_path / "w" / "out").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "blobs" not in p.parts]


# --- A proxy in front of the registry: tampers with what it serves, or adds token auth ------


HUGE = 1 << 30  # what an oversized answer would be: far more than any limit, never all sent


@dataclass
class Proxy:
    host: str
    tamper: set[str]  # "blobs" and/or "manifests": change a byte of what is served
    bearer: bool = False  # answer with a token-service challenge, as Docker Hub and GHCR do
    token_requests: list[str | None] | None = None
    realm: str | None = None  # the challenge's realm; default: this proxy's /token
    huge: set[str] = field(default_factory=set)  # "manifests" and/or "token": answer HUGE bytes
    announce: bool = True  # send the huge answer's Content-Length (else end it by closing)
    sent: dict[str, int] = field(default_factory=dict)  # bytes of huge answers actually sent


@pytest.fixture
def proxy(oci_registry: str) -> Iterator[Proxy]:
    upstream = httpx.Client(base_url=oci_registry, timeout=30)
    state = Proxy(host="", tamper=set(), token_requests=[])
    token = "wharf-token-" + uuid.uuid4().hex

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_huge(self, kind: str) -> None:
            """HUGE bytes of JSON-ish filler, streamed until the client hangs up."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if state.announce:
                self.send_header("Content-Length", str(HUGE))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunk = b" " * 65536
            sent = 0
            try:
                while sent < HUGE:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass  # the client stopped reading and closed
            state.sent[kind] = sent

        def do_GET(self) -> None:
            if self.path.startswith("/token"):
                assert state.token_requests is not None
                state.token_requests.append(self.headers.get("Authorization"))
                if "token" in state.huge:
                    return self._send_huge("token")
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._send(401, b"{}", {"Content-Type": "application/json"})
                body = json.dumps({"token": token}).encode()
                return self._send(200, body, {"Content-Type": "application/json"})
            if state.bearer and self.headers.get("Authorization") != f"Bearer {token}":
                realm = state.realm or f"http://{state.host}/token"
                challenge = f'Bearer realm="{realm}",service="wharf-test"'
                return self._send(401, b"{}", {"WWW-Authenticate": challenge})
            kind = "blobs" if "/blobs/" in self.path else "manifests"
            if kind in state.huge:
                return self._send_huge(kind)
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
            answer = upstream.get(self.path, headers=headers)
            body = answer.content
            if kind in state.tamper and body:
                body = body + b" " if kind == "manifests" else bytes([body[0] ^ 0xFF]) + body[1:]
            passed = ("content-type", "docker-content-digest", "content-range")
            self._send(
                answer.status_code,
                body,
                {k: answer.headers[k] for k in passed if k in answer.headers},
            )

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.host = f"127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    upstream.close()


def test_blob_digest_mismatch_is_refused(push: Pusher, proxy: Proxy, tmp_path: Path) -> None:
    repo = repo_name()
    push.artifact(repo, [("model.bin", b"m" * 1000, "application/octet-stream", {})])
    proxy.tamper.add("blobs")
    with pytest.raises(ChecksumMismatch, match="sha256"):
        download(f"oci://{proxy.host}/{repo}:v1", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("model.bin*"))


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_manifest_digest_mismatch_is_refused(
    push: Pusher, proxy: Proxy, tmp_path: Path, by: str
) -> None:
    repo = repo_name()
    digest = push.artifact(repo, [("model.bin", b"m", "application/octet-stream", {})])
    proxy.tamper.add("manifests")
    ref = ":v1" if by == "tag" else f"@{digest}"
    with pytest.raises(ChecksumMismatch, match="manifest digest"):
        download(f"oci://{proxy.host}/{repo}{ref}", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_token_service_challenge_is_followed(push: Pusher, proxy: Proxy, tmp_path: Path) -> None:
    repo = repo_name()
    push.artifact(repo, [("model.bin", b"behind a token", "application/octet-stream", {})])
    proxy.bearer = True
    uri = f"oci://{proxy.host}/{repo}:v1"
    with pytest.raises(AccessDenied):
        download(uri, tmp_path / "anon")
    download(uri, tmp_path / "out", env={"WHARF_OCI_AUTH": docker_config(proxy.host)})
    assert tree(tmp_path / "out") == {"model.bin": b"behind a token"}
    assert proxy.token_requests == [
        None,
        "Basic " + base64.b64encode(b"wharf:" + PASSWORD.encode()).decode(),
    ]


# Loopback sockets buffer a few MiB; a reader that stops at its limit leaves the rest unsent.
BOUNDED = 64 * 1024 * 1024


def sent_in_all(proxy: Proxy, kind: str) -> int:
    """What the proxy sent of a huge answer, once its write has failed (the client hung up)."""
    deadline = time.monotonic() + 60
    while kind not in proxy.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    return proxy.sent[kind]


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "until-close"])
def test_oversized_manifest_is_refused_without_reading_it_all(
    push: Pusher, proxy: Proxy, tmp_path: Path, announce: bool
) -> None:
    repo = repo_name()
    push.artifact(repo, [("model.bin", b"m", "application/octet-stream", {})])
    proxy.huge.add("manifests")
    proxy.announce = announce
    with pytest.raises(InvalidArchive, match=r"manifest v1 is larger than 4 MiB"):
        download(f"oci://{proxy.host}/{repo}:v1", tmp_path / "out")
    assert sent_in_all(proxy, "manifests") < BOUNDED
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "until-close"])
def test_oversized_token_answer_is_refused_without_reading_it_all(
    push: Pusher, proxy: Proxy, tmp_path: Path, announce: bool
) -> None:
    repo = repo_name()
    push.artifact(repo, [("model.bin", b"m", "application/octet-stream", {})])
    proxy.bearer = True
    proxy.huge.add("token")
    proxy.announce = announce
    env = {"WHARF_OCI_AUTH": docker_config(proxy.host)}
    with pytest.raises(AccessDenied, match=r"token service's answer is larger than 64 KiB"):
        download(f"oci://{proxy.host}/{repo}:v1", tmp_path / "out", env=env)
    assert sent_in_all(proxy, "token") < BOUNDED
    assert proxy.token_requests is not None and len(proxy.token_requests) == 1


def _lan_address() -> str:
    """An address of this machine that is not loopback (skip when there is none)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # UDP: picks a route, sends nothing
        address = str(probe.getsockname()[0])
    except OSError:
        address = ""
    finally:
        probe.close()
    if not address or address.startswith("127.") or address == "0.0.0.0":
        pytest.skip("this machine has no address besides loopback")
    return address


@pytest.fixture
def lan_realm() -> Iterator[tuple[str, list[str | None]]]:
    """A token service on this machine's LAN address (not loopback), recording what it gets."""
    seen: list[str | None] = []

    class Token(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = b'{"token": "lan-token"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer((_lan_address(), 0), Token)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://{httpd.server_address[0]}:{httpd.server_address[1]}/token", seen
    httpd.shutdown()
    httpd.server_close()


def test_credentials_never_go_to_a_plain_http_realm_off_loopback(
    push: Pusher,
    proxy: Proxy,
    lan_realm: tuple[str, list[str | None]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    realm, seen = lan_realm
    repo = repo_name()
    push.artifact(repo, [("model.bin", b"m", "application/octet-stream", {})])
    proxy.bearer = True
    proxy.realm = realm
    uri = f"oci://{proxy.host}/{repo}:v1"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AccessDenied) as refused:
        download(uri, tmp_path / "out", env={"WHARF_OCI_AUTH": docker_config(proxy.host)})
    assert realm in refused.value.reason
    assert "over https, or over http to localhost" in refused.value.reason
    assert seen == []  # not even asked
    assert PASSWORD not in caplog.text
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert encoded not in caplog.text
    # Without credentials there is nothing to protect: the realm is asked anonymously (its
    # token does not open this proxy, which only takes its own).
    with pytest.raises(AccessDenied):
        download(uri, tmp_path / "anon")
    assert seen and all(authorization is None for authorization in seen)


@pytest.mark.parametrize(
    ("realm", "credentials", "refused"),
    [
        ("https://auth.docker.io/token", True, None),  # another host, over TLS: allowed
        ("https://10.0.0.5:5001/token", True, None),
        ("http://127.0.0.1:5000/token", True, None),
        ("http://127.0.0.2/token", True, None),  # all of 127.0.0.0/8 is loopback
        ("http://localhost:5000/token", True, None),
        ("http://[::1]:5000/token", True, None),
        ("http://auth.example.com/token", False, None),  # anonymous: nothing to leak
        ("http://auth.example.com/token", True, "plain HTTP"),
        ("http://10.0.0.5:5001/token", True, "plain HTTP"),
        ("http://localhost.evil.example/token", True, "plain HTTP"),
        ("http://0.0.0.0/token", True, "plain HTTP"),
        ("ftp://127.0.0.1/token", False, "not an http(s) URL"),
        ("file:///etc/passwd", True, "not an http(s) URL"),
        ("/token", True, "not an http(s) URL"),
        ("", True, "not an http(s) URL"),
    ],
)
def test_realm_rule(realm: str, credentials: bool, refused: str | None) -> None:
    reason = realm_refusal(realm, with_credentials=credentials)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_missing_repository_is_not_found(push: Pusher, tmp_path: Path) -> None:
    events: list[Progress] = []
    host = push.host
    with pytest.raises(SourceNotFound):
        download(f"oci://{host}/wharf/absent:v1", tmp_path / "out", progress=events.append)
    assert all(e.retry is None for e in events)


# --- Credentials ----------------------------------------------------------------------------


def docker_config(host: str) -> str:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}})


def test_private_registry_needs_credentials(auth_push: Pusher, tmp_path: Path) -> None:
    push = auth_push
    repo = repo_name()
    push.artifact(repo, [("model.bin", b"private", "application/octet-stream", {})])
    uri = f"oci://{push.host}/{repo}:v1"
    with pytest.raises(AccessDenied):
        download(uri, tmp_path / "anon")
    wrong = json.dumps({"auths": {push.host: {"username": USER, "password": "nope"}}})
    with pytest.raises(AccessDenied):
        download(uri, tmp_path / "wrong", env={"WHARF_OCI_AUTH": wrong})
    download(uri, tmp_path / "inline", env={"WHARF_OCI_AUTH": docker_config(push.host)})
    assert tree(tmp_path / "inline") == {"model.bin": b"private"}
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(docker_config(f"http://{push.host}/v2/"))
    download(uri, tmp_path / "dir", env={"DOCKER_CONFIG": str(config_dir)})
    assert tree(tmp_path / "dir") == {"model.bin": b"private"}
    kserve_env = {"KSERVE_OCI_DOCKER_CONFIG": str(config_dir / "config.json")}
    download(uri, tmp_path / "kserve", env=kserve_env)
    assert tree(tmp_path / "kserve") == {"model.bin": b"private"}


@pytest.mark.parametrize(
    ("host", "repo", "env", "base"),
    [
        ("127.0.0.1:5000", "m", {}, "http://127.0.0.1:5000/v2/m"),
        ("localhost:5000", "a/b", {}, "http://localhost:5000/v2/a/b"),
        ("[::1]:5000", "m", {}, "http://[::1]:5000/v2/m"),
        ("ghcr.io", "org/m", {}, "https://ghcr.io/v2/org/m"),
        ("reg.lan:5000", "m", {"WHARF_OCI_PLAIN_HTTP": "reg.lan:5000"}, "http://reg.lan:5000/v2/m"),
        ("reg.lan", "m", {"KSERVE_OCI_INSECURE_REGISTRY": "true"}, "http://reg.lan/v2/m"),
        ("docker.io", "m", {}, "https://registry-1.docker.io/v2/library/m"),
        ("docker.io", "org/m", {}, "https://registry-1.docker.io/v2/org/m"),
    ],
)
def test_registry_base(host: str, repo: str, env: dict[str, str], base: str) -> None:
    assert registry_base(host, repo, env) == base


def test_registry_credentials_shapes() -> None:
    auth = base64.b64encode(b"u:p").decode()
    doc = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": auth},
            "reg:5000": {"username": "a", "password": "b"},
            "tok.example": {"identitytoken": "t0k"},
        }
    }
    env = {"WHARF_OCI_AUTH": json.dumps(doc)}
    assert registry_credentials(env, "docker.io") == ("u", "p")
    assert registry_credentials(env, "reg:5000") == ("a", "b")
    assert registry_credentials(env, "tok.example") == ("<token>", "t0k")
    assert registry_credentials(env, "other") is None
    assert registry_credentials({}, "reg:5000") is None
    with pytest.raises(AccessDenied):
        registry_credentials({"WHARF_OCI_AUTH": "{"}, "reg:5000")
