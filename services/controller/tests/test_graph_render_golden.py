"""Golden files of what the controller renders for every InferenceGraph in `examples/`, in
`fixtures/graphs/` and in wharf-api's fixtures (seeds, KServe's documentation examples), each
rendered with the InferenceServices its `serviceName` steps resolve to: from its own folder,
else from `examples/` (KServe's documentation names them so: `sklearn-iris`, ...); every object
of a built-in kind passes `kubernetes-validate` (strict) for the pinned Kubernetes minor, and
every custom object passes its CRD's schema. A graph whose services exist nowhere has the error
as its golden file: KServe's graph controller creates nothing either (it requeues with "Failed to
find graph service ..." until they exist).

Regenerate after an intended change with `WHARF_UPDATE_GOLDEN=1 uv run pytest
services/controller/tests/test_graph_render_golden.py` and review the diff.
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
from wharf_api.crdgen.k8s_schemas import KUBERNETES_MINOR
from wharf_api.names import GRAPH_LABEL
from wharf_controller.render import RenderError, render_documents
from wharf_e2e.crds import crd_schemas

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
RUNTIMES = REPO / "deploy" / "base" / "runtimes"
UPDATE = os.environ.get("WHARF_UPDATE_GOLDEN") == "1"
MODE = "serving.kserve.io/deploymentMode"
KNATIVE_NAMES = ("Serverless", "Knative")
BUILT_IN = ("v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1")
API_FIXTURES = REPO / "libs" / "wharf-api" / "tests" / "fixtures"


def _graph_manifests() -> list[Path]:
    candidates = [
        *sorted((REPO / "examples").rglob("*.yaml")),
        *sorted(HERE.glob("fixtures/graphs/*.yaml")),
        *sorted((API_FIXTURES / "seeds").glob("*.yaml")),
        *sorted((API_FIXTURES / "kserve-docs").glob("*.yaml")),
    ]
    return [
        p for p in candidates if any(d.get("kind") == "InferenceGraph" for d in load_documents(p))
    ]


def _context(path: Path) -> list[dict[str, Any]]:
    """The ServingRuntimes of the deploy and the InferenceServices the graph's steps name:
    from the graph's folder first, then from its subfolders, then from `examples/`."""
    runtimes = [
        d
        for p in sorted(RUNTIMES.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in load_documents(p)
    ]
    wanted = {
        step["serviceName"]
        for doc in load_documents(path)
        if doc.get("kind") == "InferenceGraph"
        for node in doc["spec"]["nodes"].values()
        for step in node.get("steps") or []
        if "serviceName" in step
    }
    found: dict[str, dict[str, Any]] = {}
    folders = [
        *sorted(path.parent.glob("*.yaml")),
        *sorted(path.parent.glob("*/*.yaml")),
        *sorted((REPO / "examples").rglob("*.yaml")),
    ]
    for p in folders:
        for d in load_documents(p) if p != path else []:
            name = d.get("metadata", {}).get("name")
            if d.get("kind") == "InferenceService" and name in wanted:
                found.setdefault(name, d)
    return [*runtimes, *found.values()]


def _golden_name(path: Path) -> str:
    # a prefix of its own: a file holding InferenceServices too has test_render_golden's name
    return "graph__" + str(path.relative_to(REPO)).replace("/", "__")


def _mode(path: Path) -> str:
    """Standard, unless the file's graph asks for Knative (whatever the config's default)."""
    for doc in load_documents(path):
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        if doc.get("kind") == "InferenceGraph" and annotations.get(MODE) in KNATIVE_NAMES:
            return "Knative"
    return "Standard"


def _render(path: Path) -> list[dict[str, Any]]:
    objects = render_documents([*_context(path), *load_documents(path)], mode=_mode(path))
    return [o for o in objects if GRAPH_LABEL in (o["metadata"].get("labels") or {})]


def _text(path: Path) -> str:
    """YAML of the graph's children, or the error when its services exist nowhere."""
    try:
        return yaml.safe_dump_all(_render(path), sort_keys=False)
    except RenderError as exc:
        return (
            f"# error: {exc}\n# KServe's graph controller creates nothing either: it requeues "
            '("Failed to find graph service ...") until the InferenceServices exist\n'
        )


def test_every_example_graph_is_covered() -> None:
    names = {p.name for p in _graph_manifests()}
    assert {
        "inference-graph.yaml",
        "inference-graph-local.yaml",
        "graph-gateway-splitter.yaml",
        "graph-knative-sequence.yaml",
        "007-inferencegraph-rag-pipeline.yaml",
        "inferencegraph-splitter.yaml",
    } <= names


def test_only_a_graph_whose_services_exist_nowhere_has_an_error() -> None:
    errors = {p.name for p in _graph_manifests() if _text(p).startswith("# error")}
    # the seed's steps name InferenceServices (embedder, retriever, llm) no document defines
    assert errors == {"007-inferencegraph-rag-pipeline.yaml"}
    assert "InferenceService embedder not found" in _text(
        API_FIXTURES / "seeds" / "007-inferencegraph-rag-pipeline.yaml"
    )


@pytest.mark.parametrize("path", _graph_manifests(), ids=_golden_name)
def test_render_matches_the_golden_file(path: Path) -> None:
    text = _text(path)
    golden = GOLDEN / _golden_name(path)
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with WHARF_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{path} renders differently from {golden}"


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    # the real third-party CRDs (e2e/cluster/third-party-crds.sh) and cert-manager's stubs
    return crd_schemas()


def _rendering() -> list[Path]:
    return [p for p in _graph_manifests() if not _text(p).startswith("# error")]


@pytest.mark.setup_tools  # the real CRDs (e2e/cluster/third-party-crds.sh)
@pytest.mark.parametrize("path", _rendering(), ids=_golden_name)
def test_every_rendered_object_is_valid_for_its_schema(path: Path) -> None:
    objects = _render(path)
    assert {o["kind"] for o in objects} >= {"Service"}
    schemas = _crd_schemas()
    for obj in objects:
        if obj["apiVersion"] in BUILT_IN:
            kubernetes_validate.validate(obj, KUBERNETES_MINOR, strict=True)
        else:
            jsonschema.validate(obj, schemas[(obj["apiVersion"], obj["kind"])])
