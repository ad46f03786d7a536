"""Prefill/decode for real: a prefill worker and a decode worker with NixlConnector (UCX over
DRAM), the hand-off done as the router does it, against one combined worker's answer.

Marker `vllm` (see test_vllm_worker.py). The hand-off: the prefill worker gets the request with
`max_tokens: 1`, `stream: false` and `kv_transfer_params: {"do_remote_decode": true}`; its answer
carries `kv_transfer_params` (where the KV blocks are), which the decode worker gets with the
original request. The decode worker then pulls the KV cache instead of computing the prompt.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from wharf_e2e.vllm_servers import SERVED_MODEL_NAME, TEST_TIMEOUT_S, VllmWorker, metric_value

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# Over one KV block (128 tokens on the CPU backend), so whole blocks and a partial one travel.
PROMPT = " ".join(
    f"step {i}: the router sends the prompt to prefill, then decode reads the cache."
    for i in range(12)
)
MAX_TOKENS = 16
SOURCE = "vllm:prompt_tokens_by_source_total"


def _post(worker: VllmWorker, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{worker.url}{path}", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _hand_off(
    prefill: VllmWorker, decode: VllmWorker, path: str, request: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The router's two steps; returns (prefill answer, decode answer)."""
    first = _post(
        prefill,
        path,
        {
            **request,
            "max_tokens": 1,
            "stream": False,
            "kv_transfer_params": {"do_remote_decode": True},
        },
    )
    params = first.get("kv_transfer_params")
    assert params, f"the prefill worker returned no kv_transfer_params: {first}"
    second = _post(decode, path, {**request, "kv_transfer_params": params})
    return first, second


def _sources(worker: VllmWorker) -> tuple[float, float]:
    text = worker.metrics()
    external = metric_value(text, SOURCE, {"source": "external_kv_transfer"}) or 0.0
    local = metric_value(text, SOURCE, {"source": "local_compute"}) or 0.0
    return external, local


def _completion(prompt: str) -> dict[str, Any]:
    return {
        "model": SERVED_MODEL_NAME,
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }


def test_completion_through_prefill_and_decode_equals_one_worker(
    vllm_pd_and_single: tuple[VllmWorker, VllmWorker, VllmWorker],
) -> None:
    prefill, decode, single = vllm_pd_and_single
    external_before, local_before = _sources(decode)

    first, second = _hand_off(prefill, decode, "/v1/completions", _completion(PROMPT))
    alone = _post(single, "/v1/completions", _completion(PROMPT))

    assert first["kv_transfer_params"]["remote_port"] == prefill.side_channel_port
    assert second["choices"][0]["text"] == alone["choices"][0]["text"]
    assert second["usage"]["completion_tokens"] == alone["usage"]["completion_tokens"]
    external_after, local_after = _sources(decode)
    # The decode worker computed none of the prompt: every prompt token came over NIXL.
    assert external_after - external_before == second["usage"]["prompt_tokens"]
    assert local_after - local_before == 0


def test_chat_through_prefill_and_decode_equals_one_worker(
    vllm_pd_and_single: tuple[VllmWorker, VllmWorker, VllmWorker],
) -> None:
    prefill, decode, single = vllm_pd_and_single
    request = {
        "model": SERVED_MODEL_NAME,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    external_before, local_before = _sources(decode)

    _, second = _hand_off(prefill, decode, "/v1/chat/completions", request)
    alone = _post(single, "/v1/chat/completions", request)

    assert second["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"]
    external_after, local_after = _sources(decode)
    assert external_after - external_before == second["usage"]["prompt_tokens"]
    assert local_after - local_before == 0


def test_decode_worker_without_kv_params_computes_the_prompt_itself(
    vllm_pd_workers: tuple[VllmWorker, VllmWorker],
) -> None:
    # The control for the assertions above: the same metric moves the other way.
    _, decode = vllm_pd_workers
    external_before, local_before = _sources(decode)
    answer = _post(decode, "/v1/completions", _completion("a fresh prompt about alpha and beta"))
    external_after, local_after = _sources(decode)
    assert external_after == external_before
    assert local_after - local_before == answer["usage"]["prompt_tokens"]
