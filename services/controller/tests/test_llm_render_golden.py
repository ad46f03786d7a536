"""Golden files of what the controller creates for every LLMInferenceService in `examples/`, the
LLM seeds and wharf-api's LLM fixtures (the inputs of wharf-api's golden plans); every object of
a built-in kind passes `kubernetes-validate` (strict), every custom object its CRD's schema.

Regenerate after an intended change with `WHARF_UPDATE_GOLDEN=1 uv run pytest
services/controller/tests/test_llm_render_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from wharf_api import load_documents
from wharf_api.config import InferenceServiceConfig
from wharf_api.crdgen.k8s_schemas import KUBERNETES_MINOR
from wharf_controller.llm_render import parse_llm, parse_llm_config, render_llm_service
from wharf_e2e.crds import crd_schemas

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
GOLDEN = HERE / "golden" / "llm"
API_TESTS = REPO / "libs" / "wharf-api" / "tests"
UPDATE = os.environ.get("WHARF_UPDATE_GOLDEN") == "1"
BUILT_IN = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1")
LLM_KINDS = ("LLMInferenceService", "LLMInferenceServiceConfig")

# (name prefix, folder, glob): where LLM manifests live; configs in the same folder apply
SOURCES = [
    ("examples", REPO / "examples", "*.yaml"),
    ("fixtures", API_TESTS / "fixtures", "**/*.yaml"),
    ("seeds", API_TESTS / "golden" / "llm" / "inputs", "*.yaml"),
]


def _docs(folder: Path, pattern: str) -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(folder.glob(pattern))
        for doc in load_documents(path)
        if doc.get("kind") in LLM_KINDS
    ]


def _cases() -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    cases = []
    for prefix, folder, pattern in SOURCES:
        docs = _docs(folder, pattern)
        configs = [d for _, d in docs if d["kind"] == "LLMInferenceServiceConfig"]
        for path, doc in docs:
            if doc["kind"] != "LLMInferenceService":
                continue
            rel = path.relative_to(folder).with_suffix("")
            golden = f"{prefix}-{'-'.join(rel.parts)}-{doc['metadata']['name']}.yaml"
            cases.append((golden, doc, configs))
    return cases


CASES = _cases()


def render(doc: dict[str, Any], configs: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    return render_llm_service(
        parse_llm(doc), [parse_llm_config(c) for c in configs], InferenceServiceConfig(), **kw
    )[2]


def _text(doc: dict[str, Any], configs: list[dict[str, Any]]) -> str:
    try:
        objects = render(doc, configs)
    except ValueError as exc:
        return f"# error: {exc}\n"
    return yaml.safe_dump_all(objects, sort_keys=False)


@pytest.mark.parametrize(("golden", "doc", "configs"), CASES, ids=[c[0] for c in CASES])
def test_render_matches_the_golden_file(
    golden: str, doc: dict[str, Any], configs: list[dict[str, Any]]
) -> None:
    text = _text(doc, configs)
    target = GOLDEN / golden
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        target.write_text(text)
    assert target.exists(), f"{target} is missing: run with WHARF_UPDATE_GOLDEN=1"
    assert text == target.read_text(), f"{golden} renders differently: review, then update"


def test_every_golden_file_has_a_manifest() -> None:
    present = {p.name for p in GOLDEN.glob("*.yaml")}
    assert present == {c[0] for c in CASES}


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    # the real third-party CRDs (e2e/cluster/third-party-crds.sh) and cert-manager's stubs
    return crd_schemas()


# an invalid manifest (a fixture KServe rejects) has the error as its golden file, no objects
RENDERING = [c for c in CASES if not _text(c[1], c[2]).startswith("# error")]


@pytest.mark.setup_tools  # the real CRDs (e2e/cluster/third-party-crds.sh)
@pytest.mark.parametrize(("golden", "doc", "configs"), RENDERING, ids=[c[0] for c in RENDERING])
def test_every_rendered_object_is_valid_for_its_schema(
    golden: str, doc: dict[str, Any], configs: list[dict[str, Any]]
) -> None:
    text = _text(doc, configs)
    schemas = _crd_schemas()
    for obj in yaml.safe_load_all(text):
        if obj["apiVersion"] in BUILT_IN:
            kubernetes_validate.validate(obj, KUBERNETES_MINOR, strict=True)
        else:
            jsonschema.validate(obj, schemas[(obj["apiVersion"], obj["kind"])])


def test_the_sources_cover_every_shape() -> None:
    names = {c[0] for c in CASES}
    for wanted in ("examples-llm-pd-qwen-pd.yaml", "examples-llm-multinode-llama-70b.yaml",
                   "examples-llm-multinode-pd-deepseek-wide-ep.yaml",
                   "examples-llm-inference-service-qwen-small.yaml",
                   "seeds-004-huggingface-gemma3.yaml"):  # fmt: skip
        assert wanted in names


def test_the_render_command_prints_an_llm_services_children(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wharf_controller.__main__ import main

    code = main(
        ["render", "-f", str(REPO / "examples" / "llm-config-cpu.yaml"),
         "-f", str(REPO / "examples" / "llm-pd.yaml")]
    )  # fmt: skip
    assert code == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert objects == render(
        next(d for d in load_documents(REPO / "examples" / "llm-pd.yaml")),
        list(load_documents(REPO / "examples" / "llm-config-cpu.yaml")),
    )


def test_the_render_command_names_the_field_of_an_unplannable_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wharf_controller.__main__ import main

    doc = next(d for d in load_documents(REPO / "examples" / "llm-pd.yaml"))
    doc["spec"]["baseRefs"] = [{"name": "no-such-config"}]
    path = tmp_path / "llm.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["render", "-f", str(path)]) == 1
    assert "spec.baseRefs[0].name" in capsys.readouterr().err
