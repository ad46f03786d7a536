"""HTTP/1.1 framing abuse from a raw socket, on the model server and through the ingress.

Malformed request lines, bad and oversized headers, conflicting Content-Length and
Transfer-Encoding, truncated chunked bodies, a Content-Length larger than the body followed by
a close, and pipelined requests. Each probe must get a 4xx or a clean close (never a 5xx,
never a hang), except the well-formed ones, which must be answered; after each, the server
still answers a health check on a new connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from abuse_kit import LIMIT

from wharf_e2e.probes import ProbeCounter
from wharf_e2e.rawhttp import Exchange, exchange, request
from wharf_e2e.servers import Target

# the first test of a session also waits for the servers to start (sklearn imports on busy cores)
pytestmark = [pytest.mark.abuse, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

INFER = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
REJECTED = frozenset({"4xx", "close"})


@dataclass(frozen=True)
class Probe:
    name: str
    build: Callable[[Target], bytes]
    allowed: frozenset[str] = REJECTED
    half_close: bool = False  # stop writing after the bytes, as a client giving up does


def _h(target: Target, extra: str = "", line: str = "GET /v2/health/live HTTP/1.1") -> bytes:
    return f"{line}\r\nHost: {target.host}\r\n{extra}\r\n".encode()


def _post(target: Target, headers: str, body: bytes) -> bytes:
    line = "POST /v1/models/iris:predict HTTP/1.1"
    return f"{line}\r\nHost: {target.host}\r\n{headers}\r\n".encode() + body


def _chunked(target: Target, chunks: bytes) -> bytes:
    return _post(target, "Transfer-Encoding: chunked\r\n", chunks)


PROBES = [
    Probe("garbage request line", lambda t: b"HELLO THERE\r\n\r\n"),
    Probe("binary request line", lambda t: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 4),
    # read as HTTP/0.9 by llhttp: a GET with no headers and no body, answered then closed
    Probe("no version", lambda t: b"GET /v2/health/live\r\n\r\n", REJECTED | {"2xx"}),
    Probe("unknown version", lambda t: _h(t, line="GET /v2/health/live HTTP/9.9")),
    Probe("NUL in method", lambda t: _h(t, line="G\x00T /v2/health/live HTTP/1.1")),
    Probe("control byte in path", lambda t: _h(t, line="GET /v2/health/\x01live HTTP/1.1")),
    Probe("1 MiB path", lambda t: _h(t, line=f"GET /{'a' * LIMIT} HTTP/1.1")),
    Probe("64 KiB method", lambda t: _h(t, line=f"{'G' * 65536} / HTTP/1.1")),
    Probe("header without colon", lambda t: _h(t, "NoColonHere\r\n")),
    Probe("space in header name", lambda t: _h(t, "Bad Name: x\r\n")),
    Probe("space before colon", lambda t: _h(t, "X-Thing : x\r\n")),
    Probe("NUL in header value", lambda t: _h(t, "X-Thing: a\x00b\r\n")),
    Probe("obsolete line folding", lambda t: _h(t, "X-Thing: a\r\n folded\r\n")),
    Probe("10,000 headers", lambda t: _h(t, "".join(f"X-H{i}: v\r\n" for i in range(10_000)))),
    Probe("1 MiB header value", lambda t: _h(t, f"X-Big: {'v' * LIMIT}\r\n")),
    Probe("1 MiB header name", lambda t: _h(t, f"X-{'n' * LIMIT}: v\r\n")),
    Probe(
        "Content-Length and Transfer-Encoding",
        lambda t: _post(t, "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    ),
    Probe(
        "two different Content-Lengths",
        lambda t: _post(t, f"Content-Length: {len(INFER)}\r\nContent-Length: 3\r\n", INFER),
    ),
    Probe("Content-Length not a number", lambda t: _post(t, "Content-Length: abc\r\n", INFER)),
    Probe("negative Content-Length", lambda t: _post(t, "Content-Length: -5\r\n", INFER)),
    Probe(
        "Content-Length beyond 64 bits",
        lambda t: _post(t, f"Content-Length: {'9' * 30}\r\n", INFER),
    ),
    Probe(
        "Content-Length above the limit",
        lambda t: _post(t, f"Content-Length: {LIMIT + 1}\r\n", INFER),
        half_close=True,
    ),
    Probe(
        "Content-Length larger than the body, then close",
        lambda t: _post(t, f"Content-Length: {len(INFER) + 100}\r\n", INFER),
        half_close=True,
    ),
    Probe(
        "Transfer-Encoding not chunked", lambda t: _post(t, "Transfer-Encoding: gzip\r\n", INFER)
    ),
    Probe(
        "chunked twice",
        lambda t: _post(t, "Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
        allowed=frozenset({"4xx", "close"}),
    ),
    Probe("bad chunk size", lambda t: _chunked(t, b"zz\r\n" + INFER + b"\r\n0\r\n\r\n")),
    Probe("chunk size beyond 64 bits", lambda t: _chunked(t, b"f" * 40 + b"\r\nab\r\n0\r\n\r\n")),
    Probe(
        "chunk longer than its size",
        lambda t: _chunked(t, b"2\r\n" + INFER + b"\r\n0\r\n\r\n"),
    ),
    Probe(
        "truncated chunked body, then close",
        lambda t: _chunked(t, b"%x\r\n" % len(INFER) + INFER[:10]),
        half_close=True,
    ),
    Probe(
        "chunked body without the last chunk, then close",
        lambda t: _chunked(t, b"%x\r\n" % len(INFER) + INFER + b"\r\n"),
        half_close=True,
    ),
    Probe(
        "chunked body over the limit",
        lambda t: _chunked(t, (b"%x\r\n" % (64 * 1024) + b"7" * 64 * 1024 + b"\r\n") * 17),
        half_close=True,
    ),
    Probe(
        "HTTP/2 preface, then garbage",
        lambda t: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64,
        half_close=True,
    ),
    Probe("PRI method on HTTP/1.1", lambda t: _h(t, line="PRI * HTTP/1.1"), half_close=True),
    Probe(
        "request line, then close", lambda t: b"GET /v2/health/live HTTP/1.1\r\n", half_close=True
    ),
]


def _outcome(result: Exchange) -> str:
    codes = result.statuses
    if any(code >= 500 for code in codes):
        return "5xx"
    if codes and all(400 <= code < 500 for code in codes):
        return "4xx"
    if codes:
        return "2xx"
    if result.reset:
        return "reset"
    return "close" if result.closed else "no answer"


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_malformed_framing_is_refused(target: Target, probes: ProbeCounter, probe: Probe) -> None:
    with probes.probe("framing: malformed", target.name):
        result = exchange(target.http_port, probe.build(target), half_close=probe.half_close)
        assert _outcome(result) in probe.allowed, result.describe()
        assert target.healthy()


def test_pipelined_requests_are_answered_in_order(target: Target, probes: ProbeCounter) -> None:
    with probes.probe("framing: pipelined", target.name):
        infer = request("POST", "/v1/models/iris:predict", target.host, body=INFER)
        live = request("GET", "/v2/health/live", target.host)
        missing = request("GET", "/v2/models/nope/ready", target.host)
        result = exchange(target.http_port, live + infer + missing + live, want=4, quiet_s=10)
        assert result.statuses == [200, 200, 404, 200], result.describe()
        assert not result.reset


def test_a_bad_request_after_good_pipelined_ones(target: Target, probes: ProbeCounter) -> None:
    """The good requests before it may be answered; uvicorn's parser reads the whole packet
    first, so it may also answer the bad one alone. Either way the last answer is a 4xx."""
    with probes.probe("framing: pipelined", target.name):
        live = request("GET", "/v2/health/live", target.host)
        result = exchange(target.http_port, live + live + b"BROKEN\r\n\r\n", want=3, quiet_s=5)
        *before, last = result.statuses or [0]
        assert all(code == 200 for code in before) and 400 <= last < 500, result.describe()
        assert not result.reset, result.describe()
        assert target.healthy()


def test_two_host_headers(target: Target, probes: ProbeCounter) -> None:
    """The ingress routes by Host, so two of them are refused there (which would it pick?)."""
    with probes.probe("framing: two Host headers", target.name):
        data = _h(target, f"Host: other-{target.host}\r\n")
        result = exchange(target.http_port, data)
        allowed = {"4xx"} if target.name == "ingress" else {"4xx", "2xx"}
        assert _outcome(result) in allowed, result.describe()
        assert target.healthy()
