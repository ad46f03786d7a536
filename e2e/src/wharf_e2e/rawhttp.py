"""A raw-socket HTTP/1.1 client for framing probes: it sends exactly the bytes it is given.

httpx and every other client refuse to send malformed request lines, conflicting lengths or
truncated bodies; servers must survive them anyway. `exchange` writes bytes, optionally stops
writing, and reads what comes back until the server closes or goes quiet, then says which
answers (status codes) arrived and how the connection ended.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@dataclass
class Exchange:
    """What came back on one connection."""

    raw: bytes = b""
    closed: bool = False  # the server closed the connection (FIN) after answering or not
    reset: bool = False  # the connection was reset (RST): a dropped connection
    statuses: list[int] = field(default_factory=list)

    @property
    def status(self) -> int | None:
        return self.statuses[0] if self.statuses else None

    def describe(self) -> str:
        end = "reset" if self.reset else "closed" if self.closed else "open"
        return f"statuses={self.statuses} {end} raw={self.raw[:200]!r}"


def statuses_in(raw: bytes) -> list[int]:
    """The status codes of the HTTP/1.1 responses in `raw`, in order, read one after the other
    by their framing (Content-Length or chunked); an incomplete last response counts."""
    return [status for status, _ in _responses(raw)]


def _responses(raw: bytes) -> list[tuple[int, bool]]:
    """(status, complete) for each response in `raw`."""
    found: list[tuple[int, bool]] = []
    at = 0
    while at < len(raw):
        match = _STATUS.match(raw, at)
        if match is None:
            break
        end = raw.find(b"\r\n\r\n", at)
        if end < 0:
            found.append((int(match.group(1)), False))
            break
        head, at = raw[at:end], end + 4
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length is not None:
            at += int(length.group(1))
        elif re.search(rb"(?im)^transfer-encoding:.*chunked", head):
            at = _end_of_chunks(raw, at)
        found.append((int(match.group(1)), at <= len(raw)))
    return found


def _end_of_chunks(raw: bytes, at: int) -> int:
    while True:
        line_end = raw.find(b"\r\n", at)
        if line_end < 0:
            return len(raw) + 1
        size = int(raw[at:line_end].split(b";")[0] or b"0", 16)
        at = line_end + 2 + size + 2
        if size == 0:
            return at


def connect(port: int, host: str = "127.0.0.1", timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_quiet(
    sock: socket.socket, exchange: Exchange, quiet_s: float, want: int | None = None
) -> None:
    """Read into `exchange` until the server closes, resets, is quiet for `quiet_s`, or (with
    `want`) `want` complete-looking responses have arrived."""
    sock.settimeout(quiet_s)
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return
        except (ConnectionResetError, BrokenPipeError):
            exchange.reset = True
            return
        if not chunk:
            exchange.closed = True
            return
        exchange.raw += chunk
        exchange.statuses = statuses_in(exchange.raw)
        if want is not None and len(exchange.statuses) >= want and _complete(exchange.raw, want):
            return


def _complete(raw: bytes, count: int) -> bool:
    """Whether `count` whole responses have arrived."""
    done = _responses(raw)
    return len(done) >= count and done[count - 1][1]


def exchange(
    port: int,
    data: bytes | Iterable[bytes],
    *,
    half_close: bool = False,
    quiet_s: float = 5.0,
    want: int | None = 1,
    host: str = "127.0.0.1",
) -> Exchange:
    """Send `data` (one buffer, or pieces sent one by one) and read the answer.

    `half_close` shuts the writing side after sending, as a client that gives up mid-request
    does. A reset while sending counts as a reset, like one while reading."""
    result = Exchange()
    with connect(port, host) as sock:
        pieces = [data] if isinstance(data, bytes) else list(data)
        try:
            for piece in pieces:
                sock.sendall(piece)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError):
            # the server may answer and close before reading everything: read what it said
            result.reset = True
        read_until_quiet(sock, result, quiet_s, want)
    return result


def trickle(sock: socket.socket, data: bytes, piece: int, every_s: float, deadline_s: float) -> int:
    """Send `data` a few bytes at a time (slowloris), at most until `deadline_s` from now;
    returns how many bytes were sent."""
    end = time.monotonic() + deadline_s
    sent = 0
    while sent < len(data) and time.monotonic() < end:
        sock.sendall(data[sent : sent + piece])
        sent += piece
        time.sleep(every_s)
    return min(sent, len(data))


def request(method: str, path: str, host: str, headers: dict[str, str] | None = None,
            body: bytes = b"") -> bytes:  # fmt: skip
    """A well-formed HTTP/1.1 request, with Content-Length when there is a body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
