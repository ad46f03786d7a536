"""The Hugging Face runtime for real, in the LLM engine environment (torch, transformers,
vLLM CPU build): tiny models built here, `wharf-model-server --model_format huggingface`
processes on loopback, answers checked against the same models run directly with
transformers in that environment.

- a BERT classifier: V1 and V2 predict (REST), V2 over gRPC;
- BERT fill-mask and token classification: V1 predict;
- a BERT encoder: `/openai/v1/embeddings` with the `openai` client;
- the tiny Llama on vLLM (auto backend, the only vLLM engine of this module) and on the
  transformers fallback: chat plain and streamed, completions, `/openai/v1/models`.

Marked `vllm`: skipped with the reason when the engine environment is not installed
(scripts/install-llm-engine), failed under CI=true or WHARF_LLM_ENGINE_REQUIRED=1.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from wharf_e2e.testing import free_port
from wharf_e2e.tinybert import build_tiny_bert
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_e2e.vllm_servers import require_engine

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[3]
STARTUP_S = 1000.0  # a vLLM engine takes 70-155 s on an idle machine, far more on a busy one
TEXTS = ["the movie was great", "i hate the night", "dog cat", "paris is a city"]
MASKED = ["the [MASK] was great", "i love the [MASK] ."]
CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "tell me about the wharf"}]

REFERENCE = r"""
import json, sys
import torch, transformers as t
root = sys.argv[1]
texts = json.loads(sys.argv[2]); masked = json.loads(sys.argv[3])
out = {}
def run(cls, name, batch):
    tok = t.AutoTokenizer.from_pretrained(f"{root}/{name}")
    model = cls.from_pretrained(f"{root}/{name}").eval()
    enc = tok(batch, return_tensors="pt", padding=True)
    with torch.no_grad():
        return tok, enc, model(**enc)
_, _, o = run(t.AutoModelForSequenceClassification, "sequence_classification", texts)
out["classes"] = o.logits.argmax(-1).tolist()
_, _, o = run(t.AutoModelForTokenClassification, "token_classification", texts)
out["token_classes"] = o.logits.argmax(-1).tolist()
tok, enc, o = run(t.AutoModelForMaskedLM, "fill_mask", masked)
words = []
for row, ids in zip(o.logits, enc["input_ids"]):
    at = (ids == tok.mask_token_id).nonzero()[0, 0]
    words.append(tok.decode([int(row[at].argmax())]))
out["fill"] = words
_, enc, o = run(t.AutoModel, "embedding", texts)
mask = enc["attention_mask"].unsqueeze(-1).float()
mean = (o.last_hidden_state * mask).sum(1) / mask.sum(1)
out["embeddings"] = torch.nn.functional.normalize(mean, dim=1).tolist()
out["embedding_tokens"] = int(enc["attention_mask"].sum())
print(json.dumps(out))
"""


@dataclass
class Runtime:
    name: str
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self) -> Runtime:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{self.name} not ready in {STARTUP_S} s; log: {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                # Still loading: vLLM's engine process (same process group) goes too.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="module")
def python() -> Path:
    return require_engine()


def engine_env(python: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Small KV space: the tiny model needs little and the machine is shared.
    env.update(VLLM_CPU_KVCACHE_SPACE="1", WHARF_BIND_HOST="127.0.0.1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def models(python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf-models")
    for head in ("sequence_classification", "token_classification", "fill_mask", "embedding"):
        build_tiny_bert(root / head, head)
    build_tiny_llama(root / "llama")
    return root


@pytest.fixture(scope="module")
def runtimes(
    python: Path, models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Runtime]]:
    """Every server of the module, started at once (their start-ups overlap)."""
    logs = tmp_path_factory.mktemp("hf-logs")
    specs = {
        "clf": ["--model_dir", str(models / "sequence_classification")],
        "tok": ["--model_dir", str(models / "token_classification")],
        "fill": ["--model_dir", str(models / "fill_mask")],
        "emb": ["--model_dir", str(models / "embedding"), "--task", "text_embedding"],
        "llm-hf": ["--model_dir", str(models / "llama"), "--backend", "huggingface"],
        # auto: vLLM supports LlamaForCausalLM; `--enforce-eager` is a vLLM flag passed on.
        "llm": [
            "--model_dir",
            str(models / "llama"),
            "--max_model_len",
            "512",
            "--enforce-eager",
            "--dtype",
            "bfloat16",
        ],
    }
    started: dict[str, Runtime] = {}
    try:
        for name, extra in specs.items():
            http_port, grpc_port = free_port(), free_port()
            log = logs / f"{name}.log"
            cmd = [
                str(python), "-m", "wharf_model_server", "--model_format", "huggingface",
                "--model_name", name, "--http_port", str(http_port), "--grpc_port", str(grpc_port),
                # gRPC only where a test uses it: fewer ports to race for on a shared machine
                "--enable_grpc", "true" if name == "clf" else "false", *extra,
            ]  # fmt: skip
            with log.open("wb") as sink:
                proc = subprocess.Popen(
                    cmd, stdout=sink, stderr=subprocess.STDOUT, env=engine_env(python), cwd=REPO,
                    start_new_session=True,
                )  # fmt: skip
            started[name] = Runtime(name, proc, http_port, grpc_port, log)
        yield started
    finally:
        for runtime in started.values():
            runtime.stop()


@pytest.fixture(scope="module")
def reference(python: Path, models: Path) -> dict[str, object]:
    result = subprocess.run(
        [str(python), "-c", REFERENCE, str(models), json.dumps(TEXTS), json.dumps(MASKED)],
        check=True,
        capture_output=True,
        env=engine_env(python),
    )
    return dict(json.loads(result.stdout.decode().strip().splitlines()[-1]))


def ready(runtimes: dict[str, Runtime], name: str) -> Runtime:
    return runtimes[name].wait_ready()


# Clients a test opened, closed when it ends: left to the garbage collector, a pooled socket can
# outlive its client and report itself unclosed at the session's end (an error here).
_opened: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def oai(runtime: Runtime) -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"{runtime.url}/openai/v1", api_key="none", max_retries=0,
                           timeout=120)  # fmt: skip
    _opened.append(client)
    return client


# -- classic tasks on the transformers backend ------------------------------------------------


def test_classifier_answers_v1_and_v2_like_transformers(
    runtimes: dict[str, Runtime], reference: dict[str, object]
) -> None:
    clf = ready(runtimes, "clf")
    expected = reference["classes"]
    assert isinstance(expected, list)
    assert len(set(expected)) > 1, "the tiny classifier should tell these texts apart"
    v1 = httpx.post(f"{clf.url}/v1/models/clf:predict", json={"instances": TEXTS}, timeout=60)
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == expected
    v2_body = {"inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES",
                           "data": TEXTS}]}  # fmt: skip
    v2 = httpx.post(f"{clf.url}/v2/models/clf/infer", json=v2_body, timeout=60)
    assert v2.status_code == 200, v2.text
    output = v2.json()["outputs"][0]
    assert (output["datatype"], output["shape"], output["data"]) == (
        "INT64", [len(TEXTS)], expected,
    )  # fmt: skip


def test_classifier_answers_v2_over_grpc(
    runtimes: dict[str, Runtime], reference: dict[str, object]
) -> None:
    import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

    clf = ready(runtimes, "clf")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{clf.grpc_port}")
    text = grpcclient.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
    answer = client.infer("clf", [text])
    assert answer.as_numpy("output-0").tolist() == reference["classes"]
    client.close()


def test_bad_classifier_input_is_a_400(runtimes: dict[str, Runtime]) -> None:
    clf = ready(runtimes, "clf")
    r = httpx.post(f"{clf.url}/v1/models/clf:predict", json={"instances": [1, 2]}, timeout=60)
    assert r.status_code == 400 and "texts" in r.json()["error"]


def test_fill_mask_and_token_classification_answer_v1(
    runtimes: dict[str, Runtime], reference: dict[str, object]
) -> None:
    fill = ready(runtimes, "fill")
    r = httpx.post(f"{fill.url}/v1/models/fill:predict", json={"instances": MASKED}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == reference["fill"]
    no_mask = httpx.post(f"{fill.url}/v1/models/fill:predict", json={"instances": ["a b"]})
    assert no_mask.status_code == 400
    tok = ready(runtimes, "tok")
    r = httpx.post(f"{tok.url}/v1/models/tok:predict", json={"instances": TEXTS}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == reference["token_classes"]


def test_embeddings_through_the_openai_client(
    runtimes: dict[str, Runtime], reference: dict[str, object]
) -> None:
    emb = ready(runtimes, "emb")
    client = oai(emb)
    answer = client.embeddings.create(model="emb", input=TEXTS)
    got = np.array([d.embedding for d in answer.data])
    np.testing.assert_allclose(got, np.array(reference["embeddings"]), atol=1e-5)
    assert answer.usage.prompt_tokens == reference["embedding_tokens"]
    # (the client above asked for base64 and decoded it itself; ask with httpx to see both)
    for fmt in ("float", "base64"):
        wire = httpx.post(f"{emb.url}/openai/v1/embeddings", timeout=60,
                          json={"model": "emb", "input": TEXTS[0], "encoding_format": fmt})  # fmt: skip
        vector = wire.json()["data"][0]["embedding"]
        if fmt == "base64":
            vector = np.frombuffer(base64.b64decode(vector), "<f4")
        np.testing.assert_allclose(vector, got[0], atol=1e-6)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="emb", input=[[1, 2, 3]])
    clf = ready(runtimes, "clf")
    with pytest.raises(openai.APIStatusError) as caught:
        oai(clf).embeddings.create(model="clf", input="x")
    assert caught.value.status_code == 501


# -- generation: vLLM (one engine) and the transformers fallback ------------------------------


@pytest.mark.parametrize("name", ["llm-hf", "llm"])
def test_chat_plain_and_streamed_agree(runtimes: dict[str, Runtime], name: str) -> None:
    runtime = ready(runtimes, name)
    client = oai(runtime)
    assert [m.id for m in client.models.list()] == [name]
    plain = client.chat.completions.create(
        model=name,
        messages=CHAT,
        max_tokens=12,
        temperature=0,
    )
    text = plain.choices[0].message.content
    assert text, "the tiny model says something"
    assert plain.usage is not None and plain.usage.completion_tokens <= 12
    assert plain.choices[0].finish_reason in ("length", "stop")
    stream = client.chat.completions.create(
        model=name, messages=CHAT, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == [plain.choices[0].finish_reason]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


@pytest.mark.parametrize("name", ["llm-hf", "llm"])
def test_completions_respect_max_tokens_and_stop(runtimes: dict[str, Runtime], name: str) -> None:
    runtime = ready(runtimes, name)
    client = oai(runtime)
    answer = client.completions.create(model=name, prompt="the wharf", max_tokens=5,
                                       temperature=0, extra_body={"ignore_eos": True})  # fmt: skip
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    assert answer.choices[0].finish_reason == "length"
    text = answer.choices[0].text
    # Stopping at a piece of the greedy answer cuts the text just before it.
    stop = text.strip()[-2:] if len(text.strip()) >= 2 else None
    if stop:
        cut = client.completions.create(model=name, prompt="the wharf", max_tokens=5,
                                        temperature=0, stop=[stop],
                                        extra_body={"ignore_eos": True})  # fmt: skip
        assert cut.choices[0].finish_reason == "stop"
        assert cut.choices[0].text == text[: text.index(stop)]
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model=name, prompt="the wharf", max_tokens=10**6)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="x")
