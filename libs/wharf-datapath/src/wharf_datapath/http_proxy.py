"""The HTTP reverse proxy: a lean ASGI app (no framework: every microsecond here is on each
request) in front of the replicas that `Backends` hands out.

- Routes by Host and path through `Backends.resolve`; a request with two Host headers is
  refused (400), since proxies and servers could each pick a different one.
- Request bodies up to `buffer_bytes` are read whole before they are sent, so a request that
  found its replica gone can go to another one (`retry`); larger bodies are passed on while
  they arrive. Bodies over `max_body_bytes` are refused with 413, before anything is sent
  upstream when the client gave a Content-Length.
- Responses without a length (server-sent events, token streams) are passed on chunk by chunk;
  hop-by-hop headers are dropped both ways; the lease's label goes back in `label_header`.
- A replica that closes mid-answer is never passed on as a complete answer: a response with a
  length is read whole before its head goes out, so one cut short of it is a 502; a streamed
  one is cut for the client too (its connection ends with no last chunk).
- The client's raw path is sent upstream untouched unless the backends cut a routing prefix.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from wharf_datapath import retry
from wharf_datapath.backends import Backends, Lease, Route, Unavailable
from wharf_datapath.upstream import (
    Body,
    Response,
    StreamedBody,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamCutError,
    UpstreamMalformedError,
    UpstreamPool,
    UpstreamResetError,
)

log = logging.getLogger("wharf.datapath")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Bodies up to this size are read whole, so they can be sent to another replica when the first
# one is gone. Inference requests are mostly far smaller; above it, memory per request matters
# more than a retry.
DEFAULT_BUFFER_BYTES = 1024 * 1024

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"expect",
    }
)


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class HttpProxy:
    """An ASGI app that proxies each HTTP request to a replica leased from `backends`."""

    def __init__(
        self,
        backends: Backends,
        *,
        max_body_bytes: int,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        label_header: bytes | None = None,
    ) -> None:
        self.backends = backends
        self.max_body_bytes = max_body_bytes
        self.buffer_bytes = min(buffer_bytes, max_body_bytes)
        self.label_header = label_header
        self.upstream = UpstreamPool()
        backends.watch_gone(self.upstream.forget)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        host: str | None = None
        hosts = 0
        length: bytes | None = None
        headers: list[tuple[bytes, bytes]] = []
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
                hosts += 1
            elif key == b"content-length":
                length = value
            if key not in HOP_BY_HOP:
                headers.append((key, value))
        if hosts > 1:
            await _json(send, 400, {"error": "more than one Host header"})
            return
        route = self.backends.resolve(host, scope["path"])
        if isinstance(route, str):
            await _json(send, 404, {"error": route})
            return
        try:
            size = int(length) if length is not None else None
        except ValueError:
            await _json(send, 400, {"error": "malformed Content-Length"})
            return
        if size is not None and size > self.max_body_bytes:
            await self._too_large(send)
            return
        try:
            message = await receive()
            body: Body
            if message["type"] == "http.request" and not message.get("more_body"):
                whole: bytes = message.get("body", b"")  # the usual case: one message
                if len(whole) > self.max_body_bytes:
                    raise BodyTooLarge
                body = whole
            else:
                body = await self._read_body(message, receive, size)
        except BodyTooLarge:
            await self._too_large(send)
            return
        except ClientGone:
            return
        await self._forward(scope, send, route, headers, body)

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        route: Route,
        headers: list[tuple[bytes, bytes]],
        body: Body,
    ) -> None:
        method: str = scope["method"]
        url = _upstream_target(scope, route.path)
        attempt = 0
        error: ConnectionError
        while True:
            attempt += 1
            try:
                lease = await self.backends.acquire(route)
            except Unavailable as exc:
                await _json(send, 503, {"error": str(exc)})
                return
            try:
                try:
                    resp = await self.upstream.request(
                        (lease.host, lease.http_port), method, url, headers, body
                    )
                except UpstreamConnectError as exc:
                    # the replica went away before the request was sent: try another
                    self.backends.mark_unreachable(lease)
                    failure, error = retry.Failure.REFUSED, exc
                except UpstreamResetError as exc:
                    failure, error = retry.Failure.RESET, exc
                except UpstreamClosedError as exc:
                    failure, error = retry.Failure.UNANSWERED, exc
                except BodyTooLarge:
                    await self._too_large(send)
                    return
                except ClientGone:
                    return
                except (OSError, ValueError) as exc:
                    await _json(send, 502, {"error": f"{lease.label}: {exc}"})
                    return
                else:
                    await self._respond(send, resp, lease, method)
                    return
            finally:
                self.backends.release(lease)
            replayable = not (isinstance(body, StreamedBody) and body.started)
            if not retry.may_resend(method, failure, replayable=replayable, attempt=attempt):
                message = (
                    f"{lease.label}: no replica answered"
                    if failure is retry.Failure.REFUSED
                    else f"{lease.label}: {error}"
                )
                await _json(send, 502, {"error": message})
                return
            log.info("%s %s: %s; trying again (%d)", method, url, error, attempt + 1)

    async def _respond(self, send: Send, resp: Response, lease: Lease, method: str) -> None:
        out = [(k, v) for k, v in resp.headers if k.lower() not in HOP_BY_HOP]
        if self.label_header is not None:
            out.append((self.label_header, lease.label.encode("latin-1")))
        if resp.stream is None:
            if method == "HEAD":
                # the length a GET would have, as the replica said it (RFC 9110 8.6), not the
                # empty body's
                out += [(k, v) for k, v in resp.headers if k.lower() == b"content-length"]
            else:
                out.append((b"content-length", b"%d" % len(resp.body)))
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            await send({"type": "http.response.body", "body": bytes(resp.body)})
            return
        # a body without a length (SSE, token streams): passed on chunk by chunk
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        try:
            # closed on the way out: a client gone (send raised, or this task was cancelled)
            # must close the replica's connection, not leave it open until collected
            async with contextlib.aclosing(resp.stream) as chunks:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (UpstreamCutError, UpstreamMalformedError) as exc:
            # no last chunk: the server closes the connection, so the client sees the cut too
            log.warning("%s: %s", lease.label, exc)
            return
        await send({"type": "http.response.body", "body": b""})

    async def _read_body(self, message: Message, receive: Receive, size: int | None) -> Body:
        """The whole body when it fits the buffer, else what was read and a stream of the rest.

        `message` is the first one received, with more to come (or a disconnect)."""
        if message["type"] == "http.disconnect":
            raise ClientGone
        first: bytes = message.get("body", b"")
        chunks = [first]
        read = len(first)
        limit = self.buffer_bytes
        while read <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            chunks.append(chunk)
            read += len(chunk)
            if not message.get("more_body"):
                if read > self.max_body_bytes:
                    raise BodyTooLarge
                return b"".join(chunks)
        if read > self.max_body_bytes:
            raise BodyTooLarge
        return StreamedBody(b"".join(chunks), self._rest(receive, read), size)

    async def _rest(self, receive: Receive, read: int) -> AsyncIterator[bytes]:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            read += len(chunk)
            if read > self.max_body_bytes:
                raise BodyTooLarge
            yield chunk
            if not message.get("more_body"):
                return

    async def _too_large(self, send: Send) -> None:
        limit = self.max_body_bytes
        await _json(
            send,
            413,
            {"error": f"request body larger than the limit of {limit} bytes"},
            close=True,
        )


def _upstream_target(scope: Scope, path: str) -> str:
    """The request target for the replica: the client's raw path unless a prefix was cut."""
    raw_path = scope.get("raw_path")
    url = raw_path.decode("latin-1") if raw_path and scope["path"] == path else path
    query = scope.get("query_string")
    return url + "?" + query.decode("latin-1") if query else url


async def _json(send: Send, status: int, payload: dict[str, Any], close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    if close:
        # the rest of the client's body was not read: the connection cannot carry another
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
