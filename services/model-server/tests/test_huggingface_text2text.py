"""text2text_generation for real: a tiny T5 built here (`wharf_e2e.tinyt5`), served by
`wharf-model-server --model_format huggingface` in the LLM engine environment (the architecture
picks the task and the transformers backend), and checked against transformers' own
`generate` on the same folder with the same greedy settings.

What the runtime offers for the task is what KServe's huggingfaceserver offers: OpenAI
completions (plain and streamed) under `/openai/v1`; no chat without a chat template (T5 has
none); V1/V2 predict answer 501, as KServe's generative model serves no predict.

Marked `vllm` (it needs the engine environment's torch and transformers, not a vLLM engine):
skipped with the reason when scripts/install-llm-engine has not run, failed under CI=true.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from wharf_e2e.testing import free_port
from wharf_e2e.tinyt5 import build_tiny_t5
from wharf_e2e.vllm_servers import require_engine

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[3]
STARTUP_S = 600.0  # importing torch and transformers takes seconds idle, minutes on a busy machine
NAME = "t5"
MAX_TOKENS = 12
PROMPTS = ["hello world, how are you today?", "numbers 1 2 3", "the router sends requests"]

# transformers' own answer: the tokenizer's ids (T5 appends EOS), greedy generate, the new
# tokens decoded without special tokens (the decoder's start token is not an answer token).
REFERENCE = r"""
import json, sys
import torch, transformers as t
folder, prompts, max_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tok = t.AutoTokenizer.from_pretrained(folder)
model = t.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
out = []
for prompt in prompts:
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False)
    new = ids[0, 1:].tolist()
    out.append({"text": tok.decode(new, skip_special_tokens=True), "tokens": len(new),
                "prompt_tokens": int(enc["input_ids"].shape[1]),
                "eos": bool(new) and new[-1] == model.generation_config.eos_token_id})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def python() -> Path:
    return require_engine()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_t5(tmp_path_factory.mktemp("t5") / "model")


@pytest.fixture(scope="module")
def server(python: Path, model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("t5-log") / "server.log"
    cmd = [
        str(python), "-m", "wharf_model_server", "--model_format", "huggingface",
        "--model_name", NAME, "--http_port", str(port), "--grpc_port", str(free_port()),
        "--enable_grpc", "false", "--model_dir", str(model),
    ]  # fmt: skip
    env = {**os.environ, "WHARF_BIND_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"the T5 server exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the T5 server was not ready in {STARTUP_S} s; log: {log}")
            time.sleep(1)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="module")
def reference(python: Path, model: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(python), "-c", REFERENCE, str(model), json.dumps(PROMPTS), str(MAX_TOKENS)],
        check=True,
        capture_output=True,
    )
    answers = json.loads(done.stdout.decode().strip().splitlines()[-1])
    texts = [a["text"] for a in answers]
    assert len(set(texts)) == len(texts), f"the tiny T5 should answer each prompt apart: {texts}"
    return list(answers)


@pytest.fixture
def client(server: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server}/openai/v1", api_key="none", max_retries=0,
                       timeout=120) as c:  # fmt: skip
        yield c


def test_the_task_comes_from_the_architecture(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [NAME]


def test_completions_equal_transformers_generate(
    client: openai.OpenAI, reference: list[dict[str, object]]
) -> None:
    for prompt, expected in zip(PROMPTS, reference, strict=True):
        answer = client.completions.create(model=NAME, prompt=prompt, max_tokens=MAX_TOKENS,
                                           temperature=0)  # fmt: skip
        assert answer.choices[0].text == expected["text"], prompt
        assert answer.usage is not None
        assert answer.usage.prompt_tokens == expected["prompt_tokens"]
        assert answer.usage.completion_tokens == expected["tokens"]
        assert answer.choices[0].finish_reason == ("stop" if expected["eos"] else "length")
    # several prompts in one request: one choice each, in order
    batch = client.completions.create(model=NAME, prompt=PROMPTS, max_tokens=MAX_TOKENS,
                                      temperature=0)  # fmt: skip
    assert [c.text for c in sorted(batch.choices, key=lambda c: c.index)] == [
        r["text"] for r in reference
    ]


def test_streamed_completion_adds_up_to_the_same_answer(
    client: openai.OpenAI, reference: list[dict[str, object]]
) -> None:
    stream = client.completions.create(
        model=NAME, prompt=PROMPTS[0], max_tokens=MAX_TOKENS, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    pieces = [c.choices[0].text for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1, "the answer should come in several pieces"
    assert "".join(pieces) == reference[0]["text"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == reference[0]["tokens"]


def test_what_the_task_does_not_serve_is_refused_clearly(
    server: str, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError, match="chat template"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model=NAME, prompt="hi", echo=True, max_tokens=2)
    # As in KServe, a generative model answers the OpenAI routes only.
    v1 = httpx.post(f"{server}/v1/models/{NAME}:predict", json={"instances": PROMPTS[:1]},
                    timeout=60)  # fmt: skip
    v2_body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                           "data": PROMPTS[:1]}]}  # fmt: skip
    v2 = httpx.post(f"{server}/v2/models/{NAME}/infer", json=v2_body, timeout=60)
    for answer in (v1, v2):
        assert answer.status_code == 501, answer.text
        assert "does not serve inference requests" in answer.json()["error"]
