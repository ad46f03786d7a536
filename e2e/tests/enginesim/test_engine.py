"""The engine in simulated time (time_scale 0: steps cost simulated time but no real waiting)."""

from __future__ import annotations

import asyncio

import pytest

from wharf_e2e.enginesim.costmodel import CostModel
from wharf_e2e.enginesim.engine import Engine, EngineConfig, SimRequest

COST = CostModel(step_base_s=0.01, decode_per_seq_s=0.001, prefill_per_token_s=0.0001)


def engine(**overrides: object) -> Engine:
    config = EngineConfig(**{"time_scale": 0.0, "cost": COST, "num_gpu_blocks": 1000,
                             "max_model_len": 4096, **overrides})  # type: ignore[arg-type]  # fmt: skip
    return Engine(config, "engine-under-test")


def request(n_tokens: int, max_tokens: int = 4, prefix: str = "p", rid: str = "r") -> SimRequest:
    prompt = [f" {prefix}{i}" for i in range(n_tokens)]
    return SimRequest(rid, prompt, max_tokens, seed="sim-model")


async def finish(e: Engine, r: SimRequest) -> SimRequest:
    e.submit(r)
    while True:
        event = await r.events.get()
        if event.finish_reason is not None:
            return r


async def test_a_cache_hit_makes_ttft_smaller_in_simulated_time() -> None:
    e = engine()
    e.start()
    try:
        cold = await finish(e, request(1000, rid="cold"))
        warm = await finish(e, request(1000, rid="warm"))
    finally:
        await e.stop()
    assert cold.cached_tokens == 0
    # All full blocks below the last token hit: 62 blocks of 16 of a 1,000-token prompt.
    assert warm.cached_tokens == 992
    assert cold.ttft is not None and warm.ttft is not None
    assert cold.ttft == pytest.approx(COST.step_seconds(0, 1000))
    assert warm.ttft == pytest.approx(COST.step_seconds(0, 8))
    assert e.counters.prefix_queries == 2000 and e.counters.prefix_hits == 992
    assert e.counters.by_source == {
        "local_compute": 1008, "local_cache_hit": 992, "external_kv_transfer": 0,
    }  # fmt: skip


async def test_max_num_seqs_makes_requests_wait_and_reset_clears_the_cache() -> None:
    e = engine(max_num_seqs=2)
    requests = [request(32, max_tokens=3, prefix=f"g{i}-", rid=f"r{i}") for i in range(4)]
    for r in requests:
        e.submit(r)
    e._admit()
    assert len(e.running) == 2 and len(e.waiting) == 2
    e.start()
    try:
        await asyncio.gather(*(finish_only(r) for r in requests))
    finally:
        await e.stop()
    ttfts = [r.ttft for r in requests]
    assert ttfts[2] is not None and ttfts[0] is not None and ttfts[2] > ttfts[0]
    assert len(e.cache) > 0 and e.used_blocks == 0
    e.reset_prefix_cache()
    assert len(e.cache) == 0


async def finish_only(r: SimRequest) -> None:
    while (await r.events.get()).finish_reason is None:
        pass


async def test_transferred_tokens_skip_prefill() -> None:
    e = engine()
    e.start()
    try:
        r = request(800, rid="pd")
        r.external_tokens = 800
        await finish(e, r)
    finally:
        await e.stop()
    assert r.ttft == pytest.approx(COST.step_seconds(1, 0))  # straight to decoding
    assert e.counters.by_source["external_kv_transfer"] == 800
    assert e.counters.by_source["local_compute"] == 0
    assert e.counters.external_hits == 800


async def test_an_aborted_request_frees_its_blocks() -> None:
    e = engine()
    r = e.submit(request(100, max_tokens=1000))
    e._admit()
    assert e.used_blocks > 0
    e.abort(r)
    assert e.used_blocks == 0 and not e.running and r.finish_reason == "abort"
