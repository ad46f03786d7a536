"""`wharf validate` as a user runs it: one line per object, exit status, field paths."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from wharf_local.cli import main

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def _run(*args: str, stdin: str | None = None) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output.strip().splitlines()


def test_every_example_is_valid() -> None:
    code, lines = _run("validate", "-f", str(EXAMPLES))
    assert code == 0, lines
    ok = [line for line in lines if line.startswith("OK ")]
    assert len(ok) == len(list(EXAMPLES.rglob("*.yaml")))
    assert f"OK InferenceService/sklearn-iris ({EXAMPLES / 'sklearn-iris.yaml'})" in lines
    assert f"OK LLMInferenceService/qwen-small ({EXAMPLES / 'llm-inference-service.yaml'})" in lines
    assert lines[-1] == f"{len(ok)} valid, 0 invalid"


def test_an_invalid_object_fails_with_its_field_path(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: good
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://bucket/model
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: too-few
spec:
  predictor:
    minReplicas: 5
    maxReplicas: 2
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://bucket/model
"""
    )
    code, lines = _run("validate", "-f", str(manifest))
    assert code == 1
    assert lines[0] == f"OK InferenceService/good ({manifest})"
    assert lines[1].startswith(f"INVALID InferenceService/too-few ({manifest})")
    assert "spec.predictor" in lines[1] and "minReplicas" in lines[1]
    assert lines[-1] == "1 valid, 1 invalid"


def test_every_reason_is_listed(tmp_path: Path) -> None:
    manifest = tmp_path / "two-faults.yaml"
    manifest.write_text(
        """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: two-faults
spec:
  predictor:
    minReplicas: 5
    maxReplicas: 2
    canaryTrafficPercent: 150
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://bucket/model
"""
    )
    code, lines = _run("validate", "-f", str(manifest))
    assert code == 1
    assert any("spec.predictor.minReplicas" in line for line in lines)
    assert any("spec.predictor.canaryTrafficPercent" in line for line in lines)
    assert lines[-1] == "0 valid, 1 invalid"


def test_broken_yaml_is_reported_not_raised(tmp_path: Path) -> None:
    manifest = tmp_path / "broken.yaml"
    manifest.write_text("kind: InferenceService\nmetadata: [unclosed\n")
    code, lines = _run("validate", "-f", str(manifest))
    assert code == 1
    assert lines[0].startswith(f"ERROR {manifest}: not valid YAML")


def test_an_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    code, lines = _run("validate", "-f", str(tmp_path))
    assert code == 2
    assert any("no manifests" in line for line in lines)


def test_a_document_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    manifest = tmp_path / "list.yaml"
    manifest.write_text("- just\n- a list\n")
    code, lines = _run("validate", "-f", str(manifest))
    assert code == 1
    assert lines[0].startswith(f"ERROR {manifest}:")
    assert "mapping" in lines[0]


def test_stdin_is_read_with_a_dash() -> None:
    text = (EXAMPLES / "sklearn-iris.yaml").read_text()
    code, lines = _run("validate", "-f", "-", stdin=text)
    assert code == 0, lines
    assert lines[0] == "OK InferenceService/sklearn-iris (<stdin>)"
