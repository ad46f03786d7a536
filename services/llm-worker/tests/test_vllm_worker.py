"""A real worker (vLLM CPU build, the tiny Llama) through the `openai` client.

Marker `vllm`: the engine environment comes from scripts/install-llm-engine; without it these
skip with that reason, and fail under CI. The worker is shared by the session (wharf_e2e).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from tokenizers import Tokenizer

from wharf_e2e.vllm_servers import SERVED_MODEL_NAME, TEST_TIMEOUT_S, VllmWorker, metric_value

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# The tiny model's weights are random: it never "means" anything, but greedy decoding is
# deterministic (temperature 0), and `ignore_eos` makes every answer exactly max_tokens long.
FIXED_LENGTH = {"ignore_eos": True}


# Clients a test opened, closed when it ends: left to the garbage collector, a pooled socket can
# outlive its client and report itself unclosed at the session's end (an error here).
_opened: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _client(worker: VllmWorker) -> openai.OpenAI:
    client = openai.OpenAI(base_url=worker.openai_base_url, api_key="unused", timeout=120)
    _opened.append(client)
    return client


def test_models_lists_the_served_name(vllm_worker: VllmWorker) -> None:
    names = [model.id for model in _client(vllm_worker).models.list()]
    assert names == [SERVED_MODEL_NAME]


def test_completion(vllm_worker: VllmWorker) -> None:
    answer = _client(vllm_worker).completions.create(
        model=SERVED_MODEL_NAME,
        prompt="the router sends requests to",
        max_tokens=8,
        extra_body=FIXED_LENGTH,
        temperature=0.0,
    )
    assert answer.choices[0].text
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 8


def test_chat_applies_the_models_chat_template(vllm_worker: VllmWorker, tiny_llama: Path) -> None:
    content = "hello world, how are you today?"
    answer = _client(vllm_worker).chat.completions.create(
        model=SERVED_MODEL_NAME,
        messages=[{"role": "user", "content": content}],
        max_tokens=6,
        extra_body=FIXED_LENGTH,
        temperature=0.0,
    )
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    # The prompt the engine saw is the template's rendering of the message, token for token.
    rendered = f"<|begin_of_text|><|user|>\n{content}<|end|>\n<|assistant|>\n"
    tokenizer = Tokenizer.from_file(str(tiny_llama / "tokenizer.json"))
    expected = len(tokenizer.encode(rendered, add_special_tokens=False).ids)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == expected
    assert answer.usage.completion_tokens == 6


def test_streamed_chat_with_usage_matches_the_whole_answer(vllm_worker: VllmWorker) -> None:
    client = _client(vllm_worker)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "the cache keeps keys and values"}
    ]
    whole = client.chat.completions.create(
        model=SERVED_MODEL_NAME,
        messages=messages,
        max_tokens=12,
        extra_body=FIXED_LENGTH,
        temperature=0.0,
    )
    stream = client.chat.completions.create(
        model=SERVED_MODEL_NAME,
        messages=messages,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=FIXED_LENGTH,
        temperature=0.0,
    )
    pieces: list[str] = []
    usage = None
    finish = None
    chunks = 0
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert chunks > 2  # streamed, not one body
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 12


def test_metrics_carry_vllms_and_wharfs(vllm_worker: VllmWorker) -> None:
    _client(vllm_worker).completions.create(
        model=SERVED_MODEL_NAME,
        prompt="numbers 1 2 3",
        max_tokens=4,
        extra_body=FIXED_LENGTH,
        temperature=0.0,
    )
    text = vllm_worker.metrics()
    generated = metric_value(
        text, "vllm:generation_tokens_total", {"model_name": SERVED_MODEL_NAME}
    )
    assert generated is not None and generated >= 4
    assert metric_value(text, "vllm:num_requests_running") is not None
    info = {"role": "both", "model": SERVED_MODEL_NAME, "kv_connector": "none"}
    assert metric_value(text, "wharf_llm_worker_info", info) == 1.0
    answered = metric_value(
        text, "wharf_llm_worker_requests_total", {"route": "/v1/completions", "code": "200"}
    )
    assert answered is not None and answered >= 1


def test_health_is_ready_once_the_engine_is_loaded(vllm_worker: VllmWorker) -> None:
    # The fixture waited for /health; a generation right after proves the engine behind it.
    assert httpx.get(f"{vllm_worker.url}/health", timeout=10).status_code == 200
    answer = _client(vllm_worker).completions.create(
        model=SERVED_MODEL_NAME, prompt="hello", max_tokens=1, temperature=0.0
    )
    assert answer.usage is not None and answer.usage.completion_tokens == 1


# Last in this file: it stops the shared worker (the pool starts it again for a later test).
def test_sigterm_mid_stream_lets_the_stream_finish(vllm_worker: VllmWorker) -> None:
    assert vllm_worker.proc is not None
    max_tokens = 600  # long enough that the signal lands while it streams
    stream = _client(vllm_worker).completions.create(
        model=SERVED_MODEL_NAME,
        prompt="wharf runs on one machine",
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=FIXED_LENGTH,
        temperature=0.0,
    )
    signalled = False
    after_signal = 0
    finish = None
    usage = None
    for chunk in stream:
        if not signalled:
            vllm_worker.proc.send_signal(signal.SIGTERM)
            signalled = True
            continue
        after_signal += 1
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
    # The whole answer arrived after the signal, with its normal end (an abort says "abort").
    assert after_signal > 1
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == max_tokens
    # Then the worker exits by itself, cleanly.
    assert vllm_worker.proc.wait(timeout=120) == 0
