"""The P/D warm-up in the running gateway, in front of fake engines (the test double of vLLM's
server in gateway_testkit): the decode engine holds a hand-off's decode half until the test lets
it go, as vLLM's first hand-off of a pair waits for the NIXL handshake, so that each step is
seen in order, without timing."""

from __future__ import annotations

import asyncio

import httpx
from gateway_testkit import FakeEngine, Served, Start
from test_proxy import metric, scrape

from wharf_e2e.testing import until
from wharf_router.gateway.app import Gateway
from wharf_router.gateway.pd_warmup import WARMUP_PROMPT


def _warmups(engine: FakeEngine) -> int:
    return sum(1 for s in engine.seen if s.body.get("prompt") == WARMUP_PROMPT)


async def _complete(gw: Served, prompt: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            gw.url + "/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 2}
        )


async def _warm(gateway: Gateway, gw: Served, pairs: int) -> None:
    async def check() -> float:
        return metric(await scrape(gw), "wharf_router_pd_warm_pairs")

    await until(lambda: gateway.warmer is not None and gateway.warmer.warm_pairs() == pairs,
                f"{pairs} warm pairs", timeout_s=20)  # fmt: skip
    assert await check() == pairs


async def test_a_cold_pair_is_bypassed_while_it_warms_then_used(
    start_engine: Start, start_gateway: Start, servers: list[Served]
) -> None:
    handshake = asyncio.Event()
    prefill, _, ep = await start_engine("pre", role="prefill")
    decode, decode_served, ed = await start_engine("dec", role="decode", hold_handoff=handshake)
    gateway, gw = await start_gateway([ep, ed])

    # the gateway warms the pair by itself: the prefill half went through, the decode half waits
    await until(lambda: _warmups(prefill) == 1 and _warmups(decode) == 1, "the warm-up")
    answer = await _complete(gw, "a user's prompt")
    assert answer.status_code == 200 and answer.json()["choices"][0]["text"] == "dec-w0 dec-w1"
    # no prefill request: the decode pod got the prompt without KV and computed it
    assert [s.body["prompt"] for s in prefill.seen] == [WARMUP_PROMPT]
    assert decode.seen[-1].body["prompt"] == "a user's prompt"
    assert "kv_transfer_params" not in decode.seen[-1].body
    text = await scrape(gw)
    assert metric(text, "wharf_router_pd_cold_pairs_total") == 1
    assert metric(text, "wharf_router_pd_warm_pairs") == 0
    assert metric(text, "wharf_router_pd_handoffs_total") == 0
    assert metric(text, "wharf_router_pd_prefill_fallbacks_total") == 0  # not a failure

    # the handshake completes: the pair is warm and the next request hands off
    handshake.set()
    await _warm(gateway, gw, 1)
    warmup = next(s for s in decode.seen if s.body.get("prompt") == WARMUP_PROMPT)
    assert warmup.body["max_tokens"] == 1
    assert warmup.body["kv_transfer_params"]["remote_engine_id"] == "pre"
    answer = await _complete(gw, "a second prompt")
    assert answer.status_code == 200
    assert prefill.seen[-1].body["prompt"] == "a second prompt"
    assert decode.seen[-1].body["kv_transfer_params"]["remote_engine_id"] == "pre"
    text = await scrape(gw)
    assert metric(text, "wharf_router_pd_handoffs_total") == 1  # the warm-up is not counted
    assert metric(text, "wharf_router_pd_warmups_total", outcome="ok") == 1
    assert metric(text, "wharf_router_pd_cold_pairs_total") == 1

    # the decode pod dies and comes back (its engine may be new): the pair is cold again
    await decode_served.stop(abrupt=True)
    pod = gateway.pool.pods["dec"]
    await until(lambda: not pod.healthy, "the gateway to eject the decode pod")
    assert gateway.warmer is not None and gateway.warmer.warm_pairs() == 0
    handshake.clear()
    servers.append(await Served(decode, port=decode_served.port).start())
    await until(lambda: pod.healthy, "the decode pod back")
    await until(lambda: _warmups(decode) == 2, "a second warm-up of the pair")
    answer = await _complete(gw, "a third prompt")
    assert answer.status_code == 200
    assert "kv_transfer_params" not in decode.seen[-1].body
    assert prefill.seen[-1].body["prompt"] == WARMUP_PROMPT
    assert metric(await scrape(gw), "wharf_router_pd_cold_pairs_total") == 2
    handshake.set()
    await _warm(gateway, gw, 1)
    assert metric(await scrape(gw), "wharf_router_pd_warmups_total", outcome="ok") == 2


async def test_a_warm_prefill_pod_is_preferred_to_a_cold_one(
    start_engine: Start, start_gateway: Start
) -> None:
    first, _, e1 = await start_engine("pre1", role="prefill")
    _, _, ed = await start_engine("dec", role="decode")
    gateway, gw = await start_gateway([e1, ed])
    await _warm(gateway, gw, 1)
    # a second prefill pod joins; its warm-up with the decode pod cannot finish
    second, _, e2 = await start_engine("pre2", role="prefill", hold=asyncio.Event())
    gateway.pool.update([e1, ed, e2])
    await until(lambda: _warmups(second) == 1, "the new pair's warm-up")
    for i in range(6):
        assert (await _complete(gw, f"prompt {i}")).status_code == 200
    assert [s.body["prompt"] for s in second.seen] == [WARMUP_PROMPT]
    assert sum(1 for s in first.seen if s.body["prompt"].startswith("prompt ")) == 6
    text = await scrape(gw)
    assert metric(text, "wharf_router_pd_handoffs_total") == 6
    assert metric(text, "wharf_router_pd_cold_pairs_total") == 0
    assert metric(text, "wharf_router_pd_warm_pairs") == 1


async def test_a_failing_warm_up_is_retried_and_the_pair_stays_cold(
    start_engine: Start, start_gateway: Start
) -> None:
    prefill, _, ep = await start_engine("pre", role="prefill", fail_status=503)
    decode, _, ed = await start_engine("dec", role="decode")
    _, gw = await start_gateway([ep, ed])
    await until(lambda: _warmups(prefill) >= 2, "a second try after the backoff", timeout_s=30)
    answer = await _complete(gw, "a prompt")
    assert answer.status_code == 200
    assert all(s.body["prompt"] == WARMUP_PROMPT for s in prefill.seen)
    assert _warmups(decode) == 0  # the prefill half failed: nothing was handed to decode
    text = await scrape(gw)
    assert metric(text, "wharf_router_pd_warmups_total", outcome="failed") >= 2
    assert metric(text, "wharf_router_pd_cold_pairs_total") == 1
    assert metric(text, "wharf_router_pd_prefill_fallbacks_total") == 0


async def test_a_refused_warm_up_leaves_the_pair_to_hand_off_as_before(
    start_engine: Start, start_gateway: Start
) -> None:
    # e.g. engines that want an API key the gateway does not have: retrying cannot help
    prefill, _, ep = await start_engine("pre", role="prefill", fail_status=401)
    _, _, ed = await start_engine("dec", role="decode")
    gateway, gw = await start_gateway([ep, ed])
    await until(
        lambda: (
            gateway.warmer is not None and any(s.refused for s in gateway.warmer.states.values())
        ),
        "the warm-up to be refused",
    )
    answer = await _complete(gw, "a prompt")
    assert answer.status_code == 200
    assert prefill.seen[-1].body["prompt"] == "a prompt"  # tried, as without warm-up
    text = await scrape(gw)
    assert metric(text, "wharf_router_pd_warmups_total", outcome="refused") == 1
    assert metric(text, "wharf_router_pd_cold_pairs_total") == 0
    assert metric(text, "wharf_router_pd_prefill_fallbacks_total", reason="status_401") == 1


async def test_with_warm_up_off_no_warm_up_is_sent_and_every_pair_hands_off(
    start_engine: Start, start_gateway: Start
) -> None:
    prefill, _, ep = await start_engine("pre", role="prefill")
    decode, _, ed = await start_engine("dec", role="decode")
    _, gw = await start_gateway([ep, ed], pd_warmup=False)
    answer = await _complete(gw, "a prompt")
    assert answer.status_code == 200
    assert [s.body["prompt"] for s in prefill.seen] == ["a prompt"]
    assert decode.seen[-1].body["kv_transfer_params"]["remote_engine_id"] == "pre"
    text = await scrape(gw)
    assert metric(text, "wharf_router_pd_handoffs_total") == 1
    assert metric(text, "wharf_router_pd_warm_pairs") == 0
