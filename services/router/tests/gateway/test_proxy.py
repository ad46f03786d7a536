"""The gateway in front of fake engines (a test double of vLLM's server, see gateway_testkit):
what it forwards, what it answers, and how it behaves when a pod or the client goes away."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import orjson
from gateway_testkit import Served, Start
from prometheus_client.parser import text_string_to_metric_families

from wharf_e2e.testing import until
from wharf_router.gateway.endpoints import make_endpoint


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def scrape(gw: Served) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(gw.url + "/metrics")).text


def client_for(gw: Served, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key=kwargs.pop("api_key", "none"), max_retries=0, **kwargs
    )


async def test_completion_forwards_the_body_as_sent_and_the_request_id(
    start_engine: Start, start_gateway: Start
) -> None:
    engine, _, ep = await start_engine("a")
    _, gw = await start_gateway([ep])
    async with httpx.AsyncClient() as client:
        body = {
            "model": "tiny",
            "prompt": "hello",
            "max_tokens": 3,
            "top_k": 5,
            "vendor_field": {"x": [1]},
        }
        r = await client.post(
            gw.url + "/v1/completions", json=body, headers={"x-request-id": "req-42"}
        )
    assert r.status_code == 200
    assert r.json()["choices"][0]["text"] == "a-w0 a-w1 a-w2"
    assert r.headers["x-request-id"] == "req-42"
    assert engine.seen[-1].body == body  # unknown fields pass through untouched
    assert engine.seen[-1].headers["x-request-id"] == "req-42"

    async with httpx.AsyncClient() as client:
        r = await client.post(gw.url + "/v1/completions", json={"model": "tiny", "prompt": "x"})
    generated = engine.seen[-1].headers["x-request-id"]
    assert len(generated) == 32 and r.headers["x-request-id"] == generated


async def test_streamed_chat_with_usage_through_the_openai_client(
    start_engine: Start, start_gateway: Start
) -> None:
    _, _, ep = await start_engine("a", token_delay=0.02)  # words apart, so each is its own chunk
    _, gw = await start_gateway([ep])
    client = client_for(gw)
    stream = await client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    words, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            words.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    await client.close()
    assert words == [f"a-w{i}" for i in range(5)]
    assert usage is not None and usage.completion_tokens == 5 and usage.prompt_tokens == 7
    text = await scrape(gw)
    assert metric(text, "wharf_router_completion_tokens_total", model="tiny") == 5
    assert metric(text, "wharf_router_prompt_tokens_total", model="tiny") == 7
    assert metric(text, "wharf_router_requests_total", model="tiny", api="chat", code="200") == 1
    assert metric(text, "wharf_router_time_to_first_token_seconds_count", model="tiny") == 1
    assert metric(text, "wharf_router_inter_token_latency_seconds_count", model="tiny") >= 4


async def test_embeddings_models_and_health(start_engine: Start, start_gateway: Start) -> None:
    _, _, a = await start_engine("a", model="tiny")
    _, _, b = await start_engine("b", model="other")
    _, gw = await start_gateway([a, b])
    client = client_for(gw)
    models = await client.models.list()
    assert sorted(m.id for m in models.data) == ["other", "tiny"]
    emb = await client.embeddings.create(model="other", input="hello")
    assert emb.data[0].embedding == [0.1, 0.2]
    await client.close()
    async with httpx.AsyncClient() as http:
        health = await http.get(gw.url + "/health")
        assert health.status_code == 200 and health.json()["healthy_pods"] == 2
        assert (await http.get(gw.url + "/v1/nothing")).status_code == 404
        bad = await http.post(gw.url + "/v1/completions", content=b"{not json")
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]["message"]


async def test_requests_go_only_to_pods_serving_the_model(
    start_engine: Start, start_gateway: Start
) -> None:
    a, _, ea = await start_engine("a", model="tiny")
    b, _, eb = await start_engine("b", model="other")
    _, gw = await start_gateway([ea, eb])
    async with httpx.AsyncClient() as http:
        for _ in range(6):
            r = await http.post(gw.url + "/v1/completions", json={"model": "other", "prompt": "x"})
            assert r.status_code == 200
    assert len(a.seen) == 0 and len(b.seen) == 6


async def test_a_client_that_disconnects_cancels_the_upstream_stream(
    start_engine: Start, start_gateway: Start
) -> None:
    engine, _, ep = await start_engine("a", token_delay=0.05)
    gateway, gw = await start_gateway([ep])
    async with httpx.AsyncClient() as http:
        body = {"model": "tiny", "prompt": "x", "max_tokens": 200, "stream": True}
        async with http.stream("POST", gw.url + "/v1/completions", json=body) as r:
            async for _ in r.aiter_bytes():
                break  # one chunk, then the client goes away
    await until(
        lambda: engine.cancelled == 1, "the engine to see the stream cancelled", timeout_s=60
    )
    await until(
        lambda: gateway.pool.pods["a"].in_flight == 0, "the in-flight count to drop", timeout_s=60
    )
    text = await scrape(gw)
    assert metric(text, "wharf_router_client_disconnects_total") == 1


async def test_a_client_that_closes_after_the_last_event_was_served_not_cancelled(
    start_engine: Start, start_gateway: Start
) -> None:
    # The openai client stops at `data: [DONE]` and closes; the pod's end of stream can reach
    # the gateway after that. The request was served: counted 200, not a disconnect.
    after_done = asyncio.Event()
    engine, _, ep = await start_engine("a", hold_after_done=after_done)
    gateway, gw = await start_gateway([ep])
    async with httpx.AsyncClient() as http:
        body = {"model": "tiny", "prompt": "x", "max_tokens": 3, "stream": True}
        async with http.stream("POST", gw.url + "/v1/completions", json=body) as r:
            seen = b""
            async for chunk in r.aiter_bytes():
                seen += chunk
                if b"data: [DONE]" in seen:
                    break  # the whole answer: the client goes away before the body's end
    await until(lambda: gateway.pool.pods["a"].in_flight == 1, "the pod still streaming", 60)
    await asyncio.sleep(0.2)  # the gateway has seen the disconnect by now
    after_done.set()
    await until(lambda: gateway.pool.pods["a"].in_flight == 0, "the request to end", 60)
    text = await scrape(gw)
    assert metric(text, "wharf_router_client_disconnects_total") == 0
    assert (
        metric(text, "wharf_router_requests_total", model="tiny", code="200", api="completions")
        == 1
    )
    assert engine.cancelled == 0


async def test_a_non_streamed_request_is_cancelled_too(
    start_engine: Start, start_gateway: Start
) -> None:
    hold = asyncio.Event()
    engine, _, ep = await start_engine("a", hold=hold)
    gateway, gw = await start_gateway([ep])

    async def send() -> None:
        async with httpx.AsyncClient() as http:
            await http.post(gw.url + "/v1/completions", json={"model": "tiny", "prompt": "x"})

    task = asyncio.create_task(send())
    await until(lambda: engine.active == 1, "the request to reach the engine", timeout_s=60)
    task.cancel()
    await until(
        lambda: gateway.pool.pods["a"].in_flight == 0,
        "the gateway to drop the request",
        timeout_s=60,
    )
    hold.set()
    text = await scrape(gw)
    assert metric(text, "wharf_router_client_disconnects_total") == 1


async def test_a_dead_pod_is_skipped_ejected_and_brought_back(
    start_engine: Start, start_gateway: Start
) -> None:
    alive, _, ea = await start_engine("alive")
    dead, dead_served, ed = await start_engine("dead")
    gateway, gw = await start_gateway([ea, ed])
    await dead_served.stop(abrupt=True)
    async with httpx.AsyncClient() as http:
        for _ in range(10):
            r = await http.post(gw.url + "/v1/completions", json={"model": "tiny", "prompt": "x"})
            assert r.status_code == 200
    assert len(alive.seen) == 10
    await until(
        lambda: not gateway.pool.pods["dead"].healthy, "the dead pod to be ejected", timeout_s=60
    )
    again = await Served(dead, port=dead_served.port).start()
    try:
        await until(lambda: gateway.pool.pods["dead"].healthy, "the pod to come back", timeout_s=60)
    finally:
        await again.stop(abrupt=True)


async def test_a_failing_pod_is_retried_on_another(
    start_engine: Start, start_gateway: Start
) -> None:
    bad, _, eb = await start_engine("bad", fail_status=503)
    good, _, eg = await start_engine("good")
    _, gw = await start_gateway([eb, eg], policy="round-robin")
    async with httpx.AsyncClient() as http:
        for _ in range(6):
            r = await http.post(
                gw.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "stream": True}
            )
            assert r.status_code == 200 and "good-w0" in r.text
    assert len(bad.seen) >= 1 and len(good.seen) == 6
    assert metric(await scrape(gw), "wharf_router_retries_total") == len(bad.seen)


async def test_a_pod_whose_answer_does_not_parse_is_ejected_and_another_answers(
    start_engine: Start, start_gateway: Start
) -> None:
    posts = 0

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # a pod that serves its probes well and answers every request with a head that does
        # not parse
        nonlocal posts
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"POST"):
                    posts += 1
                    length = [
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ]
                    await reader.readexactly(length[0] if length else 0)
                    writer.write(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
                else:
                    body = b'{"object": "list", "data": [{"id": "tiny", "object": "model"}]}'
                    if not head.startswith(b"GET /v1/models"):
                        body = b""
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
                    writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    bad = await asyncio.start_server(garbled, "127.0.0.1", 0)
    try:
        good, _, eg = await start_engine("good")
        eb = make_endpoint(f"http://127.0.0.1:{bad.sockets[0].getsockname()[1]}", "both", "bad")
        _, gw = await start_gateway([eb, eg], policy="round-robin")
        async with httpx.AsyncClient() as http:
            for stream in (False, True):
                r = await http.post(
                    gw.url + "/v1/completions",
                    json={"model": "tiny", "prompt": "x", "stream": stream},
                )
                assert r.status_code == 200 and "good-w0" in r.text
        assert posts >= 1 and len(good.seen) == 2
        assert metric(await scrape(gw), "wharf_router_retries_total", reason="malformed") == posts
    finally:
        bad.close()
        await bad.wait_closed()


async def test_the_last_pod_failing_relays_its_error(
    start_engine: Start, start_gateway: Start
) -> None:
    _, _, eb = await start_engine("bad", fail_status=500)
    _, gw = await start_gateway([eb])
    async with httpx.AsyncClient() as http:
        r = await http.post(gw.url + "/v1/completions", json={"model": "tiny", "prompt": "x"})
    assert r.status_code == 500 and r.json()["error"]["message"] == "engine failure"


async def test_a_pod_killed_mid_run_loses_no_request(
    start_engine: Start, start_gateway: Start
) -> None:
    hold = asyncio.Event()
    engines = [await start_engine(name, hold=hold) for name in ("p0", "p1", "p2")]
    _, gw = await start_gateway([ep for _, _, ep in engines], policy="round-robin")

    async def one(i: int) -> int:
        async with httpx.AsyncClient(timeout=60) as http:
            body = {"model": "tiny", "prompt": f"request {i}", "stream": i % 2 == 0}
            r = await http.post(gw.url + "/v1/completions", json=body)
            return r.status_code

    tasks = [asyncio.create_task(one(i)) for i in range(12)]
    victim, victim_served, _ = engines[0]
    await until(lambda: victim.active >= 3, "requests to reach the pod to kill", timeout_s=60)
    await victim_served.stop(abrupt=True)  # requests on it die unanswered
    hold.set()
    codes = await asyncio.gather(*tasks)
    assert codes == [200] * 12
    survivors = sum(len(e.seen) for e, _, _ in engines[1:])
    assert survivors >= 12 - 0  # every request was answered by a pod that lived


async def test_api_keys_and_token_rate_limits(start_engine: Start, start_gateway: Start) -> None:
    from wharf_router.gateway.limits import parse_keys

    engine, _, ep = await start_engine("a")
    keys = parse_keys(
        [
            {"name": "team-a", "key": "sk-team-a-0123456789", "tokens_per_minute": 10},
            {"name": "team-b", "key": "sk-team-b-0123456789"},
        ],
        "test",
    )
    _, gw = await start_gateway([ep], keys=keys)
    async with httpx.AsyncClient() as http:
        body = {"model": "tiny", "prompt": "x", "max_tokens": 4}
        assert (await http.post(gw.url + "/v1/completions", json=body)).status_code == 401
        wrong = {"authorization": "Bearer sk-wrong-0123456789"}
        assert (
            await http.post(gw.url + "/v1/completions", json=body, headers=wrong)
        ).status_code == 401
        a = {"authorization": "Bearer sk-team-a-0123456789"}
        first = await http.post(gw.url + "/v1/completions", json=body, headers=a)
        assert first.status_code == 200  # 7 prompt + 4 completion tokens: over the 10 a minute
        limited = await http.post(gw.url + "/v1/completions", json=body, headers=a)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        b = {"authorization": "Bearer sk-team-b-0123456789"}
        assert (
            await http.post(gw.url + "/v1/completions", json=body, headers=b)
        ).status_code == 200
    assert all(
        "authorization" not in s.headers for s in engine.seen
    )  # the gateway's key stays here
    text = await scrape(gw)
    assert metric(text, "wharf_router_rate_limited_total", key="team-a") == 1
    assert metric(text, "wharf_router_prompt_tokens_total", key="team-a") == 7
    assert metric(text, "wharf_router_completion_tokens_total", key="team-b") == 4
    assert "sk-team" not in text


async def test_prefill_decode_hand_off(start_engine: Start, start_gateway: Start) -> None:
    prefill, _, ep = await start_engine("pre", role="prefill")
    decode, _, ed = await start_engine("dec", role="decode")
    gateway, gw = await start_gateway([ep, ed])
    # the gateway warms the pair up first (pd_warmup.py); until then it would not hand off
    await until(lambda: gateway.warmer.warm_pairs() == 1, "the pair to warm up")
    client = client_for(gw)
    body_extra = {"top_k": 3}
    stream = await client.completions.create(
        model="tiny",
        prompt="a long prompt",
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=body_extra,
    )
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    await client.close()
    assert text == "".join(f"dec-w{i}" for i in range(6))
    sent_prefill = prefill.seen[-1].body
    assert sent_prefill["max_tokens"] == 1 and sent_prefill["stream"] is False
    assert "stream_options" not in sent_prefill and sent_prefill["top_k"] == 3
    assert sent_prefill["kv_transfer_params"] == {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    sent_decode = decode.seen[-1].body
    assert sent_decode["max_tokens"] == 6 and sent_decode["stream"] is True
    assert sent_decode["stream_options"] == {"include_usage": True}
    assert sent_decode["kv_transfer_params"]["remote_engine_id"] == "pre"
    assert sent_decode["kv_transfer_params"]["remote_block_ids"] == [1, 2]
    assert prefill.seen[-1].headers["x-request-id"] == decode.seen[-1].headers["x-request-id"]
    metrics = await scrape(gw)
    assert metric(metrics, "wharf_router_pd_handoffs_total") == 1
    assert metric(metrics, "wharf_router_pd_prefill_fallbacks_total") == 0


async def test_a_failed_prefill_falls_back_to_decode(
    start_engine: Start, start_gateway: Start
) -> None:
    prefill, _, ep = await start_engine("pre", role="prefill", fail_status=500)
    decode, _, ed = await start_engine("dec", role="decode")
    # without warm-up: a pair whose warm-up fails is never used, so its prefill is never tried
    _, gw = await start_gateway([ep, ed], pd_warmup=False)
    async with httpx.AsyncClient() as http:
        r = await http.post(
            gw.url + "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "dec-w0 dec-w1"
    assert len(prefill.seen) == 1 and "kv_transfer_params" not in decode.seen[-1].body
    metrics = await scrape(gw)
    assert metric(metrics, "wharf_router_pd_prefill_fallbacks_total", reason="status_500") == 1


async def test_a_prefill_that_times_out_falls_back_to_decode_as_a_timeout(
    start_engine: Start, start_gateway: Start
) -> None:
    never = asyncio.Event()  # the prefill pod takes the request and never answers
    prefill, _, ep = await start_engine("pre", role="prefill", hold=never)
    decode, _, ed = await start_engine("dec", role="decode")
    _, gw = await start_gateway([ep, ed], pd_warmup=False, prefill_timeout=0.2)
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            gw.url + "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        )
    never.set()  # its held handler ends, into the connection the gateway closed
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "dec-w0 dec-w1"
    assert len(prefill.seen) == 1 and "kv_transfer_params" not in decode.seen[-1].body
    metrics = await scrape(gw)
    # a timeout is not a pod that cannot be reached (on 3.11 TimeoutError is an OSError)
    assert metric(metrics, "wharf_router_pd_prefill_fallbacks_total", reason="timeout") == 1
    assert metric(metrics, "wharf_router_pd_prefill_fallbacks_total", reason="unreachable") == 0
    assert metric(metrics, "wharf_router_pd_prefill_fallbacks_total") == 1


async def test_prefix_groups_stick_to_a_pod_and_spread_over_pods(
    start_engine: Start, start_gateway: Start
) -> None:
    engines = [await start_engine(f"p{i}") for i in range(4)]
    _, gw = await start_gateway([ep for _, _, ep in engines])
    groups = [
        f"system prompt of group {g}: " + ("lorem ipsum dolor sit amet " * 60) for g in range(8)
    ]
    async with httpx.AsyncClient() as http:
        for turn in range(5):
            for prefix in groups:
                body = {"model": "tiny", "prompt": prefix + f" question {turn}", "max_tokens": 1}
                r = await http.post(gw.url + "/v1/completions", json=body)
                assert r.status_code == 200
    where: dict[int, set[str]] = {}
    for engine, _, _ in engines:
        for seen in engine.seen:
            g = int(seen.body["prompt"].split(":")[0].rsplit(" ", 1)[1])
            where.setdefault(g, set()).add(engine.name)
    assert all(len(pods) == 1 for pods in where.values()), where  # every group on one pod
    used = {next(iter(pods)) for pods in where.values()}
    assert len(used) >= 3, where  # and the groups spread over the pods
    metrics = await scrape(gw)
    held = metric(metrics, "wharf_router_prefix_blocks_total", held="yes")
    missed = metric(metrics, "wharf_router_prefix_blocks_total", held="no")
    assert held / (held + missed) >= 0.75  # 4 of 5 turns hit: the first turn of a group cannot


async def test_session_header_keeps_a_conversation_on_its_pod(
    start_engine: Start, start_gateway: Start
) -> None:
    engines = [await start_engine(f"p{i}") for i in range(3)]
    _, gw = await start_gateway([ep for _, _, ep in engines])
    async with httpx.AsyncClient() as http:
        for turn in range(6):
            for s in range(4):
                body = {"model": "tiny", "messages": [{"role": "user", "content": f"short {turn}"}]}
                r = await http.post(
                    gw.url + "/v1/chat/completions", json=body, headers={"x-session-id": f"s{s}"}
                )
                assert r.status_code == 200
    for engine, _, _ in engines:
        sessions: dict[str, int] = {}
        for seen in engine.seen:
            sessions.setdefault(seen.headers["x-session-id"], 0)
            sessions[seen.headers["x-session-id"]] += 1
        assert all(n == 6 for n in sessions.values()), (engine.name, sessions)


async def test_round_robin_and_least_load_policies(
    start_engine: Start, start_gateway: Start
) -> None:
    engines = [await start_engine(f"p{i}") for i in range(3)]
    _, gw = await start_gateway([ep for _, _, ep in engines], policy="round-robin")
    async with httpx.AsyncClient() as http:
        for _ in range(9):
            await http.post(
                gw.url + "/v1/completions", json={"model": "tiny", "prompt": "same prompt " * 100}
            )
    assert [len(e.seen) for e, _, _ in engines] == [3, 3, 3]


async def test_least_load_avoids_a_busy_pod(start_engine: Start, start_gateway: Start) -> None:
    hold = asyncio.Event()
    busy, _, eb = await start_engine("busy", hold=hold)
    idle, _, ei = await start_engine("idle")
    gateway, gw = await start_gateway([eb, ei], policy="least-load")
    gateway.pool.update([eb])  # the endpoint source's list: only "busy" for now
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"model": "tiny", "prompt": "x"}
        stuck = [
            asyncio.create_task(http.post(gw.url + "/v1/completions", json=body)) for _ in range(3)
        ]
        await until(lambda: busy.active == 3, "three requests held on the busy pod", timeout_s=60)
        gateway.pool.update([eb, ei])
        for _ in range(3):
            assert (await http.post(gw.url + "/v1/completions", json=body)).status_code == 200
        hold.set()
        await asyncio.gather(*stuck)
    assert len(idle.seen) == 3 and len(busy.seen) == 3


async def test_a_request_counts_as_prefilling_until_its_first_token(
    start_engine: Start, start_gateway: Start
) -> None:
    hold, hold_decode = asyncio.Event(), asyncio.Event()
    _, _, ep = await start_engine("a", hold=hold, hold_decode=hold_decode)
    gateway, gw = await start_gateway([ep], policy="least-load")
    pod = gateway.pool.pods["a"]
    first: asyncio.Queue[bytes] = asyncio.Queue()

    async def stream() -> None:
        body = {"model": "tiny", "prompt": "x", "max_tokens": 4, "stream": True}
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream("POST", gw.url + "/v1/completions", json=body) as r,
        ):
            async for chunk in r.aiter_bytes():
                if first.empty():
                    first.put_nowait(chunk)

    task = asyncio.create_task(stream())
    await until(lambda: pod.in_flight == 1, "the request to reach the pod", timeout_s=60)
    assert pod.prefilling == 1  # no token yet: the pod is computing the prompt
    hold.set()
    assert b"a-w0" in await first.get()
    # the first token went through: the pod decodes now, and the request is still on it
    assert (pod.in_flight, pod.prefilling) == (1, 0)
    hold_decode.set()
    await task
    await until(lambda: pod.in_flight == 0, "the request to end", timeout_s=60)
    assert pod.prefilling == 0


async def test_a_prefilling_request_counts_the_prompt_blocks_its_pod_computes(
    start_engine: Start, start_gateway: Start
) -> None:
    hold = asyncio.Event()
    _, _, ep = await start_engine("a", hold=hold)
    gateway, gw = await start_gateway([ep])  # the default policy: it hashes prompts
    pod = gateway.pool.pods["a"]
    # 1,000 bytes: 3 whole blocks of 256 bytes (64 tokens x 4 bytes), and a partial one
    body = {"model": "tiny", "prompt": "y" * 1000, "max_tokens": 2}

    async with httpx.AsyncClient(timeout=60) as http:
        sent = asyncio.create_task(http.post(gw.url + "/v1/completions", json=body))
        await until(lambda: pod.in_flight == 1, "the request to reach the pod", timeout_s=60)
        assert pod.pending_blocks == 4  # nothing cached yet: all of it
        hold.set()
        assert (await sent).status_code == 200
        assert (pod.in_flight, pod.pending_blocks) == (0, 0)
        hold.clear()
        sent = asyncio.create_task(http.post(gw.url + "/v1/completions", json=body))
        await until(lambda: pod.in_flight == 1, "the second request", timeout_s=60)
        assert pod.pending_blocks == 1  # the pod holds the 3 whole blocks: only the tail
        hold.set()
        assert (await sent).status_code == 200
    assert pod.pending_blocks == 0


async def test_metrics_body_is_prometheus_text(start_engine: Start, start_gateway: Start) -> None:
    _, _, ep = await start_engine("a")
    _, gw = await start_gateway([ep])
    text = await scrape(gw)
    assert metric(text, "wharf_router_pod_healthy", pod="a", role="both") == 1
    assert orjson.loads(b"{}") == {}


async def test_a_request_past_its_timeout_gets_504_and_is_cancelled(
    start_engine: Start, start_gateway: Start
) -> None:
    hold = asyncio.Event()
    _, _, ep = await start_engine("a", hold=hold)
    gateway, gw = await start_gateway([ep], request_timeout=0.5)
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(gw.url + "/v1/completions", json={"model": "tiny", "prompt": "x"})
    assert r.status_code == 504 and "no answer within 0.5 s" in r.json()["error"]["message"]
    await until(
        lambda: gateway.pool.pods["a"].in_flight == 0, "the gateway to drop it", timeout_s=60
    )
    hold.set()
    assert metric(await scrape(gw), "wharf_router_request_errors_total", reason="timeout") == 1
