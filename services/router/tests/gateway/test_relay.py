"""The token stream's relay below ASGI: under uvicorn's httptools protocol a stream's body is
written to the client's connection from the pod connection's data callback; anywhere else (h11,
a wrapper of `send` that does not pass bodies) the gateway keeps to ASGI. Both ways the client
gets the same answer, a pod cut mid-stream is said in-band, and a client that does not read
holds the pod's stream instead of filling the gateway's memory."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from conftest import FAST_PROBING
from gateway_testkit import Served, Start
from test_proxy import metric, scrape

from wharf_datapath.relay import ClientStream, chunk_frame, passes_body
from wharf_e2e.testing import until
from wharf_router.gateway.app import Gateway, _Exchange
from wharf_router.gateway.config import GatewayConfig
from wharf_router.gateway.endpoints import Endpoint, StaticEndpoints

STREAM = {"model": "tiny", "prompt": "x", "stream": True}


def test_a_chunk_is_framed_with_its_length_in_hex() -> None:
    assert chunk_frame(b"data: one\n\n") == b"b\r\ndata: one\n\n\r\n"
    assert chunk_frame(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"


class CountingBodies:
    """An ASGI wrapper that counts the body messages it passes; `marked`: it says it passes
    them unchanged (as the tracing wrapper does), so the gateway may write below it."""

    def __init__(self, app: Any, marked: bool) -> None:
        self.app = app
        self.marked = marked
        self.bodies = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.bodies += 1
            await send(message)

        await self.app(scope, receive, passes_body(counting, send) if self.marked else counting)


async def serve_gateway(
    servers: list[Served], endpoints: list[Endpoint], marked: bool, http: str = "httptools"
) -> tuple[Gateway, CountingBodies, Served]:
    gateway = Gateway(
        replace(GatewayConfig(probing=FAST_PROBING)), StaticEndpoints(endpoints), None
    )
    app = CountingBodies(gateway, marked)
    served = await Served(app, http=http).start()
    servers.append(served)
    await until(
        lambda: (
            all(p.models is not None for p in gateway.pool.pods.values())
            and len(gateway.pool.pods) == len(endpoints)
        ),
        "the gateway to learn its pods' models",
        timeout_s=20,
    )
    return gateway, app, served


def events(body: bytes) -> list[bytes]:
    return [e for e in body.split(b"\n\n") if e.startswith(b"data:")]


@pytest.mark.parametrize(
    ("marked", "http", "relayed"),
    [(True, "httptools", True), (False, "httptools", False), (True, "h11", False)],
    ids=["relayed", "wrapped-send", "h11"],
)
async def test_a_stream_arrives_whole_relayed_or_through_asgi(
    servers: list[Served], start_engine: Start, marked: bool, http: str, relayed: bool
) -> None:
    _, _, ep = await start_engine("a", token_delay=0.002)
    gateway, app, gw = await serve_gateway(servers, [ep], marked, http)
    body = {**STREAM, "max_tokens": 30, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient() as http_client:
        for _ in range(2):  # the second on the same keep-alive connections, both sides
            r = await http_client.post(gw.url + "/v1/completions", json=body)
            assert r.status_code == 200
            got = events(r.content)
            words = [orjson.loads(e[5:])["choices"][0]["text"] for e in got[:-2]]
            assert words == [f"a-w{i}" for i in range(30)]
            assert orjson.loads(got[-2][5:])["usage"]["completion_tokens"] == 30
            assert got[-1] == b"data: [DONE]"
        # without usage asked for, the tokens are counted by the stream's events (the per-token
        # path counts them itself, relayed)
        r = await http_client.post(gw.url + "/v1/completions", json={**STREAM, "max_tokens": 30})
        assert len(events(r.content)) == 31
    # relayed: the wrapper passed the first chunk and the end only (three times); else every one
    assert (app.bodies <= 9) is relayed
    text = await scrape(gw)
    assert metric(text, "wharf_router_completion_tokens_total", model="tiny") == 60 + 30
    assert metric(text, "wharf_router_time_to_first_token_seconds_count", model="tiny") == 3
    assert metric(text, "wharf_router_inter_token_latency_seconds_count", model="tiny") > 2
    assert gateway.pool.pods["a"].in_flight == 0


@pytest.mark.parametrize("marked", [True, False], ids=["relayed", "wrapped-send"])
async def test_a_pod_cut_mid_stream_is_said_in_band_then_the_stream_ends(
    servers: list[Served], start_engine: Start, marked: bool
) -> None:
    hold = asyncio.Event()
    engine, pod, ep = await start_engine("a", hold_decode=hold)
    _, _, gw = await serve_gateway(servers, [ep], marked)
    async with (
        httpx.AsyncClient() as http_client,
        http_client.stream(
            "POST", gw.url + "/v1/completions", json=STREAM | {"max_tokens": 9}
        ) as r,
    ):
        assert r.status_code == 200
        seen = b""
        async for chunk in r.aiter_bytes():
            seen += chunk
            if b"a-w0" in seen and pod.task is not None and not pod.task.done():
                await pod.stop(abrupt=True)  # the pod dies in its decode phase
        # the body ended cleanly (httpx read its last chunk), with the error said before it
    got = events(seen)
    assert b"a-w0" in got[0]
    error = orjson.loads(got[-1][5:])
    assert error["error"]["code"] == 502 and "mid-answer" in error["error"]["message"]
    text = await scrape(gw)
    assert metric(text, "wharf_router_request_errors_total", reason="upstream_cut") == 1
    hold.set()
    del engine


async def test_a_client_that_does_not_read_holds_the_pods_stream(
    servers: list[Served], start_engine: Start
) -> None:
    # 4000 events of 4 KiB, more than the sockets between pod, gateway and client hold: a
    # gateway that read on regardless would buffer most of it for the client
    engine, _, ep = await start_engine("a", word_bytes=4096)
    _, _, gw = await serve_gateway(servers, [ep], marked=True)
    total = 4000
    # a client that does not read keeps its socket's receive buffer small (no autotuning)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    payload = orjson.dumps(STREAM | {"max_tokens": total})
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    assert gw.server is not None

    def buffered() -> int:  # what the gateway holds for its clients, not yet sent
        assert gw.server is not None
        return max(
            (c.transport.get_write_buffer_size() for c in gw.server.server_state.connections),
            default=0,
        )

    # until the pod is held (no event sent in half a second) or done
    most, last = 0, -1
    while engine.streamed != last and engine.streamed < total:
        last = engine.streamed
        for _ in range(10):
            most = max(most, buffered())
            await asyncio.sleep(0.05)
    assert engine.streamed < total, "the pod was not held by the client that does not read"
    assert most < 1024 * 1024, f"the gateway buffered {most} bytes for the client"
    # the client reads: the rest comes, all of it
    data = b""
    while b"0\r\n\r\n" not in data[-16:]:
        more = await reader.read(1 << 20)
        assert more, "the gateway closed the connection before the end"
        data += more
    writer.close()
    assert data.count(b"data: {") == total and b"data: [DONE]" in data


@pytest.mark.parametrize("marked", [True, False], ids=["relayed", "wrapped-send"])
async def test_a_client_gone_mid_stream_cancels_the_pods_stream(
    servers: list[Served], start_engine: Start, marked: bool
) -> None:
    engine, _, ep = await start_engine("a", token_delay=0.05)
    gateway, _, gw = await serve_gateway(servers, [ep], marked)
    async with (
        httpx.AsyncClient() as http_client,
        http_client.stream(
            "POST", gw.url + "/v1/completions", json=STREAM | {"max_tokens": 200}
        ) as r,
    ):
        seen = b""
        async for chunk in r.aiter_bytes():
            seen += chunk
            if seen.count(b"data:") >= 3:
                break  # past the first event: the relay has the stream; the client goes away
    await until(lambda: engine.cancelled == 1, "the pod to see the stream cancelled", 60)
    await until(lambda: gateway.pool.pods["a"].in_flight == 0, "the request to end", 60)
    text = await scrape(gw)
    assert metric(text, "wharf_router_client_disconnects_total") == 1


async def test_a_pipelining_client_gone_mid_stream_cancels_the_pods_stream(
    servers: list[Served], start_engine: Start
) -> None:
    # a second request written before the first answer ends replaces uvicorn's response cycle:
    # when the client then goes, only the new cycle hears of it, and no disconnect comes
    # through ASGI for the streamed one; the relay must see the closed connection itself
    engine, _, ep = await start_engine("a", token_delay=0.02)
    gateway, _, gw = await serve_gateway(servers, [ep], marked=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    payload = orjson.dumps(STREAM | {"max_tokens": 500})
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    seen = b""
    while seen.count(b"data:") < 2:  # past the first event: the relay has the stream
        more = await asyncio.wait_for(reader.read(1 << 16), 30)
        assert more, "the gateway closed the connection before the stream began"
        seen += more
    writer.write(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
    await writer.drain()
    while seen.count(b"data:") < 4:  # the stream goes on with the second request queued
        more = await asyncio.wait_for(reader.read(1 << 16), 30)
        assert more, "the gateway closed the connection mid-stream"
        seen += more
    writer.close()
    await writer.wait_closed()
    # the request ends either way: cancelled, or once the pod has streamed all 500 events
    # into a closed connection
    await until(
        lambda: engine.active == 0 and gateway.pool.pods["a"].in_flight == 0,
        "the request to end at the pod and at the gateway",
        60,
    )
    assert engine.cancelled == 1, "the pod streamed on for a client that was gone"
    assert engine.streamed < 500
    text = await scrape(gw)
    assert metric(text, "wharf_router_client_disconnects_total") == 1
    assert metric(text, "wharf_router_requests_total", api="completions", code="499") == 1
    assert metric(text, "wharf_router_requests_total", api="completions", code="200") == 0
    assert metric(text, "wharf_router_request_errors_total", reason="client_disconnected") == 1


class Recorded:
    """What the relay's callback touches on the client's side and the histogram, recorded."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.gaps: list[float] = []

    # the transport
    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    # the inter-token histogram
    def observe(self, gap: float) -> None:
        self.gaps.append(gap)


class WaitingLease:
    """A lease still waiting for its pod's first token: it hears of it once."""

    def __init__(self, prefilling: bool) -> None:
        self.prefilling = prefilling
        self.first_tokens = 0

    def first_token(self) -> None:
        self.prefilling = False
        self.first_tokens += 1


class Capture:
    """The part of a pod's body stream that `_relay` uses: it keeps the data callback."""

    on_data: Any = None

    async def relay(self, on_data: Any) -> None:
        self.on_data = on_data


CHUNKS = [
    b'data: {"choices":[{"text":"a"}]}\n\n',
    b'data: {"choices":[{"text":"b"}]}\n\ndata: {"choices":[{"text":"c"}]}\n\n',  # merged
    b": a comment, no event\n\n",
    b'data: {"choices":[{"text":"d"}],"usage":null}\n\n',
    b'data: {"choices":[{"text":"[DONE]"}]}\n\n',  # a token whose text says it
    b'data: {"choices":[],"usage": {"prompt_tokens":3,"completion_tokens":4}}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}\n\n',
    b"data:[DONE]\n\n",
]


@pytest.mark.parametrize("prefilling", [False, True], ids=["decoding", "waiting-first-token"])
@pytest.mark.parametrize("first_counted", [False, True], ids=["from-first", "after-first"])
async def test_the_relayed_token_path_counts_as_the_general_one(
    prefilling: bool, first_counted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `_relay`'s callback counts the usual chunk itself (one frame per token): for every kind
    # of chunk it must leave what `_counted` leaves, and write each as one HTTP/1.1 chunk
    clock = [1.0]  # both paths read the same time for a chunk: their gaps must be equal
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    gateway = Gateway(GatewayConfig(), StaticEndpoints([]), None)
    relayed, general = _Exchange("completions", b"r"), _Exchange("completions", b"g")
    seen_relayed, seen_general = Recorded(), Recorded()
    relayed.itl, general.itl = seen_relayed, seen_general
    lease_relayed, lease_general = WaitingLease(prefilling), WaitingLease(prefilling)
    if first_counted:  # the head's chunk went through ASGI and `_counted` already
        for ex, lease in ((relayed, lease_relayed), (general, lease_general)):
            gateway._counted(ex, lease, CHUNKS[0])  # type: ignore[arg-type]
    cycle = SimpleNamespace(
        disconnected=False, flow=SimpleNamespace(write_paused=False), transport=seen_relayed
    )
    capture = Capture()
    await gateway._relay(relayed, capture, ClientStream(cycle), lease_relayed)  # type: ignore[arg-type]
    ended = False
    for i, chunk in enumerate(CHUNKS):
        clock[0] = 2.0 + i * (i + 1) / 2  # uneven gaps: a stale last time would show
        capture.on_data(chunk)
        ended = gateway._counted(general, lease_general, chunk) or ended  # type: ignore[arg-type]
        assert relayed.finished is ended
        assert (relayed.events, relayed.usage) == (general.events, general.usage)
        assert (relayed.first_at, relayed.last_at) == (general.first_at, general.last_at)
        assert seen_relayed.gaps == seen_general.gaps
        assert lease_relayed.first_tokens == lease_general.first_tokens
    assert relayed.usage == {"prompt_tokens": 5, "completion_tokens": 6}
    assert relayed.events == 8 + (1 if first_counted else 0) - 1  # [DONE] is not a token
    assert relayed.finished
    assert lease_relayed.first_tokens == (1 if prefilling else 0)
    assert seen_relayed.written == [chunk_frame(c) for c in CHUNKS]
