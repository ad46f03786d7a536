"""`wharf up` serves an InferenceService with `modelFormat: huggingface`.

The built-in ClusterServingRuntime `kserve-huggingfaceserver` is selected as on a cluster; its
command, `wharf-model-server --model-format=huggingface`, starts in the workspace environment
and hands itself to the LLM engine environment's python (torch and transformers live only
there). A tiny BERT classifier built here, `--backend huggingface` (transformers, no vLLM
engine), answers V1 predict through the ingress with the classes transformers computes for the
same texts in that environment. Marked `vllm` because it needs the engine environment: skipped
with the reason without it, failed under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wharf_e2e.local_wharf import LocalWharf
from wharf_e2e.tinybert import build_tiny_bert
from wharf_e2e.vllm_servers import ENGINE_ENV, require_engine

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.vllm, pytest.mark.timeout(900)]

NAME = "clf"
HOST = f"{NAME}-default.example.com"
TEXTS = ["the movie was great", "i hate the night", "dog cat", "paris is a city"]
UP_TIMEOUT_S = 600  # torch and transformers load slowly on a busy 2-core machine

REFERENCE = r"""
import json, sys
import torch, transformers as t
tok = t.AutoTokenizer.from_pretrained(sys.argv[1])
model = t.AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
with torch.no_grad():
    logits = model(**tok(json.loads(sys.argv[2]), return_tensors="pt", padding=True)).logits
print(json.dumps(logits.argmax(-1).tolist()))
"""


@pytest.fixture(scope="module")
def engine_python() -> str:
    return str(require_engine())


@pytest.fixture(scope="module")
def wharf(engine_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWharf]:
    w = LocalWharf(tmp_path_factory.mktemp("wharf-hf"))
    try:
        yield w
    finally:
        w.run_unchecked("down", timeout=180)


def test_up_serves_a_huggingface_classifier_with_the_classes_transformers_gives(
    wharf: LocalWharf, engine_python: str
) -> None:
    model = build_tiny_bert(wharf.root / "tiny-bert", "sequence_classification")
    expected = json.loads(
        subprocess.run(
            [engine_python, "-c", REFERENCE, str(model), json.dumps(TEXTS)],
            env={**os.environ, **ENGINE_ENV},
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    )
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "storageUri": model.as_uri(),
                    "args": ["--backend=huggingface"],
                }
            }
        },
    }
    path = wharf.root / "clf.yaml"
    path.write_text(json.dumps(manifest))
    up = wharf.run_unchecked(
        "up", "-f", str(path), "--timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 60
    )
    logs = wharf.run_unchecked("logs", NAME).stdout[-3000:]
    assert up.returncode == 0, up.stdout + up.stderr + logs
    assert f"{NAME} is ready: http://{HOST}" in up.stdout

    with httpx.Client(base_url=f"http://127.0.0.1:{wharf.port}", timeout=60) as http:
        answer = http.post(
            f"/v1/models/{NAME}:predict", json={"instances": TEXTS}, headers={"host": HOST}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected
    # the replica is the model server run by the engine environment's python
    item = json.loads(wharf.run_unchecked("get", NAME, "-o", "json").stdout)
    (revision,) = item["local"]["revisions"]["predictor"]
    pids = [r["pid"] for r in revision["replicas"] if r["pid"]]
    assert pids
    argv = Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode().split("\0")
    assert argv[:3] == [engine_python, "-m", "wharf_model_server"], argv
