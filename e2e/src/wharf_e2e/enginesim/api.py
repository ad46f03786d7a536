"""The HTTP surface of one simulated pod: vLLM's OpenAI server routes, `/metrics`, and the
simulator's own `/sim/kv_pull` (the "side channel" a decode pod pulls prefill KV through)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from wharf_e2e.enginesim import metrics
from wharf_e2e.enginesim import tokens as tok
from wharf_e2e.enginesim.engine import Engine, SimRequest
from wharf_e2e.enginesim.protocol import BadRequest, GenerationRequest, parse_chat, parse_completion

MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_TOKENS = 16  # vLLM's default for completions; the simulator has no EOS for chat
EMBEDDING_DIM = 8
ROLES = ("both", "prefill", "decode")
MAX_KNOWN_ENGINES = 4096  # prefill engines a decode pod remembers having handshaken with


@dataclass
class Pod:
    engine: Engine
    role: str = "both"
    kv_connector: bool = False  # honours kv_transfer_params (vLLM with NixlConnector, kv_both)
    stream_interval: int = 1
    host: str = "127.0.0.1"
    port: int = 8000
    client: httpx.AsyncClient | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    # real seconds the first pull from each prefill engine waits, as vLLM's NIXL handshake
    # makes the first hand-off of a pair late (docs/llm.md); later pulls do not wait
    handshake_delay: float = 0.0
    handshaken: set[str] = field(default_factory=set)

    @property
    def model(self) -> str:
        return self.engine.config.model


def error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status)


async def _read_json(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise BadRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _usage(r: SimRequest) -> dict[str, Any]:
    return {
        "prompt_tokens": len(r.prompt),
        "total_tokens": len(r.prompt) + r.generated,
        "completion_tokens": r.generated,
        "prompt_tokens_details": {"cached_tokens": r.cached_tokens + r.external_tokens},
    }


async def _pull(pod: Pod, kv: dict[str, Any], prompt_tokens: int) -> int:
    """Pull a prefill pod's KV: the number of prompt tokens received, 0 if the pull failed (the
    decode pod then computes the prompt itself, as vLLM does, and counts the failure)."""
    host, port = kv.get("remote_host"), kv.get("remote_port")
    body = {"remote_engine_id": kv.get("remote_engine_id"),
            "remote_request_id": kv.get("remote_request_id")}  # fmt: skip
    got = 0
    engine = body["remote_engine_id"]
    if pod.handshake_delay > 0 and isinstance(engine, str) and engine not in pod.handshaken:
        await asyncio.sleep(pod.handshake_delay)
        if len(pod.handshaken) >= MAX_KNOWN_ENGINES:
            pod.handshaken.clear()
        pod.handshaken.add(engine)
        pod.engine.counters.handshakes += 1
    if (
        isinstance(host, str)
        and 0 < len(host) <= 253
        and isinstance(port, int)
        and 0 < port < 65536
        and pod.client is not None
    ):
        try:
            answer = await pod.client.post(f"http://{host}:{port}/sim/kv_pull", json=body)
            if answer.status_code == 200:
                got = int(answer.json().get("num_tokens", 0))
        except (httpx.HTTPError, ValueError):
            got = 0
    if got != prompt_tokens:
        pod.engine.counters.failed_transfers += 1
        return 0
    cfg = pod.engine.config
    await asyncio.sleep(cfg.cost.transfer_seconds(got) * cfg.time_scale)
    return got


class Generation:
    """One completion or chat request through the engine to its answer."""

    def __init__(self, pod: Pod, parsed: GenerationRequest, chat: bool, request_id: str) -> None:
        self.pod = pod
        self.parsed = parsed
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.created = int(time.time())

    def check(self) -> None:
        cfg = self.pod.engine.config
        p = self.parsed
        if p.model is not None and p.model != cfg.model:
            raise LookupError(p.model)
        max_tokens = p.max_tokens or DEFAULT_MAX_TOKENS
        if len(p.prompt) + max_tokens > cfg.max_model_len:
            raise BadRequest(
                f"This model's maximum context length is {cfg.max_model_len} tokens. However, "
                f"you requested {len(p.prompt) + max_tokens} tokens ({len(p.prompt)} in the "
                f"messages, {max_tokens} in the completion). Please reduce the length of the "
                "messages or completion.",
                "messages" if self.chat else "prompt",
            )

    async def submit(self) -> tuple[SimRequest, bool]:
        pod, p = self.pod, self.parsed
        kv = p.kv_transfer_params if pod.kv_connector else None
        offer = bool(kv and kv.get("do_remote_decode"))
        external = 0
        if kv and kv.get("do_remote_prefill") and not offer:
            external = await _pull(pod, kv, len(p.prompt))
        r = SimRequest(
            request_id=self.id,
            prompt=p.prompt,
            max_tokens=1 if offer else (p.max_tokens or DEFAULT_MAX_TOKENS),
            seed=f"{pod.model}\x00{p.cache_salt}",
            external_tokens=external,
        )
        return pod.engine.submit(r), offer

    def _choice(self, text: str, finish: str | None, delta: bool, first: bool) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                    "stop_reason": None}  # fmt: skip
        if not delta:
            message = {"role": "assistant", "content": text, "tool_calls": []}
            return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish,
                    "stop_reason": None}  # fmt: skip
        d: dict[str, Any] = {"content": text}
        if first:
            d["role"] = "assistant"
        return {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}

    def _envelope(self, stream: bool) -> dict[str, Any]:
        if self.chat:
            kind = "chat.completion.chunk" if stream else "chat.completion"
        else:
            kind = "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.pod.model}

    async def answer(self, r: SimRequest, offer: bool, request: Request) -> JSONResponse:
        watcher = asyncio.ensure_future(_wait_disconnect(request))
        try:
            while True:
                getter = asyncio.ensure_future(r.events.get())
                done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    self.pod.engine.abort(r)
                    return error(499, "client disconnected", "ClientClosedRequest")
                if getter.result().finish_reason is not None:
                    break
        finally:
            watcher.cancel()
        body = self._envelope(stream=False)
        text = "".join(r.output())
        body["choices"] = [self._choice(text, r.finish_reason, delta=False, first=True)]
        body["usage"] = _usage(r)
        body["kv_transfer_params"] = self._offer(r) if offer else None
        return JSONResponse(body)

    def _offer(self, r: SimRequest) -> dict[str, Any]:
        params = self.pod.engine.offer_transfer(r)
        params["remote_host"] = self.pod.host
        params["remote_port"] = self.pod.port
        return params

    async def stream(self, r: SimRequest) -> AsyncIterator[bytes]:
        p, interval = self.parsed, self.pod.stream_interval
        finished = False
        try:
            pending: list[str] = []
            sent_any = False
            while not finished:
                event = await r.events.get()
                if self.chat and not sent_any:
                    # Like vLLM, the role chunk goes out with the first token, not before.
                    yield self._sse([self._choice("", None, delta=True, first=True)], r)
                pending.extend(event.tokens)
                finished = event.finish_reason is not None
                if finished or not sent_any or len(pending) >= interval:
                    text = "".join(pending)
                    pending = []
                    choice = self._choice(text, event.finish_reason, delta=True, first=False)
                    yield self._sse([choice], r)
                    sent_any = True
            if p.include_usage:
                chunk = self._envelope(stream=True)
                chunk["choices"] = []
                chunk["usage"] = _usage(r)
                yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            if not finished:
                self.pod.engine.abort(r)

    def _sse(self, choices: list[dict[str, Any]], r: SimRequest) -> bytes:
        chunk = self._envelope(stream=True)
        chunk["choices"] = choices
        if self.parsed.include_usage:
            chunk["usage"] = _usage(r) if self.parsed.continuous_usage else None
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


async def _generate(request: Request, chat: bool) -> Response:
    pod: Pod = request.app.state.pod
    try:
        body = await _read_json(request)
        parsed = parse_chat(body) if chat else parse_completion(body)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if len(request_id) > 256:
            raise BadRequest("X-Request-Id is longer than 256 characters")
        gen = Generation(pod, parsed, chat, request_id)
        gen.check()
    except BadRequest as exc:
        return error(400, str(exc), "BadRequestError", exc.param)
    except LookupError as exc:
        return error(404, f"The model `{exc.args[0]}` does not exist.", "NotFoundError", "model")
    r, offer = await gen.submit()
    headers = {"x-request-id": request_id}
    if parsed.stream:
        return StreamingResponse(gen.stream(r), media_type="text/event-stream", headers=headers)
    response = await gen.answer(r, offer, request)
    response.headers.update(headers)
    return response


async def completions(request: Request) -> Response:
    return await _generate(request, chat=False)


async def chat_completions(request: Request) -> Response:
    return await _generate(request, chat=True)


async def embeddings(request: Request) -> Response:
    pod: Pod = request.app.state.pod
    try:
        body = await _read_json(request)
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(i, str) for i in inputs)
        ):
            raise BadRequest("input must be a string or a non-empty list of strings", "input")
        if sum(len(i) for i in inputs) > MAX_BODY_BYTES:
            raise BadRequest("input is too long", "input")
    except BadRequest as exc:
        return error(400, str(exc), "BadRequestError", exc.param)
    data, total = [], 0
    for index, text in enumerate(inputs):
        tokens = tok.tokenize(text)
        total += len(tokens)
        digest = tok.prompt_digest(tokens, pod.model)
        vector = [(b - 127.5) / 127.5 for b in digest[:EMBEDDING_DIM]]
        data.append({"object": "embedding", "index": index, "embedding": vector})
    usage = {"prompt_tokens": total, "total_tokens": total}
    return JSONResponse({"object": "list", "data": data, "model": pod.model, "usage": usage})


async def models(request: Request) -> Response:
    pod: Pod = request.app.state.pod
    card = {"id": pod.model, "object": "model", "created": pod.created, "owned_by": "vllm",
            "root": pod.model, "parent": None,
            "max_model_len": pod.engine.config.max_model_len}  # fmt: skip
    return JSONResponse({"object": "list", "data": [card]})


async def tokenize(request: Request) -> Response:
    pod: Pod = request.app.state.pod
    try:
        body = await _read_json(request)
        parsed = parse_chat(body) if "messages" in body else parse_completion(body)
    except BadRequest as exc:
        return error(400, str(exc), "BadRequestError", exc.param)
    ids = [tok.token_id(t) for t in parsed.prompt]
    return JSONResponse({"count": len(ids), "max_model_len": pod.engine.config.max_model_len,
                         "tokens": ids})  # fmt: skip


async def health(request: Request) -> Response:
    return Response(status_code=200)


async def version(request: Request) -> Response:
    return JSONResponse({"version": "enginesim"})


async def prometheus(request: Request) -> Response:
    pod: Pod = request.app.state.pod
    return PlainTextResponse(metrics.render(pod.engine), media_type="text/plain; version=0.0.4")


async def reset_prefix_cache(request: Request) -> Response:
    pod: Pod = request.app.state.pod
    pod.engine.reset_prefix_cache()
    return Response(status_code=200)


async def kv_pull(request: Request) -> Response:
    pod: Pod = request.app.state.pod
    try:
        body = await _read_json(request)
    except BadRequest as exc:
        return error(400, str(exc), "BadRequestError")
    engine_id, request_id = body.get("remote_engine_id"), body.get("remote_request_id")
    if not isinstance(engine_id, str) or not isinstance(request_id, str):
        return error(
            400, "remote_engine_id and remote_request_id must be strings", "BadRequestError"
        )
    transfer = pod.engine.take_transfer(engine_id, request_id)
    if transfer is None:
        return error(404, f"no KV held for request {request_id!r}", "NotFoundError")
    return JSONResponse({"num_tokens": transfer.num_tokens})


def build_app(pod: Pod) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pod.engine.start()
        async with httpx.AsyncClient(timeout=10.0) as client:
            pod.client = client
            yield
        await pod.engine.stop()

    routes = [
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/reset_prefix_cache", reset_prefix_cache, methods=["POST"]),
        Route("/sim/kv_pull", kv_pull, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.pod = pod
    return app
