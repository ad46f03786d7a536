"""Golden plans: the plan of every LLMInferenceService in examples/, the seeds and the test
fixtures, pinned as YAML under tests/golden/llm/ and compared exactly.

After a deliberate change, rewrite them with `WHARF_UPDATE_GOLDEN=1 uv run pytest
libs/wharf-api/tests/test_llm_golden.py` and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_api import WharfValidationError, load_documents, parse_object, validation_errors
from wharf_api.llm import LLMPlanError, plan_llm_inference_service
from wharf_api.resources import LLMInferenceService, LLMInferenceServiceConfig

TESTS = Path(__file__).parent
REPO = TESTS.parents[2]
GOLDEN = TESTS / "golden" / "llm"
UPDATE = os.environ.get("WHARF_UPDATE_GOLDEN") == "1"

# (name prefix, folder, glob): where LLM manifests live; configs in the same folder apply
SOURCES = [
    ("examples", REPO / "examples", "*.yaml"),
    ("fixtures", TESTS / "fixtures", "**/*.yaml"),
    ("seeds", GOLDEN / "inputs", "*.yaml"),
]


def _docs(folder: Path, pattern: str) -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(folder.glob(pattern))
        for doc in load_documents(path)
        if doc.get("kind") in ("LLMInferenceService", "LLMInferenceServiceConfig")
    ]


def _configs(docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, LLMInferenceServiceConfig]:
    out: dict[str, LLMInferenceServiceConfig] = {}
    for _, doc in docs:
        if doc.get("kind") == "LLMInferenceServiceConfig":
            obj = parse_object(doc)
            assert isinstance(obj, LLMInferenceServiceConfig)
            out[obj.name] = obj
    return out


def _cases() -> list[tuple[str, Path, dict[str, Any], dict[str, LLMInferenceServiceConfig]]]:
    cases = []
    for prefix, folder, pattern in SOURCES:
        docs = _docs(folder, pattern)
        configs = _configs(docs)
        for path, doc in docs:
            if doc.get("kind") != "LLMInferenceService":
                continue
            rel = path.relative_to(folder).with_suffix("")
            name = doc.get("metadata", {}).get("name", "")
            golden = f"{prefix}-{'-'.join(rel.parts)}-{name}.yaml"
            cases.append((golden, path, doc, configs))
    return cases


CASES = _cases()


def _outcome(
    path: Path, doc: dict[str, Any], configs: dict[str, LLMInferenceServiceConfig]
) -> dict[str, Any]:
    source = str(path.relative_to(REPO))
    try:
        obj = parse_object(doc)
        errors = validation_errors(obj)
        if errors:
            raise errors[0]
        assert isinstance(obj, LLMInferenceService)
        plan = plan_llm_inference_service(obj, configs)
    except (WharfValidationError, LLMPlanError) as exc:
        return {"source": source, "error": str(exc)}
    # through JSON: tuples become lists, as YAML writes them
    return {"source": source, "plan": json.loads(json.dumps(dataclasses.asdict(plan)))}


def _text(outcome: dict[str, Any]) -> str:
    return yaml.safe_dump(outcome, sort_keys=False, width=100, allow_unicode=True)


@pytest.mark.parametrize(("golden", "path", "doc", "configs"), CASES, ids=[c[0] for c in CASES])
def test_plan_matches_its_golden_file(
    golden: str, path: Path, doc: dict[str, Any], configs: dict[str, LLMInferenceServiceConfig]
) -> None:
    text = _text(_outcome(path, doc, configs))
    target = GOLDEN / golden
    if UPDATE:
        target.write_text(text)
    assert target.exists(), f"{target} is missing: run with WHARF_UPDATE_GOLDEN=1"
    assert target.read_text() == text, f"{target} differs: review, then WHARF_UPDATE_GOLDEN=1"


def test_every_golden_file_has_a_manifest() -> None:
    expected = {c[0] for c in CASES}
    present = {p.name for p in GOLDEN.glob("*.yaml")}
    assert present == expected, f"stale: {present - expected}, missing: {expected - present}"


def test_the_sources_cover_every_shape() -> None:
    names = {c[0] for c in CASES}
    for wanted in ("examples-llm-pd-qwen-pd.yaml", "examples-llm-multinode-llama-70b.yaml",
                   "examples-llm-multinode-pd-deepseek-wide-ep.yaml",
                   "seeds-004-huggingface-gemma3.yaml"):  # fmt: skip
        assert wanted in names
