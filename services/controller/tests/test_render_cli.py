"""`wharf-controller render` as a user runs it: YAML on stdout, errors naming the object."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wharf_controller.__main__ import main

REPO = Path(__file__).resolve().parents[3]
RUNTIMES = str(REPO / "deploy" / "base" / "runtimes")


def test_render_prints_the_children_as_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["render", "-f", str(REPO / "examples" / "sklearn-iris.yaml"), "--runtimes", RUNTIMES,
         "--mode", "Standard"]
    )  # fmt: skip
    assert code == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Deployment", "sklearn-iris-predictor"),
        ("Service", "sklearn-iris-predictor"),
        ("HorizontalPodAutoscaler", "sklearn-iris-predictor"),
        ("Ingress", "sklearn-iris"),
    ]


def test_render_without_a_mode_uses_the_configured_default_knative(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # KServe's default mode is Knative (Serverless): a Knative Service per component
    code = main(
        ["render", "-f", str(REPO / "examples" / "sklearn-iris.yaml"), "--runtimes", RUNTIMES]
    )
    assert code == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("serving.knative.dev/v1", "Service", "sklearn-iris-predictor")
    ]


def test_render_refuses_another_mode_and_names_the_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = yaml.safe_load((REPO / "examples" / "sklearn-iris.yaml").read_text())
    manifest["metadata"].setdefault("annotations", {})["serving.kserve.io/deploymentMode"] = (
        "ModelMesh"
    )
    path = tmp_path / "modelmesh.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code = main(["render", "-f", str(path), "--runtimes", RUNTIMES])
    assert code == 1
    err = capsys.readouterr().err
    assert "InferenceService sklearn-iris" in err and "ModelMesh" in err
