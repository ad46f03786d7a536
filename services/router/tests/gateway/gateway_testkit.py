"""Test doubles and servers for the gateway tests.

`FakeEngine` is a TEST DOUBLE of vLLM's OpenAI server: a minimal ASGI app that answers
completions, chat completions (streamed or not, with `stream_options.include_usage`),
embeddings, `/v1/models`, `/health` and `/metrics` with vLLM's metric names, and the prefill
side of the P/D hand-off (`kv_transfer_params`). It computes nothing: each answer is a fixed
number of words. It records what it was sent, so tests can check what the gateway forwarded.
Real engines (the engine simulator, vLLM on CPU) are tested elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

Scope = dict[str, Any]
# the fixtures that start a fake engine or a gateway
Start = Callable[..., Awaitable[Any]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeEngine:
    name: str
    model: str = "tiny"
    token_delay: float = 0.0  # seconds between streamed words
    fail_status: int | None = None  # answer every generation request with this status
    waiting: float = 0.0
    kv_usage: float = 0.0
    num_gpu_blocks: int = 1000
    block_size: int = 16
    seen: list[Seen] = field(default_factory=list)
    cancelled: int = 0  # streams whose client went away before the end
    active: int = 0
    hold: asyncio.Event | None = None  # when set: generation waits for it before answering
    # when set: a streamed answer waits for it after its first word (a pod in its decode phase)
    hold_decode: asyncio.Event | None = None
    # when set: a request that brings a prefill's KV (a P/D hand-off's decode half) waits for
    # it, as vLLM's first hand-off of a pair waits for the NIXL handshake
    hold_handoff: asyncio.Event | None = None
    # when set: a stream's `data: [DONE]` goes out, then the end of the body waits for it (the
    # end of stream reaching the gateway after the client has read the last event)
    hold_after_done: asyncio.Event | None = None
    word_bytes: int = 0  # pad each streamed word to this many bytes (a stream of many bytes)
    streamed: int = 0  # streamed words sent, all streams

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/health":
            await _send(send, 200, b"", b"text/plain")
        elif method == "GET" and path == "/metrics":
            await _send(send, 200, self.metrics_text().encode(), b"text/plain; version=0.0.4")
        elif method == "GET" and path == "/v1/models":
            data = {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "owned_by": "vllm", "root": self.model}
                ],
            }
            await _send(send, 200, orjson.dumps(data))
        elif method == "POST" and path in (
            "/v1/completions",
            "/v1/chat/completions",
            "/v1/embeddings",
        ):
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            doc = orjson.loads(body)
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.seen.append(Seen(path, headers, doc))
            self.active += 1
            try:
                await self._generate(path, doc, headers, receive, send)
            finally:
                self.active -= 1
        else:
            await _send(send, 404, b'{"error": "not found"}')

    def metrics_text(self) -> str:
        m = f'model_name="{self.model}"'
        return (
            "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{m}}} {self.waiting}\n"
            f"vllm:num_requests_running{{{m}}} {self.active}\n"
            f"vllm:kv_cache_usage_perc{{{m}}} {self.kv_usage}\n"
            f'vllm:cache_config_info{{block_size="{self.block_size}",num_gpu_blocks="{self.num_gpu_blocks}"}} 1.0\n'
        )

    async def _generate(
        self, path: str, doc: dict[str, Any], headers: dict[str, str], receive: Any, send: Any
    ) -> None:
        if self.hold is not None:
            await self.hold.wait()
        kv_in = doc.get("kv_transfer_params")
        if (
            self.hold_handoff is not None
            and isinstance(kv_in, dict)
            and kv_in.get("do_remote_prefill")
        ):
            await self.hold_handoff.wait()
        if self.fail_status is not None:
            await _send(
                send, self.fail_status, b'{"error": {"message": "engine failure", "code": 500}}'
            )
            return
        rid = headers.get("x-request-id", "none")
        if path == "/v1/embeddings":
            data = {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "model": self.model,
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
            await _send(send, 200, orjson.dumps(data))
            return
        chat = path.endswith("chat/completions")
        n = int(doc.get("max_tokens") or 4)
        words = [f"{self.name}-w{i}".ljust(self.word_bytes, "x") for i in range(n)]
        prompt_tokens = 7
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
        }
        kv_out = None
        if isinstance(kv_in, dict) and kv_in.get("do_remote_decode"):
            kv_out = {
                "do_remote_prefill": True,
                "do_remote_decode": False,
                "remote_engine_id": self.name,
                "remote_block_ids": [1, 2],
                "remote_host": "127.0.0.1",
                "remote_port": 5600,
            }
        if not doc.get("stream"):
            text = " ".join(words)
            choice = {"index": 0, "finish_reason": "length"}
            choice |= (
                {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            )
            answer = {
                "id": f"cmpl-{rid}",
                "object": "chat.completion" if chat else "text_completion",
                "model": self.model,
                "choices": [choice],
                "usage": usage,
                "kv_transfer_params": kv_out,
            }
            await _send(send, 200, orjson.dumps(answer))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        gone = asyncio.get_running_loop().create_task(_disconnected(receive))
        try:
            for i, word in enumerate(words):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                if i == 1 and self.hold_decode is not None:
                    await self.hold_decode.wait()
                if gone.done():
                    self.cancelled += 1
                    return
                delta = {"delta": {"content": word}} if chat else {"text": word}
                chunk = {
                    "id": f"cmpl-{rid}",
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "model": self.model,
                    "choices": [
                        {"index": 0, **delta, "finish_reason": "length" if i == n - 1 else None}
                    ],
                }
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                        "more_body": True,
                    }
                )
                self.streamed += 1
            opts = doc.get("stream_options") or {}
            if opts.get("include_usage"):
                final: dict[str, Any] = {
                    "id": f"cmpl-{rid}",
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "model": self.model,
                    "choices": [],
                    "usage": usage,
                }
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + orjson.dumps(final) + b"\n\n",
                        "more_body": True,
                    }
                )
            if self.hold_after_done is None:
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            else:
                done = b"data: [DONE]\n\n"
                await send({"type": "http.response.body", "body": done, "more_body": True})
                await self.hold_after_done.wait()
                await send({"type": "http.response.body", "body": b""})
        finally:
            gone.cancel()


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(send: Any, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Served:
    """An ASGI app served by uvicorn on a free loopback port, in this event loop."""

    def __init__(self, app: Any, port: int | None = None, http: str = "httptools") -> None:
        self.app = app
        self.http = http
        self.port = port or free_port()
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Served:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            loop="asyncio",
            http=self.http,
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.get_running_loop().create_task(self.server.serve())
        deadline = time.monotonic() + 30
        while not self.server.started:
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"server on {self.port} did not start")
            await asyncio.sleep(0.01)
        return self

    async def stop(self, abrupt: bool = False) -> None:
        """Stop serving; `abrupt`: drop open connections at once, as a pod that dies does."""
        assert self.server is not None and self.task is not None
        if abrupt:
            for server in self.server.servers:
                server.close()
            for conn in list(self.server.server_state.connections):
                with contextlib.suppress(Exception):
                    conn.transport.abort()
        self.server.should_exit = True
        try:
            # a killed pod's handlers may still wait on something: they do not hold it up long
            await asyncio.wait_for(asyncio.shield(self.task), 1 if abrupt else 10)
        except TimeoutError:
            self.server.force_exit = True
            await asyncio.wait_for(self.task, 10)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[Served]:
    served = await Served(app).start()
    try:
        yield served
    finally:
        if not served.task or not served.task.done():
            await served.stop(abrupt=True)
