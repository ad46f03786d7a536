"""The gateway's ASGI app: OpenAI requests in, one engine pod (or a prefill and a decode pod)
chosen per request, the answer passed back as it comes.

No web framework on this path: every request pays for what runs here. Bodies are parsed once
with orjson for the few fields routing needs (model, stream, the prompt) and forwarded as the
client sent them; only a prefill/decode hand-off writes a new body (the protocol needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wharf_datapath.relay import ClientStream, client_stream
from wharf_datapath.upstream import (
    BodyStream,
    Response,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamMalformedError,
    UpstreamPool,
    UpstreamResetError,
)
from wharf_protocol.openai import decode_body, error_body, prefill_body
from wharf_router.gateway.config import GatewayConfig
from wharf_router.gateway.endpoints import EndpointSource, Role
from wharf_router.gateway.limits import ApiKey, ApiKeys, TokenBuckets
from wharf_router.gateway.pd_warmup import PairWarmer, hand_off_once, usable_prefills
from wharf_router.gateway.peer_link import PeerLink, PeerSettings, default_name
from wharf_router.gateway.peers import NO_LOAD, Outbox, PeerLoads, PeerMessage, merge, rank
from wharf_router.gateway.pool import Lease, Pod, Pool, own_load, view_of
from wharf_router.gateway.prefix import PrefixIndex, SessionTable, block_hashes, prompt_bytes
from wharf_router.gateway.scheduling import (
    PodView,
    blocks_to_compute,
    least_loaded,
    pick_default,
    pick_round_robin,
)
from wharf_router.gateway.telemetry import Bound, Telemetry

log = logging.getLogger("wharf.router.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GENERATE_APIS = {
    "/v1/completions": "completions",
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
}
SERVING_ROLES: tuple[Role, ...] = ("both", "decode")
PREFILL_ROLES: tuple[Role, ...] = ("prefill",)
RETRY_STATUSES = frozenset({500, 502, 503, 504})
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
        b"host",
    }
)
MAX_ID_BYTES = 256
MAX_PREFILL_ANSWER_BYTES = 16 * 1024 * 1024
JSON = [(b"content-type", b"application/json")]


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


@dataclass(slots=True)
class _Exchange:
    """One client request's state, from arrival to its last byte."""

    api: str
    request_id: bytes
    model: str | None = None
    model_label: str = "-"
    bound: Bound | None = None
    itl: Any = None  # the bound inter-token histogram, observed once per streamed event
    key: ApiKey | None = None
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    deadline: float = 0.0
    first_at: float = 0.0
    last_at: float = 0.0
    events: int = 0
    usage: dict[str, Any] | None = None
    committed: bool = False  # a response head went to the client: no other pod may answer
    finished: bool = False  # the last byte went out: a disconnect now is not a cancel
    client_gone: bool = False  # the relay saw the client gone and ends the request itself
    status: int = 0

    @property
    def key_label(self) -> str:
        return self.key.name if self.key is not None else "-"


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        source: EndpointSource,
        keys: ApiKeys | None = None,
        peers: PeerSettings | None = None,
    ) -> None:
        self.config = config
        self.peer_settings = peers
        self.peer_loads = PeerLoads()
        self.peers: PeerLink | None = None
        self.source = source
        self.keys = keys
        self.prefix = PrefixIndex(config.prefix_default_capacity)
        self.sessions = SessionTable(config.max_sessions)
        self.buckets = TokenBuckets()
        self.rng = random.Random()
        self._turn = 0
        self._picks = 0
        self._pick_blocks = 0  # the last pick's uncached prompt blocks, for its lease
        self._pool: Pool | None = None
        self.upstream = UpstreamPool()
        self.warmer: PairWarmer | None = None
        if config.pd_warmup:
            self.warmer = PairWarmer(
                lambda: list(self.pool.pods.values()),
                self._warm_hand_off,
                concurrency=config.pd_warmup_concurrency,
                on_outcome=lambda outcome: self.telemetry.pd_warmups.labels(outcome).inc(),
            )
        self.telemetry = Telemetry(
            lambda: list(self.pool.pods.values()) if self._pool else [],
            lambda: self.warmer.warm_pairs() if self.warmer is not None and self._pool else 0,
        )
        self.telemetry.peers.set_function(lambda: len(self.peer_loads.peers(time.monotonic())))
        self._source_task: asyncio.Task[None] | None = None
        self._block_bytes = config.block_tokens * config.bytes_per_token

    @property
    def pool(self) -> Pool:
        assert self._pool is not None, "the gateway is not started"
        return self._pool

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._pool = Pool(self.config.probing, on_capacity=self._capacity, on_gone=self._gone)
        self._source_task = asyncio.get_running_loop().create_task(self._run_source())
        settings = self.peer_settings
        if settings is not None and (settings.listen is not None or settings.peers):
            outbox = Outbox(settings.name or default_name())
            self.peers = PeerLink(
                settings,
                outbox,
                lambda: own_load(self.pool.pods.values()),
                self._peer_message,
                self.upstream,
                lambda kind, outcome: self.telemetry.peer_messages.labels(kind, outcome).inc(),
            )
            await self.peers.start()
        if self.warmer is not None:
            self.warmer.start()

    async def _run_source(self) -> None:
        try:
            await self.source.run(self.pool.update)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the endpoint source stopped")

    async def aclose(self) -> None:
        if self._source_task is not None:
            self._source_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._source_task
        if self.peers is not None:
            await self.peers.aclose()
        if self.warmer is not None:
            await self.warmer.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        await self.upstream.aclose()

    def _capacity(self, pod: str, tokens: int) -> None:
        self.prefix.set_capacity(pod, max(1, tokens // self.config.block_tokens))

    async def _warm_hand_off(self, prefill: Pod, decode: Pod, model: str) -> None:
        await hand_off_once(self.upstream, prefill, decode, model, self.config.pd_warmup_timeout)

    def _load_changed(self) -> None:
        if self.peers is not None:
            self.peers.news()

    def _peer_message(self, message: PeerMessage) -> None:
        pods = self.pool.pods
        for name in merge(message, self.prefix, self.peer_loads, pods, time.monotonic()):
            # a peer's pick counts as a pick: ties go to the pod no replica took lately
            self._picks += 1
            pods[name].last_pick = self._picks
            self.telemetry.peer_placements.inc()

    def _gone(self, pod: Pod) -> None:
        self.prefix.forget(pod.name)
        self.upstream.forget(*pod.endpoint.address)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith("/openai/v1/"):
            path = path[7:]
        method: str = scope["method"]
        api = GENERATE_APIS.get(path)
        if api is not None:
            if method != "POST":
                await _json(send, 405, error_body(f"{path} takes POST", 405))
                return
            await self._generate(scope, receive, send, api, path)
        elif path == "/v1/models" and method == "GET":
            await self._models(send)
        elif path == "/health" and method in ("GET", "HEAD"):
            healthy = sum(1 for p in self.pool.pods.values() if p.healthy)
            status = 200 if healthy else 503
            await _json(
                send,
                status,
                {"status": "ok" if healthy else "no healthy pod", "healthy_pods": healthy},
            )
        elif path == "/metrics" and method == "GET":
            data = generate_latest(self.telemetry.registry)
            await _send_whole(send, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], data)
        else:
            await _json(send, 404, error_body(f"{method} {path} is not served here", 404))

    # -- /v1/models -------------------------------------------------------------------------

    async def _models(self, send: Send) -> None:
        cards: dict[str, dict[str, Any]] = {}
        for pod in self.pool.pods.values():
            if pod.healthy and pod.models:
                for model_id, card in pod.models.items():
                    cards.setdefault(model_id, card)
        await _json(send, 200, {"object": "list", "data": list(cards.values())})

    # -- generation requests ----------------------------------------------------------------

    def _request_headers(
        self, scope: Scope
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None, str | None, str | None]:
        """Headers to forward, the request id, the session id and the presented API key."""
        out: list[tuple[bytes, bytes]] = []
        request_id = session = bearer = None
        session_header = self.config.session_header
        strip_auth = self.keys is not None
        for name, value in scope["headers"]:
            if name in HOP_BY_HOP:
                continue
            if name == b"x-request-id":
                if 0 < len(value) <= MAX_ID_BYTES:
                    request_id = value
                continue
            if name == b"authorization":
                if value[:7].lower() == b"bearer ":
                    bearer = value[7:].strip().decode("latin-1")
                if strip_auth:  # the gateway's key is not the engine's
                    continue
            elif name == session_header and 0 < len(value) <= MAX_ID_BYTES:
                session = value.decode("latin-1")
            out.append((name, value))
        return out, request_id, session, bearer

    async def _generate(
        self, scope: Scope, receive: Receive, send: Send, api: str, path: str
    ) -> None:
        headers, request_id, session, bearer = self._request_headers(scope)
        ex = _Exchange(api=api, request_id=request_id or os.urandom(16).hex().encode())
        ex.deadline = time.monotonic() + self.config.request_timeout
        if self.keys is not None:
            key = self.keys.lookup(bearer) if bearer else None
            if key is None:
                await self._reject(
                    send, ex, 401, "a valid API key is required (Authorization: Bearer)"
                )
                return
            ex.key = key
            wait = self.buckets.allows(key, time.monotonic())
            if wait is not None:
                self.telemetry.rate_limited.labels(key.name).inc()
                await self._reject(
                    send, ex, 429, f"token rate limit of key {key.name!r} reached", retry_after=wait
                )
                return
        try:
            raw = await _read_body(receive, self.config.max_body_bytes)
        except _TooLarge:
            await self._reject(
                send, ex, 413, f"request body larger than {self.config.max_body_bytes} bytes"
            )
            return
        except _Gone:
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await self._reject(send, ex, 400, f"request body is not JSON: {exc}")
            return
        if not isinstance(body, dict):
            await self._reject(send, ex, 400, "request body must be a JSON object")
            return
        model = body.get("model")
        ex.model = model if isinstance(model, str) else None
        ex.model_label = self.telemetry.model_label(ex.model)
        ex.bound = self.telemetry.bound(ex.model_label, ex.key_label)
        ex.itl = ex.bound.itl
        ex.stream = body.get("stream") is True
        headers.append((b"x-request-id", ex.request_id))
        await self._guarded(self._route(ex, send, path, headers, raw, body, session), ex, receive)

    async def _guarded(self, work: Awaitable[None], ex: _Exchange, receive: Receive) -> None:
        """Run `work`; a client that disconnects before the end cancels it (and so the
        upstream request: its connection is closed)."""
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not ex.finished and not ex.client_gone:
                        gone = True
                        task.cancel()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await work
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
            self.telemetry.disconnects.inc()
            self._account(ex, 499, "client_disconnected")
        finally:
            watcher.cancel()

    async def _route(
        self,
        ex: _Exchange,
        send: Send,
        path: str,
        headers: list[tuple[bytes, bytes]],
        raw: bytes,
        body: dict[str, Any],
        session: str | None,
    ) -> None:
        hashes: list[int] = []
        if self.config.policy == "default" and self.config.weights.prefix > 0:
            data = prompt_bytes(body)
            if data:
                hashes = block_hashes(
                    ex.model or "",
                    data,
                    block_bytes=self._block_bytes,
                    max_blocks=self.config.max_blocks,
                )
        try:
            async with asyncio.timeout(max(0.0, ex.deadline - time.monotonic())):
                if (
                    ex.api != "embeddings"
                    and "prefill" in self.pool.roles
                    and self.pool.candidates(PREFILL_ROLES, ex.model)
                ):
                    await self._disaggregated(ex, send, path, headers, body, hashes, session)
                else:
                    await self._forward(
                        ex, send, SERVING_ROLES, path, headers, raw, hashes, session
                    )
        except TimeoutError:
            if not ex.committed:
                await self._reject(
                    send,
                    ex,
                    504,
                    f"no answer within {self.config.request_timeout:g} s",
                    reason="timeout",
                )
            else:
                self._account(ex, ex.status, "timeout")

    # -- choosing a pod ---------------------------------------------------------------------

    def _choose(
        self,
        roles: tuple[Role, ...],
        model: str | None,
        hashes: list[int],
        session: str | None,
        exclude: set[str],
    ) -> Pod | None:
        pods = self.pool.candidates(roles, model, exclude)
        if not pods:
            return None
        policy = self.config.policy
        if len(pods) == 1:
            chosen = pods[0]
        elif policy == "round-robin":
            self._turn += 1
            name = pick_round_robin([PodView(p.name) for p in pods], self._turn).name
            chosen = next(p for p in pods if p.name == name)
        else:
            session_pod = self.sessions.get(session) if session is not None else None
            matched = self.prefix.match(hashes, [p.name for p in pods]) if hashes else {}
            now = time.monotonic()
            extra = self.peer_loads.extra(now) if self.peers else {}
            place = (
                rank(self.peers.outbox.sender, self.peer_loads.peers(now)) if self.peers else None
            )
            views = [
                view_of(
                    p, matched.get(p.name, 0), p.name == session_pod, extra.get(p.name, NO_LOAD)
                )
                for p in pods
            ]
            if policy == "least-load":
                view = least_loaded(views, self.rng, place)
            else:
                view = pick_default(
                    views, len(hashes), self.config.weights, self.config.tuning, self.rng, place
                )
            chosen = next(p for p in pods if p.name == view.name)
        self._picks += 1
        chosen.last_pick = self._picks
        self._pick_blocks = 0
        if policy == "default":
            if hashes:
                held = self.prefix.match(hashes, [chosen.name]).get(chosen.name, 0)
                self._pick_blocks = blocks_to_compute(len(hashes), held)
                self.telemetry.prefix_blocks.labels("yes").inc(held)
                self.telemetry.prefix_blocks.labels("no").inc(len(hashes) - held)
                self.prefix.insert(chosen.name, hashes)
                if self.peers is not None:
                    self.peers.placed(chosen.name, hashes)
            if session is not None:
                self.sessions.set(session, chosen.name)
        return chosen

    # -- forwarding -------------------------------------------------------------------------

    async def _forward(
        self,
        ex: _Exchange,
        send: Send,
        roles: tuple[Role, ...],
        path: str,
        headers: list[tuple[bytes, bytes]],
        raw: bytes,
        hashes: list[int],
        session: str | None,
        first: Pod | None = None,
        first_blocks: int = 0,
    ) -> None:
        tried: set[str] = set()
        pod = first
        attempts = self.config.max_attempts
        last_error = "no healthy pod serves this request"
        for attempt in range(1, attempts + 1):
            if pod is None:
                pod = self._choose(roles, ex.model, hashes, session, tried)
                if pod is None:
                    break
            tried.add(pod.name)

            def final(attempt: int = attempt) -> bool:
                return attempt == attempts or not self.pool.candidates(roles, ex.model, tried)

            # the prompt blocks the pod computes, as estimated at its pick
            lease = Lease(pod, first_blocks if pod is first else self._pick_blocks)
            self._load_changed()
            try:
                outcome = await self._try(ex, send, lease, path, headers, raw, final)
            finally:
                lease.end()
                self._load_changed()
            if outcome is None:
                return
            last_error = f"{pod.name}: {outcome}"
            self.telemetry.retries.labels(outcome.split(":")[0]).inc()
            log.info(
                "request %s: %s; trying another pod", ex.request_id.decode("latin-1"), last_error
            )
            pod = None
        status = 503 if not tried else 502
        await self._reject(
            send, ex, status, last_error, reason="no_pod" if not tried else "upstream"
        )

    async def _try(
        self,
        ex: _Exchange,
        send: Send,
        lease: Lease,
        path: str,
        headers: list[tuple[bytes, bytes]],
        raw: bytes,
        final: Callable[[], bool],
    ) -> str | None:
        """Send the request to the leased pod and pass its answer on. None once the client has
        an answer; else why this pod gave none (nothing was sent to the client: try another)."""
        pod = lease.pod
        address = pod.endpoint.address
        try:
            resp = await self.upstream.request(
                address, "POST", pod.endpoint.base_path + path, _with_host(headers, address), raw
            )
        except UpstreamConnectError:
            self.pool.eject(pod, "connection refused")
            return "refused"
        except UpstreamResetError:
            self.pool.eject(pod, "connection reset")
            return "reset"
        except UpstreamClosedError:
            self.pool.eject(pod, "connection closed without an answer")
            return "closed"
        except UpstreamMalformedError as exc:
            # nothing reached the client: another pod may answer well
            self.pool.eject(pod, "a malformed answer")
            return f"malformed: {exc}"
        except OSError as exc:
            return f"error: {exc}"
        if resp.status in RETRY_STATUSES and not final():
            if resp.stream is not None:
                await _discard(resp)
            return f"status {resp.status}"
        if resp.stream is None:
            await self._answer_whole(ex, send, resp)
            return None
        return await self._answer_stream(ex, send, resp, final, lease)

    def _response_headers(self, ex: _Exchange, resp: Response) -> list[tuple[bytes, bytes]]:
        out = [(k, v) for k, v in resp.headers if k.lower() not in HOP_BY_HOP]
        if not any(k.lower() == b"x-request-id" for k, _ in out):
            out.append((b"x-request-id", ex.request_id))
        return out

    async def _answer_whole(self, ex: _Exchange, send: Send, resp: Response) -> None:
        out = self._response_headers(ex, resp)
        data = bytes(resp.body)
        if data.startswith(b"data:"):
            # an event stream that was whole by the time its head was read
            self._saw_chunk(ex, data)
        elif resp.status == 200:
            with contextlib.suppress(orjson.JSONDecodeError):
                doc = orjson.loads(data)
                usage = doc.get("usage") if isinstance(doc, dict) else None
                if isinstance(usage, dict):
                    ex.usage = usage
        ex.committed = True
        ex.status = resp.status
        ex.first_at = ex.first_at or time.perf_counter()
        out.append((b"content-length", b"%d" % len(data)))
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        ex.finished = True
        await send({"type": "http.response.body", "body": data})
        self._account(ex, resp.status, None if resp.status < 400 else "upstream_status")

    async def _answer_stream(
        self,
        ex: _Exchange,
        send: Send,
        resp: Response,
        final: Callable[[], bool],
        lease: Lease,
    ) -> str | None:
        assert resp.stream is not None
        chunks = resp.stream
        # the head is sent with the first chunk: a pod that dies before it can be replaced
        try:
            first = await anext(chunks, None)
        except (OSError, httptools.HttpParserError) as exc:
            await chunks.aclose()
            if not final():
                return f"cut: {exc}"
            first = None
        if first is None and resp.status == 200 and not final():
            await chunks.aclose()
            return "cut: empty answer"
        reason: str | None = None if resp.status < 400 else "upstream_status"
        try:
            # inside the try: a client gone while the head goes out closes the pod's stream
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": self._response_headers(ex, resp),
                }
            )
            ex.committed = True
            ex.status = resp.status
            chunk = first
            try_relay = True
            while chunk is not None:
                done = self._counted(ex, lease, chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if done:
                    # the client has the whole answer and may close at once (the openai client
                    # does); what is left is the pod's end of stream, so a disconnect from here
                    # on is the end of a served request, not a cancel
                    ex.finished = True
                if try_relay:
                    # the rest below ASGI when the server lets us at the client's connection
                    try_relay = False
                    client = client_stream(send)
                    if client is not None:
                        await self._relay(ex, chunks, client, lease)
                        break
                chunk = await anext(chunks, None)
        except _ClientGone:
            # the client's connection closed under the relay (and no disconnect came through
            # ASGI, as when a pipelined request replaced the response cycle): the pod's
            # stream is closed below; nothing more goes to the client
            self.telemetry.disconnects.inc()
            self._account(ex, 499, "client_disconnected")
            return None
        except (OSError, httptools.HttpParserError) as exc:
            # the pod died mid-answer (or its answer turned malformed): what was streamed
            # cannot be taken back; say so in-band
            reason = "upstream_cut"
            message = b"data: " + orjson.dumps(
                error_body(f"the engine stopped mid-answer: {exc}", 502)
            )
            await send({"type": "http.response.body", "body": message + b"\n\n", "more_body": True})
        finally:
            # closes the upstream connection when the client went away (the engine aborts)
            await chunks.aclose()
        ex.finished = True
        # the end goes through ASGI: the server writes the last chunk and keeps its own state
        await send({"type": "http.response.body", "body": b""})
        self._account(ex, resp.status, reason)
        return None

    def _counted(self, ex: _Exchange, lease: Lease, chunk: bytes) -> bool:
        """Count a streamed chunk (`_saw_chunk`; the lease's first token, which its pod's load
        waits for); True when it holds `data: [DONE]`."""
        done = self._saw_chunk(ex, chunk)
        if lease.prefilling and ex.first_at:
            lease.first_token()  # the pod has computed the prompt
            self._load_changed()
        return done

    async def _relay(
        self, ex: _Exchange, chunks: BodyStream, client: ClientStream, lease: Lease
    ) -> None:
        """The rest of a stream, written to the client's connection from the pod
        connection's data callback: no task wake-up and no ASGI send per token. When the
        client's write buffer fills, the pod's connection stops being read until it drains
        (the pod's own flow control then holds the stream: nothing buffers without bound)."""
        drained: list[asyncio.Task[None]] = []

        async def resume_when_drained() -> None:
            await client.drain()
            drained.clear()
            chunks.resume_reading()

        # This runs once per token of every stream, and each Python call in it was a share of
        # the gateway's CPU per token (docs/benchmarks.md, 2026-12-03): so it is one flat
        # frame. The usual chunk (its events after the first, no usage object, no end, its
        # lease no longer waiting for the pod's first token) is counted here as `_saw_chunk`
        # counts it; any other goes through `_counted`. The client's connection is read and
        # written as `ClientStream.gone`, `.write` (`chunk_frame`'s framing) and `.paused` do.
        # Keep the two in step: test_relay.py's test_the_relayed_token_path_counts_as_the_
        # general_one feeds both the same chunks.
        cycle, flow, transport = client.cycle, client.flow, client.transport
        counted, perf_counter = self._counted, time.perf_counter

        def on_data(chunk: bytes) -> None:
            if (
                ex.first_at
                and not lease.prefilling
                and b"[DONE]" not in chunk
                and b'"usage":{' not in chunk
                and b'"usage": {' not in chunk
            ):
                done = False
                events = chunk.count(b"data:")
                if events:
                    now = perf_counter()
                    if ex.itl is not None:
                        ex.itl.observe(now - ex.last_at)
                    ex.last_at = now
                    ex.events += events
            else:
                done = counted(ex, lease, chunk)
            if cycle.disconnected or transport.is_closing():
                if not ex.finished:
                    # ends the relay (its future fails with this) and closes the pod's stream;
                    # the watcher of disconnects must not count it again
                    ex.client_gone = True
                    raise _ClientGone
            else:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            if done:
                ex.finished = True  # as in `_answer_stream`
            if flow.write_paused and not drained:
                chunks.pause_reading()
                drained.append(asyncio.get_running_loop().create_task(resume_when_drained()))

        try:
            await chunks.relay(on_data)
        finally:
            for task in drained:
                task.cancel()

    def _saw_chunk(self, ex: _Exchange, chunk: bytes) -> bool:
        """Count a streamed chunk's events (bytes searches: only a chunk that carries a usage
        object is parsed, and only its usage line); True when it holds the stream's
        `data: [DONE]`.

        This runs once per token of every stream, so it does no more than that. `_relay`'s
        data callback counts the usual chunk itself, the same way: change both.
        """
        events = chunk.count(b"data:")
        if not events:
            return False
        now = time.perf_counter()
        if ex.first_at == 0.0:
            ex.first_at = now
        elif ex.itl is not None:
            ex.itl.observe(now - ex.last_at)
        ex.last_at = now
        done = _holds_done(chunk)
        if done:
            events -= 1
        ex.events += events
        # engines that follow OpenAI send `"usage": null` in every chunk: only an object counts
        if b'"usage":{' in chunk or b'"usage": {' in chunk:
            for line in chunk.split(b"\n"):
                if line.startswith(b"data:") and b'"usage"' in line:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        doc = orjson.loads(line[5:])
                        if isinstance(doc, dict) and isinstance(doc.get("usage"), dict):
                            ex.usage = doc["usage"]
        return done

    # -- prefill/decode ---------------------------------------------------------------------

    async def _disaggregated(
        self,
        ex: _Exchange,
        send: Send,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: dict[str, Any],
        hashes: list[int],
        session: str | None,
    ) -> None:
        decode = self._choose(SERVING_ROLES, ex.model, hashes, session, set())
        decode_blocks = self._pick_blocks  # what it computes if no prefill pod does
        if decode is None:
            await self._reject(
                send, ex, 503, "no healthy decode pod serves this request", reason="no_pod"
            )
            return
        params: dict[str, Any] | None = None
        exclude: set[str] = set()
        cold_pair = False
        if self.warmer is not None:
            # a pair's first hand-off is slow (docs/llm.md): use only warm pairs; with none,
            # the decode pod computes the prompt while the pair warms up in the background
            prefills = self.pool.candidates(PREFILL_ROLES, ex.model)
            usable, cold = usable_prefills({p.name: self.warmer.gate(p, decode) for p in prefills})
            exclude = set(cold)
            cold_pair = bool(prefills) and not usable
            if cold_pair:
                self.telemetry.pd_cold_pairs.inc()
                self.warmer.kick()
                log.debug(
                    "request %s: no warm prefill pod for %s yet; decode computes the prompt",
                    ex.request_id.decode("latin-1"),
                    decode.name,
                )
        prefill = (
            None if cold_pair else self._choose(PREFILL_ROLES, ex.model, hashes, None, exclude)
        )
        if prefill is not None:
            params = await self._prefill(ex, prefill, path, headers, body)
        if params is not None:
            self.telemetry.pd_handoffs.inc()
        raw = orjson.dumps(decode_body(body, params))
        await self._forward(
            ex,
            send,
            SERVING_ROLES,
            path,
            headers,
            raw,
            hashes,
            session,
            first=decode,
            # with the prompt's KV from a prefill pod, the decode pod computes none of it
            first_blocks=0 if params is not None else decode_blocks,
        )
        if (
            params is not None
            and prefill is not None
            and self.warmer is not None
            and ex.status == 200
        ):
            self.warmer.handed_off(prefill, decode)  # the hand-off completed: the pair is warm

    async def _prefill(
        self,
        ex: _Exchange,
        pod: Pod,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: dict[str, Any],
    ) -> dict[str, Any] | None:
        """The prefill pod's `kv_transfer_params`; None when prefill failed (counted), so the
        decode pod computes the prompt itself."""
        address = pod.endpoint.address
        reason = "no_kv_transfer_params"
        lease = Lease(pod, self._pick_blocks)  # all of a prefill request is prefill
        self._load_changed()
        try:
            async with asyncio.timeout(self.config.prefill_timeout):
                resp = await self.upstream.request(
                    address,
                    "POST",
                    pod.endpoint.base_path + path,
                    _with_host(headers, address),
                    orjson.dumps(prefill_body(body)),
                )
                data = bytes(resp.body) if resp.stream is None else await _read_all(resp)
            if resp.status != 200:
                reason = f"status_{resp.status}"
            else:
                doc = orjson.loads(data)
                params = doc.get("kv_transfer_params") if isinstance(doc, dict) else None
                if isinstance(params, dict):
                    return params
        except UpstreamConnectError:
            self.pool.eject(pod, "connection refused")
            reason = "unreachable"
        except TimeoutError:  # before OSError: on 3.11 TimeoutError is one
            reason = "timeout"
        except UpstreamMalformedError:  # before OSError and ValueError: not the pod's JSON
            reason = "malformed_answer"
        except (UpstreamClosedError, OSError, httptools.HttpParserError):
            reason = "unreachable"
        except (orjson.JSONDecodeError, ValueError):
            reason = "malformed_answer"
        finally:
            lease.end()
            self._load_changed()
        self.telemetry.pd_fallbacks.labels(reason).inc()
        log.info(
            "request %s: prefill on %s failed (%s); decode computes the prompt",
            ex.request_id.decode("latin-1"),
            pod.name,
            reason,
        )
        return None

    # -- answers and accounting -------------------------------------------------------------

    async def _reject(
        self,
        send: Send,
        ex: _Exchange,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        headers = [*JSON, (b"x-request-id", ex.request_id)]
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % max(1, int(retry_after + 0.999))))
        data = orjson.dumps(error_body(message, status))
        ex.committed = ex.finished = True
        await _send_whole(send, status, headers, data)
        self._account(ex, status, reason or f"status_{status}")

    def _account(self, ex: _Exchange, status: int, error: str | None) -> None:
        t = self.telemetry
        model, key = ex.model_label, ex.key_label
        t.count_request(model, key, ex.api, status)
        if error is not None:
            t.errors.labels(model, key, error).inc()
        bound = ex.bound or t.bound(model, key)
        if ex.first_at:
            bound.ttft.observe(ex.first_at - ex.started)
        bound.duration.observe(time.perf_counter() - ex.started)
        prompt = completion = 0
        if ex.usage is not None:
            prompt = _int(ex.usage.get("prompt_tokens"))
            completion = _int(ex.usage.get("completion_tokens"))
        elif ex.events:
            completion = ex.events  # no usage asked for: one streamed event is about one token
        if prompt:
            bound.prompt_tokens.inc(prompt)
        if completion:
            bound.completion_tokens.inc(completion)
        if ex.key is not None:
            self.buckets.spend(ex.key, prompt + completion, time.monotonic())


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _with_host(
    headers: list[tuple[bytes, bytes]], address: tuple[str, int]
) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"%s:%d" % (address[0].encode(), address[1])), *headers]


async def _discard(resp: Response) -> None:
    assert resp.stream is not None
    with contextlib.suppress(OSError, UpstreamMalformedError):
        async with contextlib.aclosing(resp.stream) as chunks:
            async for _ in chunks:
                pass


async def _read_all(resp: Response) -> bytes:
    assert resp.stream is not None
    data = bytearray()
    async with contextlib.aclosing(resp.stream) as chunks:  # closed when left early
        async for chunk in chunks:
            data += chunk
            if len(data) > MAX_PREFILL_ANSWER_BYTES:
                raise ValueError("the prefill answer is too large")
    return bytes(data)


class _ClientGone(Exception):
    """The client's connection closed under a relayed stream."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Gone
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise _TooLarge
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], data: bytes
) -> None:
    headers = [*headers, (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _json(send: Send, status: int, payload: Any) -> None:
    await _send_whole(send, status, JSON, orjson.dumps(payload))


def _holds_done(chunk: bytes) -> bool:
    """Whether a streamed chunk holds the end-of-stream event, `data: [DONE]` (the space after
    the colon is optional in an event stream); not a token whose text says `[DONE]`."""
    if b"[DONE]" not in chunk:
        return False
    return any(
        chunk.startswith(event) or b"\n" + event in chunk
        for event in (b"data: [DONE]", b"data:[DONE]")
    )
