"""Golden files of what the controller renders for every InferenceService manifest in
`examples/` and in `fixtures/`; every object of a built-in kind passes `kubernetes-validate`
(strict) for the pinned Kubernetes minor, and every custom object passes its CRD's schema.

Regenerate after an intended change with `WHARF_UPDATE_GOLDEN=1 uv run pytest
services/controller/tests/test_render_golden.py` and review the diff.
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
from wharf_controller.render import render_documents
from wharf_e2e.crds import crd_schemas

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
RUNTIMES = REPO / "deploy" / "base" / "runtimes"
UPDATE = os.environ.get("WHARF_UPDATE_GOLDEN") == "1"
BUILT_IN = ("v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1")


def _manifests() -> list[Path]:
    examples = [
        p
        for p in sorted((REPO / "examples").rglob("*.yaml"))
        if any(d.get("kind") == "InferenceService" for d in load_documents(p))
    ]
    return [*examples, *sorted((HERE / "fixtures").glob("*.yaml"))]


def _runtimes() -> list[dict[str, Any]]:
    return [
        d
        for p in sorted(RUNTIMES.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in load_documents(p)
    ]


def _golden_name(path: Path) -> str:
    return str(path.relative_to(REPO)).replace("/", "__")


def _render(path: Path) -> str:
    """YAML of the children, or the error message when the manifest cannot be rendered."""
    try:
        objects = render_documents([*_runtimes(), *load_documents(path)], mode="Standard")
    except (ValueError, LookupError) as exc:
        return f"# error: {exc}\n"
    return yaml.safe_dump_all(objects, sort_keys=False)


@pytest.mark.parametrize("path", _manifests(), ids=_golden_name)
def test_render_matches_the_golden_file(path: Path) -> None:
    text = _render(path)
    golden = GOLDEN / (_golden_name(path))
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with WHARF_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{path} renders differently from {golden}"


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    # the real third-party CRDs (e2e/cluster/third-party-crds.sh) and cert-manager's stubs
    return crd_schemas()


def _rendering() -> list[Path]:
    # a manifest no runtime here serves (pytorch) has an error as its golden file, no objects
    return [p for p in _manifests() if not _render(p).startswith("# error")]


@pytest.mark.parametrize("path", _rendering(), ids=_golden_name)
def test_every_rendered_object_is_valid_for_its_schema(path: Path) -> None:
    text = _render(path)
    schemas = _crd_schemas()
    for obj in yaml.safe_load_all(text):
        if obj["apiVersion"] in BUILT_IN:
            kubernetes_validate.validate(obj, KUBERNETES_MINOR, strict=True)
        else:
            schema = schemas[(obj["apiVersion"], obj["kind"])]
            jsonschema.validate(obj, schema)


def test_the_fixture_covers_route_keda_pdb_and_pvc() -> None:
    objects = list(yaml.safe_load_all(_render(HERE / "fixtures" / "gateway-keda-pvc.yaml")))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ScaledObject", "queue-scaled-predictor") in kinds
    assert ("HTTPRoute", "queue-scaled") in kinds
    assert ("PodDisruptionBudget", "fixed-gpu-predictor") in kinds
    assert ("HorizontalPodAutoscaler", "fixed-gpu-predictor") not in kinds
    fixed = next(
        o for o in objects if o["kind"] == "Deployment" and "fixed" in o["metadata"]["name"]
    )
    pod = fixed["spec"]["template"]["spec"]
    assert fixed["spec"]["replicas"] == 3
    assert "initContainers" not in pod  # pvc:// is mounted, not downloaded
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models-claim"
    assert pod["containers"][0]["volumeMounts"][-1]["subPath"] == "xgb/v1"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"accelerator": "h100"}
