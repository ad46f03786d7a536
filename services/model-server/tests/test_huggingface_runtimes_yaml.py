"""The ClusterServingRuntimes of the Hugging Face runtime (deploy/base/runtimes): valid, in the
kustomization, and chosen by KServe's runtime selection for the InferenceServices KServe's docs
write (`modelFormat: huggingface`, with and without `workerSpec`; `modelFormat: vLLM`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_api import default, load_documents, parse_object, select_runtime, validate
from wharf_api.resources import ClusterServingRuntime, InferenceService
from wharf_model_server.__main__ import build_arg_parser

RUNTIMES = Path(__file__).resolve().parents[3] / "deploy" / "base" / "runtimes"
NAMES = ("kserve-huggingfaceserver", "kserve-huggingfaceserver-multinode", "kserve-vllmserver")


def cluster_runtimes() -> list[ClusterServingRuntime]:
    out = []
    for path in sorted(RUNTIMES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_documents(path.read_text()):
            obj = parse_object(doc)
            assert isinstance(obj, ClusterServingRuntime)
            validate(obj)
            out.append(obj)
    return out


def isvc(model: dict[str, Any], worker: bool = False) -> InferenceService:
    predictor: dict[str, Any] = {"model": model}
    if worker:
        predictor["workerSpec"] = {"tensorParallelSize": 1, "pipelineParallelSize": 2}
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "llm", "namespace": "default"},
        "spec": {"predictor": predictor},
    }
    obj = parse_object(doc)
    assert isinstance(obj, InferenceService)
    return default(obj)


def test_the_runtimes_are_valid_and_listed() -> None:
    names = {rt.metadata.name for rt in cluster_runtimes()}
    assert set(NAMES) <= names
    listed = yaml.safe_load((RUNTIMES / "kustomization.yaml").read_text())["resources"]
    assert {f"{n}.yaml" for n in NAMES} <= set(listed)


@pytest.mark.parametrize(
    ("model", "worker", "chosen"),
    [
        ({"modelFormat": {"name": "huggingface"}, "storageUri": "hf://org/m"}, False,
         "kserve-huggingfaceserver"),
        ({"modelFormat": {"name": "huggingface"}, "storageUri": "hf://org/m"}, True,
         "kserve-huggingfaceserver-multinode"),
        ({"modelFormat": {"name": "vLLM"}, "storageUri": "hf://org/m"}, False,
         "kserve-vllmserver"),
        ({"modelFormat": {"name": "huggingface"}, "protocolVersion": "v2",
          "storageUri": "hf://org/m"}, False, "kserve-huggingfaceserver"),
    ],
)  # fmt: skip
def test_runtime_selection_picks_them_as_kserve_does(
    model: dict[str, Any], worker: bool, chosen: str
) -> None:
    name, _, is_cluster = select_runtime(isvc(model, worker), [], cluster_runtimes())
    assert (name, is_cluster) == (chosen, True)


def test_their_command_lines_parse_as_the_huggingface_runtime() -> None:
    for rt in cluster_runtimes():
        if rt.metadata.name not in ("kserve-huggingfaceserver", "kserve-vllmserver"):
            continue
        assert rt.spec.containers
        container = rt.spec.containers[0]
        assert container.command == ["wharf-model-server"]
        args = [a.replace("{{.Name}}", "llm") for a in container.args or []]
        parsed, unknown = build_arg_parser(huggingface=True).parse_known_args(args)
        assert not unknown
        assert (parsed.model_name, parsed.model_dir, parsed.http_port) == (
            "llm",
            "/mnt/models",
            8080,
        )
        assert parsed.model_format in ("huggingface", "vllm")
