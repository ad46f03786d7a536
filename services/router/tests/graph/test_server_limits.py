"""`routerTimeouts.serverRead`/`serverWrite` and the body limit, through the real router."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
from graph_kit import StartRouter, http_server

from wharf_e2e.testing import exchange_until_closed

pytestmark = pytest.mark.slow


def one_step(url: str, **timeouts: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": url}]}}
    }
    if timeouts:
        spec["routerTimeouts"] = timeouts
    return spec


def test_a_body_that_does_not_arrive_within_server_read_is_408(start_router: StartRouter) -> None:
    router = start_router(one_step("http://127.0.0.1:9/", serverRead=1))
    port = int(router.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # the head promises ten bytes of body that never come
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"] == "Failed to process request"


def test_a_graph_that_does_not_answer_within_server_write_is_504(
    start_router: StartRouter,
) -> None:
    release = threading.Event()

    def slow(_: Any, body: bytes) -> tuple[int, Any]:
        release.wait(60)
        return 200, {}

    with http_server(slow) as url:
        router = start_router(one_step(url, serverWrite=1))
        try:
            answer = router.post({"instances": [1]})
        finally:
            release.set()
    assert answer.status_code == 504
    assert answer.json() == {
        "error": "Failed to process request",
        "cause": "the graph did not answer in time",
    }


def test_a_body_over_the_message_limit_is_413(start_router: StartRouter) -> None:
    def echo(_: Any, body: bytes) -> tuple[int, Any]:
        return 200, {"size": len(body)}

    with http_server(echo) as url:
        router = start_router(one_step(url), env={"WHARF_MAX_MESSAGE_BYTES": "1000"})
        small = router.post({"x": "a" * 100})
        assert small.status_code == 200
        big = router.post({"x": "a" * 2000})
    assert big.status_code == 413
    assert "over 1000 bytes" in big.json()["cause"]


def test_request_heads_are_bounded_in_size_and_time(start_router: StartRouter) -> None:
    """As on every hop (wharf_protocol.limits): a head over 64 KiB is 431, a head that takes
    longer than `WHARF_HTTP_HEAD_TIMEOUT` is 408; both close the connection."""
    router = start_router(one_step("http://127.0.0.1:9/"), env={"WHARF_HTTP_HEAD_TIMEOUT": "0.5"})
    port = int(router.url.rsplit(":", 1)[1])
    big = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n"
    answer = exchange_until_closed(port, [big])
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    slow = [bytes([c]) for c in b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefgh"]
    answer = exchange_until_closed(port, slow, pause_s=0.1)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"not received within 0.5 s" in answer
    assert router.proc.poll() is None  # and it serves on
