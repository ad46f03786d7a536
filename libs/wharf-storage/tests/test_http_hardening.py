"""http(s):// hardening: secret headers stay with their origin, truncated bodies fail, hosts
that do not exist fail at once, and retries reach the progress callback."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from wharf_storage import (
    DestinationUnusable,
    Progress,
    SourceNotFound,
    TransferFailed,
    download,
)


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


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]
    redirect_to: str | None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"weights"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(redirect_to: str | None) -> tuple[ThreadingHTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("H", (_Recorder,), {"seen": seen, "redirect_to": redirect_to})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, seen


@pytest.fixture
def two_origins() -> Iterator[tuple[str, list[dict[str, str]], list[dict[str, str]]]]:
    """An origin that redirects every request to a second origin (another port)."""
    other, other_seen = _serve(None)
    first, first_seen = _serve(f"http://127.0.0.1:{other.server_address[1]}")
    yield f"http://127.0.0.1:{first.server_address[1]}", first_seen, other_seen
    for httpd in (first, other):
        httpd.shutdown()
        httpd.server_close()


def test_host_headers_do_not_follow_a_redirect_to_another_origin(
    two_origins: tuple[str, list[dict[str, str]], list[dict[str, str]]], tmp_path: Path
) -> None:
    url, first_seen, other_seen = two_origins
    env = {"127.0.0.1-headers": '{"X-Api-Key": "named-origin-key", "Authorization": "Bearer tok"}'}
    download(f"{url}/model.bin", tmp_path / "out", env=env)
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"weights"
    assert first_seen[0]["x-api-key"] == "named-origin-key"
    assert first_seen[0]["authorization"] == "Bearer tok"
    assert other_seen, "the redirect was not followed"
    for headers in other_seen:
        assert "x-api-key" not in headers
        assert "authorization" not in headers


# --- A raw-socket server that cuts a chunked body ------------------------------------------


@pytest.fixture
def cut_chunked() -> Iterator[tuple[str, list[int]]]:
    """Answers every request with a chunked body whose connection closes mid-stream."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    served: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(4096)
                    if not more:
                        break
                    data += more
                served.append(1)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"10\r\n0123456789abcdef\r\n"
                    b"10\r\n01234"  # a 16-byte chunk cut after 5 bytes, no final 0 chunk
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", served
    stop.set()
    # close() alone does not wake a thread blocked in accept(); shutdown() does
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_truncated_chunked_body_fails_with_the_network_error(
    cut_chunked: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, served = cut_chunked
    with pytest.raises(TransferFailed) as info:
        download(f"{url}/model.bin", tmp_path / "out", env={"WHARF_STORAGE_ATTEMPTS": "2"})
    assert info.value.exit_code == 8
    assert len(served) == 2  # retried once, then failed
    assert not (tmp_path / "out").exists()


# --- Fail fast, retry the transient, report retries ------------------------------------------


def test_a_host_that_does_not_exist_fails_at_once(tmp_path: Path) -> None:
    needs_nxdomain("no-such-host.invalid")
    events: list[Progress] = []
    with pytest.raises(TransferFailed, match="does not resolve"):
        download(
            "http://no-such-host.invalid/model.bin",
            tmp_path / "out",
            env={"WHARF_STORAGE_ATTEMPTS": "5"},
            progress=events.append,
        )
    assert [e for e in events if e.retry is not None] == []
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.iterdir())


def test_retries_reach_the_progress_callback(http_files: Any, tmp_path: Path) -> None:
    (http_files.root / "m.bin").write_bytes(b"m" * 10)
    http_files.fail["/m.bin"] = [503, 502]
    events: list[Progress] = []
    download(
        http_files.url("m.bin"),
        tmp_path / "out",
        env={"WHARF_STORAGE_ATTEMPTS": "3"},
        progress=events.append,
    )
    retries = [e.retry for e in events if e.retry is not None]
    assert [(r.what, r.attempt, r.attempts, r.reason) for r in retries] == [
        ("m.bin", 1, 3, "HTTP 503"),
        ("m.bin", 2, 3, "HTTP 502"),
    ]
    assert events[-1].retries == 2 and events[-1].files_done == 1
    assert events[-1].done_bytes == 10


def test_not_found_is_not_retried(http_files: Any, tmp_path: Path) -> None:
    events: list[Progress] = []
    with pytest.raises(SourceNotFound):
        download(
            http_files.url("absent.bin"),
            tmp_path / "out",
            env={"WHARF_STORAGE_ATTEMPTS": "5"},
            progress=events.append,
        )
    assert len(http_files.requests) == 1
    assert all(e.retry is None for e in events)


# --- Destination ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["dest", "parent"])
def test_a_destination_that_is_a_file_is_refused(
    http_files: Any, tmp_path: Path, where: str
) -> None:
    (http_files.root / "m.bin").write_bytes(b"m")
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    dest = blocker if where == "dest" else blocker / "out"
    with pytest.raises(DestinationUnusable) as info:
        download(http_files.url("m.bin"), dest, env={})
    assert info.value.exit_code == 10
    assert "not a folder" in info.value.reason
    assert blocker.read_text() == "a file"
    assert http_files.requests == []
