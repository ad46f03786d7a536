"""The router's HTTP surface, as KServe's: `GET /readyz`, and every other request (any path,
any method, like Go's `/` pattern) runs the graph from its `root` node with the body as sent.

A thin ASGI adapter: it reads the body (bounded in size and by `serverRead`), runs the engine
(bounded by `serverWrite`) and writes the answer with KServe's content type and error shape.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import MutableMapping, Sequence
from typing import Any

from wharf_datapath.tracing import RequestInfo, http_request_info
from wharf_router.common.lifecycle import READYZ, Readiness
from wharf_router.graph import decisions
from wharf_router.graph.engine import Answer, GraphEngine, RoutingError

log = logging.getLogger("wharf.router.graph")

Scope = dict[str, Any]
Message = dict[str, Any]


class GraphApp:
    def __init__(
        self,
        engine: GraphEngine,
        readiness: Readiness,
        patterns: Sequence[re.Pattern[str]],
        *,
        max_body_bytes: int,
        read_timeout_s: float | None,
        write_timeout_s: float | None,
    ) -> None:
        self.engine = engine
        self.readiness = readiness
        self.patterns = list(patterns)
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            return
        if scope["path"] == READYZ:
            status, text = self.readiness.status()
            await _respond(send, status, text, b"text/plain; charset=utf-8")
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.read_timeout_s)
        except TimeoutError:
            await _error(send, RoutingError(408, "the request body was not read in time"))
            return
        except _TooLarge as exc:
            await _error(send, RoutingError(413, str(exc)))
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        forwarded = decisions.headers_to_forward(headers, self.patterns)
        try:
            answer = await asyncio.wait_for(
                self.engine.route(body, forwarded), self.write_timeout_s
            )
        except RoutingError as exc:
            log.warning("failed to process request: %s", exc.cause)
            await _error(send, exc)
            return
        except TimeoutError:
            await _error(send, RoutingError(504, "the graph did not answer in time"))
            return
        await _answer(send, answer)

    async def _read(self, receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge(f"the request body is over {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)


class _TooLarge(Exception):
    pass


def describe_request(scope: MutableMapping[str, Any]) -> RequestInfo | None:
    """The router's span for a request (when tracing is on); readiness probes have none."""
    if scope["path"] == READYZ:
        return None
    return http_request_info(scope, f"{scope['method']} graph")


async def _answer(send: Any, answer: Answer) -> None:
    kind = decisions.response_content_type(answer.body)
    content_type = kind.encode() if kind else b"text/plain; charset=utf-8"
    await _respond(send, answer.status, answer.body, content_type)


async def _error(send: Any, exc: RoutingError) -> None:
    await _respond(send, exc.status, decisions.error_body(exc.cause), b"application/json")


async def _respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
