"""Prefill/decode on a real kind cluster with two NVIDIA GPUs: an LLMInferenceService with
`prefill:`, one prefill and one decode worker holding a GPU each, the KV cache handed over by
NIXL, and Wharf's router doing the hand-off.

The model and how it reaches the pods are those of test_vllm_on_kind.py (the tiny Llama built
here, served by a file server pod in the namespace; nothing downloaded). The manifest is a KServe
user's P/D manifest (`examples/llm-pd.yaml`): `prefill: {replicas: 1, template}` beside the main
(decode) template, each `main` container asking for `nvidia.com/gpu: 1`. The P/D presets set
`VLLM_NIXL_SIDE_CHANNEL_HOST` from the pod's IP (as KServe's own P/D example does): vLLM's NIXL
side channel otherwise advertises `localhost`, which the other pod cannot reach.

From the presets the controller renders the decode workload `{name}-kserve`
(`wharf-llm-worker --role decode --kv-transfer nixl`) and the prefill workload
`{name}-kserve-prefill` (`--role prefill --kv-transfer nixl`); the worker turns `nixl` into
vLLM's `NixlConnector` as `kv_consumer` and `kv_producer`. Their pods carry
`llm-d.ai/role: decode|prefill`, which the router reads. The test checks that:

- every prompt token of the decode worker came over NIXL: its
  `vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}` grows by the prompts'
  tokens and `{source="local_compute"}` does not grow;
- the router counted a hand-off per request (`wharf_router_pd_handoffs_total`) and no prefill
  fallback;
- the answers, plain and streamed, equal the prefill worker's own greedy answers to the same
  requests (sent to it directly: a different engine computing everything itself).

It needs 2 allocatable `nvidia.com/gpu` and skips, with the count, on a cluster with fewer.
The worker image is today vLLM's CPU build (see test_vllm_on_kind.py): the GPUs are held and
the KV cache moves through host memory (`kv_buffer_device: cpu`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from wharf_api.llm.presets import ROUTER_PORT
from wharf_api.llm.template_context import child_name
from wharf_api.llm.worker_cli import WORKER_PORT
from wharf_e2e.kind import (
    GPU,
    MODEL_ARCHIVE,
    chat_body,
    file_url,
    flag,
    list_pods,
    llm_service,
    main_command,
    pod_target,
    proxy,
    proxy_json,
    proxy_text,
    serve_files,
    service_target,
    sse_data,
    tar_gz,
    wait_ready,
    wait_router_sees,
    workload_labels,
)
from wharf_e2e.kube import Kube, wait_for
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_e2e.vllm_servers import metric_value

pytestmark = [pytest.mark.kind, pytest.mark.gpu, pytest.mark.timeout(2400)]

NAME = "tiny-llama-pd"
READY_S = 1800
MAX_TOKENS = 16
SOURCE = "vllm:prompt_tokens_by_source_total"
# Distinct openings, so no prompt finds another's blocks in the decode worker's prefix cache
# (that would count as a local cache hit); each longer than a KV block (16 tokens on GPU, 128
# on CPU).
PROMPTS = [
    " ".join(
        f"{word} {i}: prefill computes the prompt and decode reads its cache." for i in range(12)
    )
    for word in ("alpha", "bravo", "charlie")
]


def _metric(text: str, name: str, **labels: str) -> float:
    return metric_value(text, name, labels or None) or 0.0


def _grew(before: str, after: str, name: str, **labels: str) -> float:
    return _metric(after, name, **labels) - _metric(before, name, **labels)


async def _one_pod(kind: Kube, namespace: str, role: str) -> dict[str, Any]:
    pods = await list_pods(kind, namespace, workload_labels(NAME, role))
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    (main,) = [c for c in pods[0]["spec"]["containers"] if c["name"] == "main"]
    assert main["resources"]["limits"][GPU] == "1", f"the {role} pod holds no GPU"
    return pods[0]


async def test_prefill_hands_the_kv_cache_to_decode_over_nixl(
    kind: Kube,
    kind_namespace: str,
    require_gpus: Callable[[int], Awaitable[int]],
    tmp_path: Path,
) -> None:
    await require_gpus(2)
    ns = kind_namespace
    archive = tar_gz(build_tiny_llama(tmp_path / "tiny-llama"))
    await serve_files(kind, ns, {MODEL_ARCHIVE: archive})

    await kind.apply(llm_service(ns, NAME, file_url(ns, MODEL_ARCHIVE), prefill=True), ns)
    await wait_ready(kind, "serving.kserve.io/v1alpha1", "LLMInferenceService", NAME, ns, READY_S)

    # What the controller rendered: a decode and a prefill workload, NIXL on both.
    for suffix, role in (("-kserve", "decode"), ("-kserve-prefill", "prefill")):
        deployment = await kind.get("apps/v1", "Deployment", child_name(NAME, suffix), ns)
        assert deployment is not None, f"no Deployment {child_name(NAME, suffix)}"
        command = main_command(deployment)
        assert flag(command, "--role") == role
        assert flag(command, "--kv-transfer") == "nixl"
    decode = await _one_pod(kind, ns, "decode")
    prefill = await _one_pod(kind, ns, "prefill")
    decode_metrics = pod_target(decode["metadata"]["name"], WORKER_PORT)
    prefill_worker = pod_target(prefill["metadata"]["name"], WORKER_PORT)

    gateway = service_target(child_name(NAME, "-epp-service"), ROUTER_PORT)
    await wait_router_sees(kind, ns, gateway, ["prefill", "decode"])

    # The router hands the pair off once by itself before a request may use it (docs/router.md,
    # "Pair warm-up"); measured from after that, as its prompt also comes over NIXL.
    async def warm() -> bool:
        text = await proxy_text(kind, ns, gateway, "metrics")
        return _metric(text, "wharf_router_pd_warm_pairs") >= 1

    await wait_for(warm, "the router's warm-up of the P/D pair", 300, 2)
    before = await proxy_text(kind, ns, decode_metrics, "metrics")
    routed_before = await proxy_text(kind, ns, gateway, "metrics")

    answers: list[str] = []
    prompt_tokens = 0
    for prompt in PROMPTS[:2]:
        chat = ChatCompletion.model_validate(
            await proxy_json(
                kind, ns, gateway, "v1/chat/completions", chat_body(prompt, MAX_TOKENS)
            )
        )
        content = chat.choices[0].message.content
        assert content
        assert chat.usage is not None and chat.usage.completion_tokens == MAX_TOKENS
        answers.append(content)
        prompt_tokens += chat.usage.prompt_tokens

    status, text = await proxy(
        kind,
        ns,
        gateway,
        "v1/chat/completions",
        method="POST",
        body=chat_body(PROMPTS[2], MAX_TOKENS, stream=True),
    )
    assert status == 200, text[:500]
    events, done = sse_data(text)
    chunks = [ChatCompletionChunk.model_validate(e) for e in events]
    assert done and len(chunks) > 2
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == MAX_TOKENS
    answers.append(streamed)
    prompt_tokens += usage.prompt_tokens

    # Every prompt token of the decode worker came over NIXL; it computed none of them.
    after = await proxy_text(kind, ns, decode_metrics, "metrics")
    assert _grew(before, after, SOURCE, source="external_kv_transfer") == prompt_tokens
    assert _grew(before, after, SOURCE, source="local_compute") == 0
    routed = await proxy_text(kind, ns, gateway, "metrics")
    assert _grew(routed_before, routed, "wharf_router_pd_handoffs_total") == len(PROMPTS)
    assert _grew(routed_before, routed, "wharf_router_pd_prefill_fallbacks_total") == 0

    # The same requests to the prefill worker alone (it computes prompt and answer itself):
    # greedy decoding after the hand-off gives what one engine gives.
    for prompt, answer in zip(PROMPTS, answers, strict=True):
        alone = ChatCompletion.model_validate(
            await proxy_json(
                kind, ns, prefill_worker, "v1/chat/completions", chat_body(prompt, MAX_TOKENS)
            )
        )
        assert alone.choices[0].message.content == answer
