"""`wharf up` serves a prefill/decode LLMInferenceService end to end, with real vLLM (CPU build).

A user's manifest with `spec.prefill` (one prefill and one decode worker, NixlConnector between
them, Wharf's gateway in front) pointed at the tiny model this test builds: a chat through the
ingress is prefilled by the prefill worker and decoded by the decode worker, whose metrics show
every prompt token of that chat came over the KV transfer and none was computed locally, and
the answer is the one the decode worker gives computing the prompt itself (greedy). `delete`
leaves no process. Without the engine environment the test skips (fails under CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from openai import OpenAI

from wharf_e2e.local_wharf import LocalWharf, alive, unit_pids
from wharf_e2e.testing import wait_until
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_e2e.vllm_servers import (
    STARTUP_S,
    metric_value,
    require_engine,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.vllm]

NAME = "tiny-pd"
HOST = f"{NAME}-default.example.com"
DECODE = f"{NAME}-kserve"
PREFILL = f"{NAME}-kserve-prefill"
UP_TIMEOUT_S = int(STARTUP_S)
TEST_TIMEOUT_S = UP_TIMEOUT_S + 300
SOURCE = "vllm:prompt_tokens_by_source_total"
# The same small engine for both roles: a user gives the prefill pool its own template, as in
# KServe (spec.template is the decode workers').
WORKER = {
    "containers": [
        {
            "name": "main",
            "args": ["--dtype", "bfloat16", "--max-model-len", "1024", "--enforce-eager"],
            "env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"}],
        }
    ]
}
PROMPT = " ".join(f"delta {i}: the prefill worker computes and decode reads." for i in range(10))


def _manifest(model_uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": model_uri, "name": "tiny-llama"},
            "replicas": 1,
            "template": WORKER,
            "prefill": {"replicas": 1, "template": WORKER},
            "router": {"route": {}, "scheduler": {}},
        },
    }


@pytest.fixture(scope="module")
def wharf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWharf]:
    require_engine()
    root = tmp_path_factory.mktemp("wharf-llm-pd")
    model = build_tiny_llama(root / "tiny-llama")
    (root / "llm.yaml").write_text(yaml.safe_dump(_manifest(model.as_uri())))
    w = LocalWharf(root)
    try:
        yield w
    finally:
        w.run_unchecked("down", timeout=180)


def _metric(text: str, name: str, **labels: str) -> float:
    return metric_value(text, name, labels or None) or 0.0


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_up_serves_prefill_decode_through_the_ingress(wharf: LocalWharf) -> None:
    up = wharf.run(
        "up", "-f", str(wharf.root / "llm.yaml"), "--timeout", str(UP_TIMEOUT_S),
        timeout=UP_TIMEOUT_S + 60,
    )  # fmt: skip
    assert f"{NAME} is ready: http://{HOST}" in up.stdout
    item = wharf.item("llmisvc", NAME)
    workloads = item["local"]["workloads"]
    assert workloads[DECODE]["role"] == "decode" and workloads[PREFILL]["role"] == "prefill"
    assert [u["state"] for u in workloads[DECODE]["workers"]] == ["ready"]
    assert [u["state"] for u in workloads[PREFILL]["workers"]] == ["ready"]
    router = f"http://127.0.0.1:{item['local']['router']['httpPort']}"
    decode = f"http://127.0.0.1:{workloads[DECODE]['workers'][0]['httpPort']}"

    def router_metrics() -> str:
        return httpx.get(f"{router}/metrics", timeout=10).text

    # the gateway warms each new prefill/decode pair up once (NIXL's first hand-shake) before
    # counting; measure after it
    wait_until(
        lambda: _metric(router_metrics(), "wharf_router_pd_warmups_total", outcome="ok") >= 1,
        "the gateway's P/D warm-up",
        timeout_s=120,
    )
    before = httpx.get(f"{decode}/metrics", timeout=10).text
    handoffs = _metric(router_metrics(), "wharf_router_pd_handoffs_total")
    messages: Any = [{"role": "user", "content": PROMPT}]
    with OpenAI(
        base_url=f"{wharf.ingress}/v1", api_key="none", default_headers={"Host": HOST}
    ) as client:
        chunks = list(
            client.chat.completions.create(
                model="tiny-llama", messages=messages, max_tokens=12, temperature=0,
                stream=True, stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
        )  # fmt: skip
    split = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12

    after = httpx.get(f"{decode}/metrics", timeout=10).text
    external = _metric(after, SOURCE, source="external_kv_transfer") - _metric(
        before, SOURCE, source="external_kv_transfer"
    )
    local = _metric(after, SOURCE, source="local_compute") - _metric(
        before, SOURCE, source="local_compute"
    )
    assert external == usage.prompt_tokens and local == 0
    text = router_metrics()
    assert _metric(text, "wharf_router_pd_handoffs_total") == handoffs + 1
    assert _metric(text, "wharf_router_pd_prefill_fallbacks_total") == 0

    # the decode worker alone, computing the prompt itself, gives the same greedy answer
    with OpenAI(base_url=f"{decode}/v1", api_key="none") as direct:
        alone = direct.chat.completions.create(
            model="tiny-llama", messages=messages, max_tokens=12, temperature=0,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
    assert split == alone.choices[0].message.content

    pids = unit_pids(item)
    assert len(pids) == 3  # decode, prefill, router
    deleted = wharf.run("delete", "llmisvc", NAME, timeout=180)
    assert f'llminferenceservice "{NAME}" deleted' in deleted.stdout
    wait_until(lambda: not any(alive(p) for p in pids), "every process gone", timeout_s=60)
