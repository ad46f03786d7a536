"""Simulated pods as a real process on loopback, driven by the real `openai` client and httpx."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from wharf_e2e.enginesim.fleet import SimFleet, metric, scrape
from wharf_e2e.testing import wait_until

LONG = " ".join(f"word{i % 50}" for i in range(600))  # 600 tokens of shared prompt


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimFleet]:
    # Steps cost simulated time but nobody waits for it: results are exact and fast.
    with SimFleet(3, ["--role", "both,prefill,decode", "--time-scale", "0"]) as f:
        yield f


# Clients a test opened, closed when it ends: left to the garbage collector, a pooled socket can
# outlive its client and report itself unclosed at the session's end (an error here).
_opened: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def client(url: str) -> openai.OpenAI:
    opened = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    _opened.append(opened)
    return opened


def test_completions_streamed_and_not_give_the_same_deterministic_text(fleet: SimFleet) -> None:
    c = client(fleet.urls[0])
    whole = c.completions.create(model="sim-model", prompt="tell me a story", max_tokens=12)
    assert whole.usage is not None and whole.usage.completion_tokens == 12
    assert whole.choices[0].finish_reason == "length"
    again = c.completions.create(model="sim-model", prompt="tell me a story", max_tokens=12)
    assert again.choices[0].text == whole.choices[0].text
    chunks = list(c.completions.create(model="sim-model", prompt="tell me a story",
                                       max_tokens=12, stream=True))  # fmt: skip
    assert "".join(ch.choices[0].text for ch in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_stream_with_usage(fleet: SimFleet) -> None:
    c = client(fleet.urls[0])
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": LONG},
        {"role": "user", "content": "hi"},
    ]
    whole = c.chat.completions.create(model="sim-model", messages=messages, max_tokens=6)
    stream = c.chat.completions.create(
        model="sim-model", messages=messages, max_tokens=6, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == 6 and usage.prompt_tokens > 600
    # The second request with the same system prompt found it in this pod's cache.
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens is not None
    assert usage.prompt_tokens_details.cached_tokens >= 592


def test_metrics_have_vllms_names_and_a_hit_cuts_ttft(fleet: SimFleet) -> None:
    url = fleet.urls[0]
    prompt = LONG + " a question that nobody asked before"
    before = scrape(url)
    httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 2}).raise_for_status()
    middle = scrape(url)
    httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 2}).raise_for_status()
    after = scrape(url)

    def delta(a: dict[str, float], b: dict[str, float], name: str, **labels: str) -> float:
        return metric(b, name, **labels) - metric(a, name, **labels)

    ttft = "vllm:time_to_first_token_seconds_sum"
    assert delta(before, middle, ttft) > delta(middle, after, ttft) > 0
    assert delta(before, middle, "vllm:prefix_cache_hits_total") == 0
    assert delta(middle, after, "vllm:prefix_cache_hits_total") > 500
    assert delta(before, after, "vllm:prompt_tokens_total") == delta(
        before, after, "vllm:prefix_cache_queries_total"
    )
    assert delta(before, after, "vllm:generation_tokens_total") == 4
    assert delta(before, after, "vllm:time_to_first_token_seconds_count") == 2
    assert metric(after, "vllm:cache_config_info", block_size="16", num_gpu_blocks="19208") == 1
    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                  "vllm:kv_cache_usage_perc"):  # fmt: skip
        assert metric(after, gauge, model_name="sim-model") == 0
    assert metric(after, "vllm:prompt_tokens_by_source_total", source="local_cache_hit") > 500


def test_prefill_decode_hand_off(fleet: SimFleet) -> None:
    _, prefill, decode = fleet.urls
    body = {"model": "sim-model", "prompt": LONG + " and the end", "max_tokens": 8}
    reference = httpx.post(f"{fleet.urls[0]}/v1/completions", json=body).json()
    assert reference["kv_transfer_params"] is None  # no connector on an aggregated pod
    kv_request = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                  "remote_block_ids": None, "remote_host": None, "remote_port": None}  # fmt: skip
    first = httpx.post(f"{prefill}/v1/completions", json={
        **body, "max_tokens": 1, "stream": False, "kv_transfer_params": kv_request,
    }).json()  # fmt: skip
    params = first["kv_transfer_params"]
    assert first["usage"]["completion_tokens"] == 1
    assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
    assert params["remote_num_tokens"] == first["usage"]["prompt_tokens"]
    assert params["remote_port"] == int(prefill.rsplit(":", 1)[1])
    assert len(params["remote_block_ids"][0]) == -(-params["remote_num_tokens"] // 16)

    before = scrape(decode)
    answer = httpx.post(f"{decode}/v1/completions", json={**body, "kv_transfer_params": params})
    after = scrape(decode)
    assert answer.json()["choices"][0]["text"] == reference["choices"][0]["text"]
    n = params["remote_num_tokens"]
    source = "vllm:prompt_tokens_by_source_total"
    assert metric(after, source, source="external_kv_transfer") - metric(
        before, source, source="external_kv_transfer") == n  # fmt: skip
    assert metric(after, source, source="local_compute") == metric(
        before, source, source="local_compute")  # fmt: skip
    assert metric(after, "vllm:external_prefix_cache_hits_total") > 0

    # The KV was pulled once; a second decode with the same params computes the prompt itself.
    again = httpx.post(f"{decode}/v1/completions", json={**body, "kv_transfer_params": params})
    assert again.json()["choices"][0]["text"] == reference["choices"][0]["text"]
    final = scrape(decode)
    assert metric(final, "vllm:nixl_num_failed_transfers_total") == 1


def _hand_off(prefill: str, decode: str, prompt: str) -> float:
    """Prefill on one pod, decode on the other; the real seconds the decode half took."""
    kv_request = {"do_remote_decode": True, "do_remote_prefill": False}
    body = {"model": "sim-model", "prompt": prompt, "max_tokens": 2}
    first = httpx.post(f"{prefill}/v1/completions", json={
        **body, "max_tokens": 1, "stream": False, "kv_transfer_params": kv_request,
    }).json()  # fmt: skip
    started = time.monotonic()
    answer = httpx.post(
        f"{decode}/v1/completions",
        json={**body, "kv_transfer_params": first["kv_transfer_params"]},
        timeout=30,
    )
    assert answer.status_code == 200
    return time.monotonic() - started


def test_the_first_pull_from_a_prefill_engine_waits_the_handshake_delay() -> None:
    with SimFleet(2, ["--role", "prefill,decode", "--time-scale", "0",
                      "--handshake-delay", "1.5"]) as f:  # fmt: skip
        prefill, decode = f.urls
        before = scrape(decode)
        assert _hand_off(prefill, decode, "one " + LONG) >= 1.5  # the handshake
        _hand_off(prefill, decode, "two " + LONG)
        after = scrape(decode)
        # two hand-offs, one handshake: the second pull found the engine known
        assert metric(after, "enginesim:kv_handshakes_total") == 1
        external = "vllm:prompt_tokens_by_source_total"
        assert metric(after, external, source="external_kv_transfer") - metric(
            before, external, source="external_kv_transfer") == 2 * 601  # fmt: skip
        assert metric(after, "vllm:nixl_num_failed_transfers_total") == 0
    # a restarted prefill pod is a new engine: the same decode pod handshakes again
    with SimFleet(2, ["--role", "prefill,decode", "--time-scale", "0",
                      "--handshake-delay", "1.5"], ports=f.ports) as g:  # fmt: skip
        assert g.urls == [prefill, decode]
        _hand_off(prefill, decode, LONG)
        assert metric(scrape(decode), "enginesim:kv_handshakes_total") == 1


def test_errors_are_openai_shaped(fleet: SimFleet) -> None:
    url = fleet.urls[0]
    unknown = httpx.post(f"{url}/v1/completions", json={"model": "nope", "prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    too_long = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 10**6})
    assert too_long.status_code == 400
    assert "maximum context length" in too_long.json()["error"]["message"]
    bad = httpx.post(
        f"{url}/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    no_messages = httpx.post(f"{url}/v1/chat/completions", json={"messages": []})
    assert no_messages.json()["error"]["param"] == "messages"
    models = httpx.get(f"{url}/v1/models").json()
    assert models["data"][0]["id"] == "sim-model"


def test_a_client_that_goes_away_aborts_its_request() -> None:
    # Real time here (scale 1): the request would run for minutes if it were not aborted.
    with SimFleet(1, ["--time-scale", "1"]) as f:
        url = f.urls[0]
        body = {"prompt": "go on", "max_tokens": 20_000, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body) as answer:
            lines = answer.iter_lines()  # kept: dropping the iterator closes the response
            assert next(lines).startswith("data: ")
            assert metric(scrape(url), "vllm:num_requests_running") == 1
        wait_until(lambda: metric(scrape(url), "vllm:num_requests_running") == 0,
                   "the abandoned request to be aborted", 30)  # fmt: skip
