"""Golden files of what the model cache renders for the LocalModelCache and
LocalModelNamespaceCache fixtures of wharf-api (KServe's documented manifests) with the
`workers` node group, on two nodes of which one is a worker. Built-in objects pass
`kubernetes-validate` (strict) for the pinned Kubernetes minor; LocalModelNodes pass the CRD.

Regenerate after an intended change with `WHARF_UPDATE_GOLDEN=1 uv run pytest
services/controller/tests/test_model_cache_golden.py` and review the diff.
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
from wharf_controller.desired.model_cache import desired_objects

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "libs" / "wharf-api" / "tests" / "fixtures" / "kserve-docs"
GOLDEN = Path(__file__).parent / "golden" / "model_cache"
CRDS = REPO / "deploy" / "base" / "crds"
UPDATE = os.environ.get("WHARF_UPDATE_GOLDEN") == "1"
NODES = [
    {"metadata": {"name": "gpu-a", "labels": {"nvidia.com/gpu-product": "NVIDIA-A100-SXM4-80GB"}}},
    {"metadata": {"name": "cpu-b", "labels": {"kubernetes.io/os": "linux"}}},
]
CACHES = sorted(p for p in FIXTURES.glob("localmodel*.yaml") if "cache" in p.name)


def _render(path: Path) -> list[dict[str, Any]]:
    groups = load_documents(FIXTURES / "localmodelnodegroup-workers.yaml")
    caches = load_documents(path)
    for c in caches:
        c["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001"
    serving = {c["metadata"]["name"]: ["default", "team-a"] for c in caches}
    return desired_objects(
        caches, groups, NODES, serving, agent_namespace="wharf-system", fs_group=1000
    )


def test_there_are_cache_fixtures() -> None:
    assert len(CACHES) >= 3


@pytest.mark.parametrize("path", CACHES, ids=lambda p: p.name)
def test_render_matches_the_golden_file(path: Path) -> None:
    text = yaml.safe_dump_all(_render(path), sort_keys=False)
    golden = GOLDEN / path.name
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with WHARF_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{path} renders differently from {golden}"


def _schema(kind_plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"serving.kserve.io_{kind_plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", CACHES, ids=lambda p: p.name)
def test_every_object_is_valid_for_its_schema(path: Path) -> None:
    node_schema = _schema("localmodelnodes")
    for obj in _render(path):
        if obj["kind"] == "LocalModelNode":
            jsonschema.validate(obj, node_schema)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_MINOR, strict=True)
