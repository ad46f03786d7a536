"""Slow clients (slowloris): a few bytes every 100 ms on several connections, for a bounded time,
while health checks keep being answered on another connection. The slow requests that do
finish are answered; the heads that never end are cut off by the server (408 and a close)
once the head timeout has passed (5 s here, `WHARF_HTTP_HEAD_TIMEOUT`), and so are bodies
trickled after a whole head, once they fall below the minimum body rate (1 KiB/s after 10 s,
`WHARF_HTTP_MIN_BODY_RATE`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from abuse_kit import HEAD_TIMEOUT_S

from wharf_e2e.probes import ProbeCounter
from wharf_e2e.rawhttp import Exchange, connect, read_until_quiet, request, trickle
from wharf_e2e.servers import Target

# the first test of a session also waits for the servers to start (sklearn imports on busy cores)
pytestmark = [pytest.mark.abuse, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

INFER = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
SLOW_REQUESTS = 3  # whole requests, sent slowly, that must be answered
STUCK_HEADS = 3  # heads that never end: the server cuts them off
STUCK_BODIES = 2  # whole heads whose bodies trickle: the server cuts them off
PIECE, EVERY_S, FOR_S = 4, 0.1, 3.0
BODY_FOR_S = 20.0  # past the body rate's 10 s grace


def _slow_request(target: Target) -> Exchange:
    data = request("POST", "/v1/models/iris:predict", target.host, body=INFER)
    result = Exchange()
    with connect(target.http_port) as sock:
        sent = trickle(sock, data, PIECE, EVERY_S, FOR_S)
        sock.sendall(data[sent:])  # what the bounded trickle left: the request must be whole
        read_until_quiet(sock, result, quiet_s=30, want=1)
    return result


def _stuck_head(target: Target) -> Exchange:
    data = f"GET /v2/health/live HTTP/1.1\r\nHost: {target.host}\r\n".encode() + b"X-Slow: " * 64
    result = Exchange()
    with connect(target.http_port) as sock:
        try:
            trickle(sock, data, PIECE, EVERY_S, FOR_S)
        except (ConnectionResetError, BrokenPipeError):
            result.reset = True  # cut off while sending: read what the server said
        # the head never ends: the server must answer 408 and close when its timeout passes
        read_until_quiet(sock, result, quiet_s=HEAD_TIMEOUT_S + 30, want=None)
    return result


def _stuck_body(target: Target) -> Exchange:
    body = b'{"instances": [' + b"[6.8, 2.8, 4.8, 1.4], " * 5000 + b"[0, 0, 0, 0]]}"
    data = request("POST", "/v1/models/iris:predict", target.host, body=body)
    head = data.index(b"\r\n\r\n") + 4
    result = Exchange()
    with connect(target.http_port) as sock:
        sock.sendall(data[:head])  # the head at once: only the body is slow
        try:
            trickle(sock, data[head:], PIECE, EVERY_S, BODY_FOR_S)
        except (ConnectionResetError, BrokenPipeError):
            result.reset = True
        read_until_quiet(sock, result, quiet_s=30, want=None)
    return result


def test_health_answers_while_slow_clients_trickle(target: Target, probes: ProbeCounter) -> None:
    with ThreadPoolExecutor(SLOW_REQUESTS + STUCK_HEADS + STUCK_BODIES) as pool:
        slow = [pool.submit(_slow_request, target) for _ in range(SLOW_REQUESTS)]
        stuck = [pool.submit(_stuck_head, target) for _ in range(STUCK_HEADS)]
        bodies = [pool.submit(_stuck_body, target) for _ in range(STUCK_BODIES)]
        pause = threading.Event()  # never set: a wait that paces the loop
        with httpx.Client(base_url=target.url, headers={"host": target.host}, timeout=30) as c:
            # the slow connections end on their own (bounded trickle, then a read timeout)
            while not all(f.done() for f in [*slow, *stuck, *bodies]):
                with probes.probe("slow clients: health meanwhile", target.name):
                    assert c.get("/v2/health/live").status_code == 200
                    assert c.get(f"/v2/models/{target.model}/ready").status_code == 200
                pause.wait(0.1)
        for future in slow:
            with probes.probe("slow clients: slow request answered", target.name):
                result = future.result(timeout=60)
                assert result.statuses == [200], result.describe()
        for future in stuck:
            with probes.probe("slow clients: unfinished head cut off", target.name):
                result = future.result(timeout=120)
                assert result.statuses in ([408], []), result.describe()
                assert result.closed or result.reset, result.describe()
        for future in bodies:
            with probes.probe("slow clients: trickled body cut off", target.name):
                result = future.result(timeout=120)
                assert result.statuses == [408], result.describe()
                assert result.closed or result.reset, result.describe()
    with probes.probe("slow clients: healthy after", target.name):
        assert target.healthy()
