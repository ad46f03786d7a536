"""A LoRA adapter served by vLLM for real: an LLMInferenceService with `model.lora` goes through
the LLM plan and the local runtime's command line (`wharf_local.llm_plan.worker_processes`, what
`wharf up` runs) to a `wharf-llm-worker` process, whose vLLM (CPU build) serves the tiny Llama
and a tiny adapter built here (`wharf_e2e.tinyllm.build_tiny_lora`, non-zero B weights).

The reference is independent of vLLM: transformers, in the engine environment, with the
adapter's weights merged into the base model (W + alpha/r * B @ A on q_proj and v_proj).

One worker of its own, not the session's shared one: `--enable-lora` adds the adapter to
`/v1/models`, which other tests pin to the base model's name alone, and this worker runs in
float32 so that its greedy answers equal the float32 reference token for token (the shared
workers run bfloat16). It costs one more vLLM start (70-155 s) in the suite.

Marker `vllm`: skipped with the reason without the engine environment, failed under CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from wharf_api import default, parse_object
from wharf_api.llm import plan_llm_inference_service
from wharf_api.resources import LLMInferenceService
from wharf_e2e.testing import quiet_port
from wharf_e2e.tinyllm import build_tiny_llama, build_tiny_lora
from wharf_e2e.vllm_servers import (
    ENGINE_ENV,
    SERVED_MODEL_NAME,
    TEST_TIMEOUT_S,
    VllmWorker,
    WorkerSpec,
    require_engine,
)
from wharf_llm_worker.engine_env import engine_python
from wharf_local.llm_plan import worker_processes

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

ADAPTER = "sql"
PROMPT = "the wharf"
MAX_TOKENS = 12
# As the shared workers, but float32: the reference below computes in float32.
ENGINE_ARGS = ["--dtype", "float32", "--max-model-len", "1024", "--enforce-eager"]

# transformers' greedy answer for the base model and for the base with the adapter merged in.
REFERENCE = r"""
import json, sys
import torch, transformers as t
from safetensors.torch import load_file
base, adapter, prompt, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tok = t.AutoTokenizer.from_pretrained(base)
out = {}
for name, path in (("base", None), ("adapter", adapter)):
    model = t.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    if path:
        config = json.load(open(f"{path}/adapter_config.json"))
        weights = load_file(f"{path}/adapter_model.safetensors")
        scale = config["lora_alpha"] / config["r"]
        params = dict(model.named_parameters())
        for key, a in weights.items():
            if ".lora_A." in key:
                b = weights[key.replace(".lora_A.", ".lora_B.")]
                target = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
                with torch.no_grad():
                    params[target] += scale * (b @ a)
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, eos_token_id=None)
    out[name] = tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
print(json.dumps(out))
"""


def _plan_argv(base: Path, adapter: Path) -> list[str]:
    """The worker's command line as `wharf up` builds it from the manifest's `model.lora`."""
    doc = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": "lora", "namespace": "test"},
        "spec": {
            "model": {
                "uri": "hf://org/tiny",
                "name": SERVED_MODEL_NAME,
                "lora": {"adapters": [{"name": ADAPTER, "uri": "hf://org/sql-lora"}]},
            },
            "replicas": 1,
        },
    }
    service = default(parse_object(doc))
    assert isinstance(service, LLMInferenceService)
    plan = plan_llm_inference_service(service, {})
    mounts = {m.mount_path: str(base if m.kind == "model" else adapter) for m in plan.storage}
    (process,) = worker_processes(plan, mounts, quiet_port)
    assert f"{ADAPTER}={adapter}" in process.argv, process.argv
    return [*process.argv, *ENGINE_ARGS]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require_engine()
    root = tmp_path_factory.mktemp("lora")
    base = build_tiny_llama(root / "base")
    return base, build_tiny_lora(root / ADAPTER, base)


@pytest.fixture(scope="module")
def worker(models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base, adapter = models
    argv = _plan_argv(base, adapter)
    spec = WorkerSpec(role="both", model_dir=base,
                      log_path=tmp_path_factory.mktemp("lora-log") / "worker.log")  # fmt: skip
    process = VllmWorker(spec)
    # The plan's command line, not the one VllmWorker composes: run its `wharf-llm-worker`
    # through this interpreter's module, on the port the plan gave it.
    process.command = [sys.executable, "-m", "wharf_llm_worker.cli", *argv[1:]]
    process.port = int(argv[argv.index("--port") + 1])
    process.launch()
    try:
        process.wait_ready()
        yield process.openai_base_url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def reference(models: tuple[Path, Path]) -> dict[str, str]:
    base, adapter = models
    done = subprocess.run(
        [str(engine_python()), "-c", REFERENCE, str(base), str(adapter), PROMPT, str(MAX_TOKENS)],
        check=True,
        capture_output=True,
        env={**os.environ, **ENGINE_ENV},
    )
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def test_the_adapter_is_listed_and_answers_as_the_merged_weights_do(
    worker: str, reference: dict[str, str]
) -> None:
    assert reference["adapter"] != reference["base"], "the adapter should change the answer"
    with openai.OpenAI(base_url=worker, api_key="unused", timeout=120, max_retries=0) as client:
        models = {m.id: m for m in client.models.list()}
        assert set(models) == {SERVED_MODEL_NAME, ADAPTER}
        answers = {}
        for name in (SERVED_MODEL_NAME, ADAPTER):
            answer = client.completions.create(
                model=name, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            assert answer.model == name
            answers[name] = answer.choices[0].text
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="no-such-adapter", prompt=PROMPT, max_tokens=2)
    assert answers[SERVED_MODEL_NAME] == reference["base"]
    assert answers[ADAPTER] == reference["adapter"]
