"""A vLLM model as an LLMInferenceService on a real kind cluster with NVIDIA GPUs, from the
manifest to chat answers through Wharf's router.

The model is the tiny Llama of the vLLM tests (`wharf_e2e.tinyllm`: 2 layers, seeded random
weights, a tokenizer with a chat template), built here, packed as `.tar.gz` and served by a
file server pod in the test's namespace (`wharf_e2e.kind`); the storage initializer downloads
and unpacks it into `/mnt/models`. Nothing is downloaded from outside the cluster, so the runner
needs neither the internet nor a Hugging Face token. (An `hf://` model would add the hub to what
can break the run; `hf://` itself is tested by the storage tests against a local hub server.)

The manifest is written as a KServe user writes one (`examples/llm-inference-service.yaml`):
`model`, `replicas: 1`, `router: {route, gateway, scheduler}` and a `main` container that asks
for `nvidia.com/gpu: 1`; the rest comes from Wharf's presets. Requests go through the API
server's service proxy to the router's Service (`{name}-epp-service`, port 8080), as the sklearn
test reaches its predictor, and the worker's own `/metrics` through the pod proxy.

The worker image (`ghcr.io/wharf-serving/llm-worker`) is today vLLM's CPU build
(docs/images.md): the pod holds a GPU, scheduled by NVIDIA's device plugin as the manifest asks,
and the engine computes on the node's CPUs. An image with vLLM's CUDA build runs the same test on
the GPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from wharf_api.llm.presets import ROUTER_PORT
from wharf_api.llm.template_context import child_name
from wharf_api.llm.worker_cli import WORKER_PORT
from wharf_e2e.kind import (
    GPU,
    MODEL_ARCHIVE,
    SERVED_MODEL,
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
from wharf_e2e.kube import Kube
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_e2e.vllm_servers import metric_value

pytestmark = [pytest.mark.kind, pytest.mark.gpu, pytest.mark.timeout(1800)]

NAME = "tiny-llama"
# The image pull is done (kind load); the storage initializer, the engine's load and, with the
# CPU build, its warm-up take the time. Only a hang turns into a failure, with the pods' logs.
READY_S = 1500
MAX_TOKENS = 10


def _metric(text: str, name: str, **labels: str) -> float:
    return metric_value(text, name, labels or None) or 0.0


async def test_a_vllm_model_answers_chat_through_the_router(
    kind: Kube,
    kind_namespace: str,
    require_gpus: Callable[[int], Awaitable[int]],
    tmp_path: Path,
) -> None:
    await require_gpus(1)
    ns = kind_namespace
    archive = tar_gz(build_tiny_llama(tmp_path / "tiny-llama"))
    await serve_files(kind, ns, {MODEL_ARCHIVE: archive})

    await kind.apply(llm_service(ns, NAME, file_url(ns, MODEL_ARCHIVE)), ns)
    await wait_ready(kind, "serving.kserve.io/v1alpha1", "LLMInferenceService", NAME, ns, READY_S)

    # What the controller made of it: one combined worker holding one GPU.
    deployment = await kind.get("apps/v1", "Deployment", child_name(NAME, "-kserve"), ns)
    assert deployment is not None
    command = main_command(deployment)
    assert flag(command, "--role") == "both"
    assert flag(command, "--served-model-name") == SERVED_MODEL
    (worker,) = await list_pods(kind, ns, workload_labels(NAME, "both"))
    (main,) = [c for c in worker["spec"]["containers"] if c["name"] == "main"]
    assert main["resources"]["limits"][GPU] == "1"

    gateway = service_target(child_name(NAME, "-epp-service"), ROUTER_PORT)
    await wait_router_sees(kind, ns, gateway, ["both"])

    status, models = await proxy(kind, ns, gateway, "v1/models")
    assert status == 200 and SERVED_MODEL in models

    prompt = "which pod holds my prefix?"
    chat = ChatCompletion.model_validate(
        await proxy_json(kind, ns, gateway, "v1/chat/completions", chat_body(prompt, MAX_TOKENS))
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None
    assert chat.usage.completion_tokens == MAX_TOKENS
    assert chat.usage.prompt_tokens > 0
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + MAX_TOKENS

    status, text = await proxy(
        kind,
        ns,
        gateway,
        "v1/chat/completions",
        method="POST",
        body=chat_body(prompt, MAX_TOKENS, stream=True),
    )
    assert status == 200, text[:500]
    events, done = sse_data(text)
    chunks = [ChatCompletionChunk.model_validate(e) for e in events]
    assert done
    assert len(chunks) > 2  # one event per token, not one body
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == chat.choices[0].message.content  # greedy: the same answer
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == MAX_TOKENS
    assert usage.prompt_tokens == chat.usage.prompt_tokens

    # The worker's /metrics: vLLM's own series, counting exactly the tokens of these two
    # requests, and Wharf's worker info.
    metrics = await proxy_text(
        kind, ns, pod_target(worker["metadata"]["name"], WORKER_PORT), "metrics"
    )
    assert _metric(metrics, "vllm:generation_tokens_total") == 2 * MAX_TOKENS
    assert _metric(metrics, "vllm:prompt_tokens_total") >= chat.usage.prompt_tokens
    assert "vllm:num_requests_running" in metrics
    assert _metric(metrics, "wharf_llm_worker_info", role="both", model=SERVED_MODEL) == 1

    # The router counted both, with the engine's usage.
    routed = await proxy_text(kind, ns, gateway, "metrics")
    assert _metric(routed, "wharf_router_requests_total", api="chat", code="200") == 2
    assert _metric(routed, "wharf_router_completion_tokens_total") == 2 * MAX_TOKENS
