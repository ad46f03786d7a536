"""Golden files of the Knative mode: every InferenceService in `examples/` and wharf-api's
fixtures that is canaried (`canaryTrafficPercent`) or asks for Knative (`Serverless`/`Knative`),
rendered in Knative mode twice: as the first rollout (no revision rolled out yet: all traffic to
the latest revision) and after a revision has rolled out (the canary split, with the
`latest`/`prev` tags when tag routing is on). Each Knative Service passes its CRD's schema.

Regenerate after an intended change with `WHARF_UPDATE_GOLDEN=1 uv run pytest
services/controller/tests/test_knative_render_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from wharf_api import load_documents
from wharf_controller.render import Catalog, render_service
from wharf_e2e.crds import crd_schemas

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "knative"
RUNTIMES = REPO / "deploy" / "base" / "runtimes"
KSVC = ("serving.knative.dev/v1", "Service")
UPDATE = os.environ.get("WHARF_UPDATE_GOLDEN") == "1"
MODE = "serving.kserve.io/deploymentMode"
ROLLED_OUT = {"components": {"predictor": {"latestRolledoutRevision": "PREVIOUS-00001"}}}


def _isvcs(path: Path) -> list[dict[str, Any]]:
    return [d for d in load_documents(path) if d.get("kind") == "InferenceService"]


def _knative_or_canary(doc: dict[str, Any]) -> bool:
    mode = ((doc.get("metadata") or {}).get("annotations") or {}).get(MODE)
    spec = doc.get("spec") or {}
    canary = any(
        isinstance(c, dict) and "canaryTrafficPercent" in c
        for c in (spec.get("predictor"), spec.get("transformer"), spec.get("explainer"))
    )
    return canary or mode in ("Serverless", "Knative")


def _manifests() -> list[Path]:
    roots = [REPO / "examples", REPO / "libs" / "wharf-api" / "tests" / "fixtures"]
    return [
        p
        for root in roots
        for p in sorted(root.rglob("*.yaml"))
        if "invalid" not in p.parts and any(_knative_or_canary(d) for d in _isvcs(p))
    ]


def _catalog(path: Path) -> Catalog:
    catalog = Catalog()
    for p in sorted(RUNTIMES.glob("*.yaml")):
        if p.name != "kustomization.yaml":
            for doc in load_documents(p):
                catalog.add(doc)
    for doc in load_documents(path):
        catalog.add(doc)
    return catalog


def _render(path: Path, *, rolled_out: bool, tags: bool = False) -> list[dict[str, Any]]:
    catalog = _catalog(path)
    out: list[dict[str, Any]] = []
    for isvc in catalog.services:
        if tags:
            annotations = dict(isvc.metadata.annotations or {})
            annotations["serving.kserve.io/enable-tag-routing"] = "true"
            isvc = isvc.model_copy(
                update={"metadata": isvc.metadata.model_copy(update={"annotations": annotations})}
            )
        out += render_service(
            isvc, catalog, mode="Knative", status=ROLLED_OUT if rolled_out else None
        )
    return out


def _text(path: Path) -> str:
    try:
        first = _render(path, rolled_out=False)
        later = _render(path, rolled_out=True, tags=True)
    except (ValueError, LookupError) as exc:
        return f"# error: {exc}\n"
    return (
        "# first rollout\n"
        + yaml.safe_dump_all(first, sort_keys=False)
        + "---\n# a revision rolled out (PREVIOUS-00001), tag routing on\n"
        + yaml.safe_dump_all(later, sort_keys=False)
    )


def _name(path: Path) -> str:
    return str(path.relative_to(REPO)).replace("/", "__")


@pytest.mark.parametrize("path", _manifests(), ids=_name)
def test_knative_render_matches_the_golden_file(path: Path) -> None:
    text = _text(path)
    golden = GOLDEN / _name(path)
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with WHARF_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{path} renders differently from {golden}"


def test_the_manifests_include_the_examples_canaries() -> None:
    names = {p.name for p in _manifests()}
    assert {"canary.yaml", "sklearn-iris-canary.yaml", "isvc-triton-canary.yaml"} <= names


def _rendering() -> list[Path]:
    # a manifest no runtime here serves (triton) has an error as its golden file, no objects
    return [p for p in _manifests() if not _text(p).startswith("# error")]


@pytest.mark.setup_tools  # the real CRDs (e2e/cluster/third-party-crds.sh)
@pytest.mark.parametrize("path", _rendering(), ids=_name)
def test_every_knative_service_passes_its_crd_schema(path: Path) -> None:
    schema = crd_schemas()[KSVC]  # the real CRD, e2e/cluster/third-party-crds.sh
    objects = _render(path, rolled_out=True)
    assert objects
    for obj in objects:
        assert (obj["apiVersion"], obj["kind"]) == ("serving.knative.dev/v1", "Service")
        jsonschema.validate(obj, schema)


def test_a_canary_splits_latest_and_the_rolled_out_revision() -> None:
    [ksvc] = _render(REPO / "examples" / "canary.yaml", rolled_out=True, tags=True)
    assert ksvc["metadata"]["name"] == "sklearn-iris-canary-predictor"
    assert ksvc["spec"]["traffic"] == [
        {"latestRevision": True, "percent": 20, "tag": "latest"},
        {"latestRevision": False, "revisionName": "PREVIOUS-00001", "percent": 80, "tag": "prev"},
    ]
    [first] = _render(REPO / "examples" / "canary.yaml", rolled_out=False)
    assert first["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    template = first["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    pod = template["spec"]
    assert pod["initContainers"][0]["name"] == "storage-initializer"
    assert len(pod["containers"][0]["ports"]) == 1  # Knative serves one port
