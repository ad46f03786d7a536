"""The HTTP `Caller`: every step's POST over the data-path library's upstream pool.

The pool (wharf_datapath.upstream, what the gateway uses) writes requests as raw bytes on
pooled keep-alive connections and parses answers with httptools; httpx cost about 3 ms of
router CPU per step on this path (docs/benchmarks.md). The pool speaks plain HTTP/1.1 only, so
an `https://` step (a `serviceUrl` given as such) goes through one lazily made httpx client.

KServe's `serviceClient` timeout bounds each step's call, connect to last byte; none means no
limit, as Go's http.DefaultClient.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpx

from wharf_datapath import tracing as tr
from wharf_datapath.upstream import (
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamTooLargeError,
)
from wharf_router.graph.engine import Answer, Headers, RoutingError

log = logging.getLogger("wharf.router.graph")

# a step's answer is read whole (it may feed the next step); bound it as requests are bounded
DEFAULT_MAX_ANSWER_BYTES = 64 << 20

# the pool adds the framing; a propagated header must not add a second one or a second Host
# (Go's client ignores these in a request's header map too). The body is sent with its head,
# so no Expect either: it would only have the replica write an interim 100 Continue
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a plain-HTTP step URL goes: the pool's address, the request target, the Host."""

    address: tuple[str, int]
    path: str
    host: bytes


@lru_cache(maxsize=1024)
def plain_http_target(url: str) -> Target | None:
    """The pool's view of `url`, or None when the pool cannot carry it (not `http://`)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    port = parts.port or 80  # ValueError on a bad port: the caller's RoutingError
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target((parts.hostname, port), path, parts.netloc.rpartition("@")[2].encode("idna"))


class HttpCaller:
    def __init__(
        self,
        timeout_s: float | None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self.pool = UpstreamPool()
        self._tls: httpx.AsyncClient | None = None

    async def __call__(self, url: str, body: bytes, headers: Headers) -> Answer:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                target = plain_http_target(url)
                if target is None:
                    return await self._call_tls(url, body, headers)
                return await self._call_pool(url, target, body, headers)
        except TimeoutError:
            raise RoutingError(500, f"Post {url!r}: timeout after {self.timeout_s} s") from None
        except (UpstreamConnectError, UpstreamClosedError, UpstreamTooLargeError) as exc:
            raise RoutingError(500, f"Post {url!r}: {exc}") from None
        except (OSError, ValueError, httpx.HTTPError) as exc:
            raise RoutingError(500, f"Post {url!r}: {exc or type(exc).__name__}") from None
        finally:
            log.debug("step %s took %.1f ms", url, (time.perf_counter() - started) * 1e3)

    async def _call_pool(self, url: str, target: Target, body: bytes, headers: Headers) -> Answer:
        raw = [(b"host", target.host)]
        raw += [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers
            if k.lower() not in _NOT_FORWARDED
        ]
        resp = await self.pool.request(
            target.address, "POST", target.path, raw, body, max_body=self.max_answer_bytes
        )
        if resp.stream is None:
            return Answer(bytes(resp.body), resp.status)
        # an answer without a length (chunked): read it whole, bounded
        chunks: list[bytes] = []
        size = 0
        stream = resp.stream
        try:
            async for chunk in stream:
                size += len(chunk)
                if size > self.max_answer_bytes:
                    raise RoutingError(
                        500, f"{url}: the answer is over {self.max_answer_bytes} bytes"
                    )
                chunks.append(chunk)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
        return Answer(b"".join(chunks), resp.status)

    async def _call_tls(self, url: str, body: bytes, headers: Headers) -> Answer:
        if self._tls is None:
            self._tls = httpx.AsyncClient(timeout=None, follow_redirects=False, trust_env=False)
        async with self._tls.stream("POST", url, content=body, headers=list(headers)) as r:
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > self.max_answer_bytes:
                    raise RoutingError(
                        500, f"{url}: the answer is over {self.max_answer_bytes} bytes"
                    )
                chunks.append(chunk)
            return Answer(b"".join(chunks), r.status_code)

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._tls is not None:
            await self._tls.aclose()


class TracedHttpCaller(HttpCaller):
    """`HttpCaller` with each step's call in a client span, whose `traceparent` the step
    receives. Used only when tracing is on, so the untraced caller pays nothing for it."""

    def __init__(
        self,
        tracing: tr.Tracing,
        timeout_s: float | None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        super().__init__(timeout_s, max_answer_bytes)
        self.tracing = tracing

    async def __call__(self, url: str, body: bytes, headers: Headers) -> Answer:
        attributes: dict[str, str | int] = {
            tr.HTTP_METHOD: "POST",
            "url.full": url,
            tr.SERVER_ADDRESS: urlsplit(url).hostname or "",
        }
        with self.tracing.client_span("POST", attributes) as span:
            answer = await super().__call__(url, body, self.tracing.inject_text(headers))
            tr.record_status(span, answer.status)
            return answer
