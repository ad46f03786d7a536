"""`wharf render` runs the controller's renderer (`wharf-controller render`, a separate
command: services never import each other) and passes its output and exit status through."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from wharf_local.cli import main

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
RUNTIMES = REPO / "deploy" / "base" / "runtimes"


def test_render_prints_the_children_of_a_graph_and_its_services() -> None:
    args = ["render", "--runtimes", str(RUNTIMES), "--mode", "Standard"]
    for name in ("inference-graph.yaml", "sklearn-iris.yaml", "xgboost-v2.yaml"):
        args += ["-f", str(EXAMPLES / name)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("Deployment", "model-chainer"),
        ("Service", "model-chainer"),
        ("Deployment", "sklearn-iris-predictor"),
        ("Deployment", "xgboost-v2-iris-predictor"),
    } <= names


def test_render_reads_stdin() -> None:
    text = (EXAMPLES / "sklearn-iris.yaml").read_text()
    args = ["render", "-f", "-", "--runtimes", str(RUNTIMES), "--mode", "Standard"]
    result = CliRunner().invoke(main, args, input=text)
    assert result.exit_code == 0, result.output
    assert "name: sklearn-iris-predictor" in result.stdout


def test_a_manifest_that_cannot_be_rendered_exits_1_naming_the_field() -> None:
    args = ["render", "-f", str(EXAMPLES / "inference-graph.yaml"), "--mode", "Standard"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "spec.nodes.root.steps[0].serviceName: InferenceService sklearn-iris not found" in (
        result.stderr
    )


def test_without_the_controller_installed_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Python with no console scripts beside it and nothing on PATH
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(main, ["render", "-f", str(EXAMPLES / "sklearn-iris.yaml")])
    assert result.exit_code == 1
    assert "wharf render needs the wharf-controller command" in result.stderr
    assert "install the wharf-controller package" in result.stderr


def test_without_runtimes_the_built_in_ones_are_the_clusters() -> None:
    args = ["render", "-f", str(EXAMPLES / "sklearn-iris.yaml"), "--mode", "Standard"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    predictor = next(
        o
        for o in yaml.safe_load_all(result.stdout)
        if (o["kind"], o["metadata"]["name"]) == ("Deployment", "sklearn-iris-predictor")
    )
    container = predictor["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/wharf-serving/model-server:0.1.0"
