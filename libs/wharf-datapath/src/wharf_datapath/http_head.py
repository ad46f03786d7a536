"""uvicorn's httptools protocol with bounds on the request head (request line and headers):
its size and the time it takes to arrive.

httptools (llhttp) has no limit of its own: a request whose headers never end, or one header
of many megabytes, is buffered whole, in memory, before anything can refuse it. This protocol
counts the bytes that arrive while a request head is being read and answers
`431 {"error": ...}` and closes the connection once they pass `max_head_bytes`.

Two counts: the bytes of the request target and headers as the parser hands them over (a
whole head that arrived in one read), and the bytes of reads that fall wholly inside a head
that has not ended yet (httptools keeps a header to itself until it is whole). So the memory a
head may take is at most the limit plus two reads.

Slow clients: uvicorn closes an idle keep-alive connection, but a connection that has sent part
of a head (a byte now and then, slowloris) or nothing at all is held forever. The head must
arrive whole within `head_timeout_s` of its first byte, or of the connection's start: if not,
the answer is `408 {"error": ...}` and the connection is closed.

The body, once the head is in, must keep an average of `min_body_rate` bytes a second after a
grace of `body_grace_s` (the rule of Kestrel's MinRequestBodyDataRate; nginx's 60 s between two
reads does not stop a client that sends a byte every few seconds). Time while the application
is not reading (uvicorn paused the socket) does not count against the client. A body below the
rate gets `408 {"error": ...}` (when no answer has started) and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_on_url = HttpToolsProtocol.on_url
_on_header = HttpToolsProtocol.on_header
_on_headers_complete = HttpToolsProtocol.on_headers_complete
_on_body = HttpToolsProtocol.on_body
_on_message_complete = HttpToolsProtocol.on_message_complete

# nginx allows 4 x 8 KiB, Node 16 KiB; bearer tokens and tracing headers fit many times over
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
# nginx's client_header_timeout is 60 s, Node's headersTimeout 60 s
DEFAULT_HEAD_TIMEOUT_S = 30.0
# Kestrel's defaults are 240 bytes/s after 5 s; a tensor upload is far faster than either
DEFAULT_MIN_BODY_RATE = 1024
DEFAULT_BODY_GRACE_S = 10.0
_BODY_CHECK_EVERY_S = 1.0


class _PauseAwareFlow(FlowControl):
    """uvicorn's flow control, telling the protocol when it stops and starts reading (it stops
    when the application has not taken the body it holds), so that the body's clock runs only
    while the client is the one being waited on."""

    def __init__(self, transport: asyncio.Transport, on_reading: Any) -> None:
        super().__init__(transport)
        self._on_reading = on_reading

    def pause_reading(self) -> None:
        was_paused = self.read_paused
        super().pause_reading()
        if not was_paused:
            self._on_reading(False)

    def resume_reading(self) -> None:
        was_paused = self.read_paused
        super().resume_reading()
        if was_paused:
            self._on_reading(True)


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parser error, and uvicorn's
    answer to that (`send_400_response`) is replaced by the 431."""


class HeadLimitedHttpProtocol(HttpToolsProtocol):
    max_head_bytes: ClassVar[int] = DEFAULT_MAX_HEAD_BYTES
    head_timeout_s: ClassVar[float] = DEFAULT_HEAD_TIMEOUT_S
    min_body_rate: ClassVar[int] = DEFAULT_MIN_BODY_RATE
    body_grace_s: ClassVar[float] = DEFAULT_BODY_GRACE_S
    # One timer per connection serves both clocks, and it is moved only to an earlier time:
    # a request sets the clocks' deadlines (floats) and finds the timer already due sooner,
    # so keep-alive traffic costs no timer per request. When it fires, the timer checks the
    # deadlines as they are then and is set again for the next one.
    _clock: asyncio.TimerHandle | None = None
    _clock_at = 0.0
    _head_deadline = 0.0  # when the head being read is late; 0.0: no clock on the head
    _body_check_at = 0.0  # when the body's rate is next checked; 0.0: no clock on the body
    _in_body = False  # between the end of a head and the end of its body
    _body_since = 0.0  # when the current measure of the body's rate started
    _body_bytes = 0  # body bytes received since then
    _in_head = True  # between requests, or reading a request line and its headers
    _read_in_head = 0  # bytes of the reads that fell wholly inside the current head
    _parsed_head = 0  # bytes of request target and headers the parser has handed over
    _heads_done = 0
    _too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _PauseAwareFlow(transport, self._reading_changed)
        self._start_head_clock()  # a connection that never sends a whole head is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head and not self._head_deadline:
            self._start_head_clock()
        was_in_head, heads_done = self._in_head, self._heads_done
        super().data_received(data)
        if not (was_in_head and self._in_head) or self._heads_done != heads_done:
            return  # not a head, or a head ended in this read and the count started again
        # a head that has not ended: httptools buffers a header until it is whole
        self._read_in_head += len(data)
        if self._read_in_head > self.max_head_bytes and not self.transport.is_closing():
            self._refuse_head()

    # the parser's callbacks run for every request: they count inline and call uvicorn's own
    # by name (no `super()` object per header)

    def on_url(self, url: bytes) -> None:
        self._parsed_head += len(url)
        if self._parsed_head > self.max_head_bytes:
            self._head_too_large()
        _on_url(self, url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head += len(name) + len(value) + 4
        if self._parsed_head > self.max_head_bytes:
            self._head_too_large()
        _on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._head_deadline = 0.0
        self._in_head = False
        self._heads_done += 1
        self._read_in_head = 0
        self._parsed_head = 0
        _on_headers_complete(self)
        self._in_body = True
        if not self.flow.read_paused:
            self._start_body_clock(self.body_grace_s)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        _on_body(self, body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._body_check_at = 0.0
        _on_message_complete(self)
        self._in_head = True
        self._read_in_head = 0
        self._parsed_head = 0

    def _head_too_large(self) -> None:
        self._too_large = True
        raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    # -- the clocks ------------------------------------------------------------------------

    def _start_head_clock(self) -> None:
        self._head_deadline = self.loop.time() + self.head_timeout_s
        self._wake_by(self._head_deadline)

    def _start_body_clock(self, after_s: float) -> None:
        self._body_since, self._body_bytes = self.loop.time(), 0
        self._body_check_at = self._body_since + after_s
        self._wake_by(self._body_check_at)

    def _wake_by(self, at: float) -> None:
        clock = self._clock
        if clock is not None:
            if self._clock_at <= at:
                return  # due sooner: it checks again then
            clock.cancel()
        self._clock_at = at
        self._clock = self.loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self._clock = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._head_deadline and now >= self._head_deadline:
            self._head_timed_out(now)
        if self._body_check_at and now >= self._body_check_at:
            self._check_body_rate(now)
        if self.transport.is_closing():
            return
        due = [at for at in (self._head_deadline, self._body_check_at) if at]
        if due:
            self._wake_by(min(due))

    def stop_head_timer(self) -> None:
        """Stop the clocks on the head and the body (also when the connection is handed to
        another protocol, as the ingress does with h2c)."""
        self._head_deadline = self._body_check_at = 0.0
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _reading_changed(self, reading: bool) -> None:
        """The application's delay is not the client's: no clock while reading is paused, and
        a fresh measure (with its grace) once it resumes."""
        if not reading:
            self._body_check_at = 0.0
        elif self._in_body and not self.transport.is_closing():
            self._start_body_clock(self.body_grace_s)

    def _check_body_rate(self, now: float) -> None:
        self._body_check_at = 0.0
        if not self._in_body:
            return
        if self._body_bytes < self.min_body_rate * (now - self._body_since):
            rate = self.min_body_rate
            message = f"request body slower than {rate} bytes/s"
            self._answer(b"408 Request Timeout", message, writable=self._not_answering())
            return
        self._body_check_at = now + _BODY_CHECK_EVERY_S

    def _head_timed_out(self, now: float) -> None:
        self._head_deadline = 0.0
        if not self._in_head:
            return
        if not self._idle():
            # the previous response is still being made: not the client's delay
            self._head_deadline = now + self.head_timeout_s
            return
        message = f"request line and headers not received within {self.head_timeout_s:g} s"
        self._answer(b"408 Request Timeout", message)

    def _idle(self) -> bool:
        cycle: Any = getattr(self, "cycle", None)
        return cycle is None or bool(cycle.response_complete)

    def _not_answering(self) -> bool:
        """No answer has started for the request whose body is being read (one that answered
        before reading its body, as a 401 or a 413 does, has had its answer: the slow rest of
        the body only closes the connection)."""
        cycle: Any = getattr(self, "cycle", None)
        return cycle is None or not cycle.response_started

    def _refuse_head(self) -> None:
        limit = self.max_head_bytes
        message = f"request line and headers larger than the limit of {limit} bytes"
        self._answer(b"431 Request Header Fields Too Large", message)

    def _answer(self, status: bytes, message: str, writable: bool | None = None) -> None:
        self.stop_head_timer()
        # a response still being sent on this connection (or owed to a pipelined request before
        # this one) must not be cut by another one
        if self._idle() if writable is None else writable:
            body = json.dumps({"error": message}).encode()
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\n"
                b"content-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
        self.transport.close()


def head_limited(
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S,
    min_body_rate: int = DEFAULT_MIN_BODY_RATE,
    body_grace_s: float = DEFAULT_BODY_GRACE_S,
) -> type[HeadLimitedHttpProtocol]:
    """The protocol class for `uvicorn.Config(http=...)`, with these limits."""
    limits = {
        "max_head_bytes": max_head_bytes,
        "head_timeout_s": head_timeout_s,
        "min_body_rate": min_body_rate,
        "body_grace_s": body_grace_s,
    }
    return type("HeadLimitedHttpProtocol", (HeadLimitedHttpProtocol,), limits)
