"""The HTTP `Caller`: one pooled httpx client for every step, KServe's `serviceClient` timeout."""

from __future__ import annotations

import logging
import time

import httpx

from wharf_router.graph.engine import Answer, Headers, RoutingError

log = logging.getLogger("wharf.router.graph")

# a step's answer is read whole (it may feed the next step); bound it as requests are bounded
DEFAULT_MAX_ANSWER_BYTES = 64 << 20


class HttpCaller:
    def __init__(
        self,
        timeout_s: float | None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_connections: int = 256,
    ) -> None:
        # no serviceClient timeout means none at all, as Go's http.DefaultClient
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            trust_env=False,
        )
        self.max_answer_bytes = max_answer_bytes

    async def __call__(self, url: str, body: bytes, headers: Headers) -> Answer:
        started = time.perf_counter()
        try:
            async with self.client.stream("POST", url, content=body, headers=list(headers)) as r:
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
        except httpx.TimeoutException as exc:
            raise RoutingError(500, f"Post {url!r}: timeout ({type(exc).__name__})") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise RoutingError(500, f"Post {url!r}: {exc or type(exc).__name__}") from None
        finally:
            log.debug("step %s took %.1f ms", url, (time.perf_counter() - started) * 1e3)

    async def aclose(self) -> None:
        await self.client.aclose()
