"""Golden files of what the controller renders, in Standard mode, for every InferenceService
manifest in `examples/`, in `fixtures/` and in wharf-api's fixtures (the seeds' manifests and
KServe's documentation examples; those asking for Serverless have the Knative golden test's);
every object of a built-in kind passes `kubernetes-validate` (strict) for the pinned Kubernetes
minor, and every custom object passes its CRD's schema.

Each renders with the deploy's ClusterServingRuntimes, KServe's runtimes that Wharf's deploy
lacks (`fixtures/kserve-runtimes/`: a KServe cluster has them), and for a seed's manifest the
runtimes its source document applies with it (same name: they replace the deploy's).

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
KSERVE_RUNTIMES = HERE / "fixtures" / "kserve-runtimes"
API_FIXTURES = REPO / "libs" / "wharf-api" / "tests" / "fixtures"
MODE = "serving.kserve.io/deploymentMode"
RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")


def _asks_for_knative(doc: dict[str, Any]) -> bool:
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    return annotations.get(MODE) in ("Serverless", "Knative")


def _manifests() -> list[Path]:
    candidates = [
        *sorted((REPO / "examples").rglob("*.yaml")),
        *sorted((HERE / "fixtures").glob("*.yaml")),
        *sorted((API_FIXTURES / "seeds").glob("*.yaml")),
        *sorted((API_FIXTURES / "kserve-docs").glob("*.yaml")),
    ]
    found = []
    for path in candidates:
        isvcs = [d for d in load_documents(path) if d.get("kind") == "InferenceService"]
        if isvcs and not all(_asks_for_knative(d) for d in isvcs):
            found.append(path)
    return found


def _yaml_docs(folder: Path) -> list[dict[str, Any]]:
    return [
        d
        for p in sorted(folder.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in load_documents(p)
    ]


def _source(path: Path) -> str:
    """A seed manifest's first line names the document it was cut from."""
    first = path.read_text().splitlines()[0]
    return first if first.startswith("# from ") else ""


def _seed_runtimes(path: Path) -> list[dict[str, Any]]:
    """The runtimes the manifest's source document applies with it; a namespaced one without a
    namespace goes where the manifest's InferenceServices are (the document applies them
    together, so that its runtime is found)."""
    source = _source(path)
    if not source:
        return []
    namespace = next(
        (
            (d.get("metadata") or {}).get("namespace")
            for d in load_documents(path)
            if d.get("kind") == "InferenceService"
        ),
        None,
    )
    found = []
    for sibling in sorted(path.parent.glob("*.yaml")):
        if sibling == path or _source(sibling) != source:
            continue
        for doc in load_documents(sibling):
            if doc.get("kind") not in RUNTIME_KINDS:
                continue
            meta = dict(doc.get("metadata") or {})
            if doc["kind"] == "ServingRuntime" and namespace and not meta.get("namespace"):
                meta["namespace"] = namespace
            found.append({**doc, "metadata": meta})
    return found


def _runtimes(path: Path) -> list[dict[str, Any]]:
    own = _seed_runtimes(path)
    replaced = {(d["kind"], d["metadata"]["name"]) for d in own}
    installed = [*_yaml_docs(RUNTIMES), *_yaml_docs(KSERVE_RUNTIMES)]
    return [
        *[d for d in installed if (d["kind"], d["metadata"]["name"]) not in replaced],
        *own,
    ]


def _golden_name(path: Path) -> str:
    return str(path.relative_to(REPO)).replace("/", "__")


def _render(path: Path) -> str:
    """YAML of the children, or the error message when the manifest cannot be rendered."""
    try:
        objects = render_documents([*_runtimes(path), *load_documents(path)], mode="Standard")
    except (ValueError, LookupError) as exc:
        return f"# error: {exc}\n"
    return yaml.safe_dump_all(objects, sort_keys=False)


def test_the_seeds_and_kserve_docs_are_covered() -> None:
    names = {p.name for p in _manifests()}
    seeds = {p.name for p in (API_FIXTURES / "seeds").glob("*-inferenceservice-*.yaml")}
    assert seeds <= names
    assert {
        "isvc-sklearn-shortcut.yaml",
        "isvc-transformer-storage.yaml",
        "isvc-huggingface-multinode.yaml",
        "transformer-predictor.yaml",
    } <= names
    assert "isvc-triton-canary.yaml" not in names  # Serverless: the Knative golden test's


def test_only_what_kserve_cannot_render_either_has_an_error() -> None:
    errors = {p.name: _render(p) for p in _manifests() if _render(p).startswith("# error")}
    # seed 010's runtime, applied with them, uses {{.TensorParallelSize}}: KServe's Go template
    # over the InferenceService's metadata fails on it too
    assert set(errors) == {
        "009-inferenceservice-llama-2-7b.yaml",
        "011-inferenceservice-single-llm.yaml",
        "012-inferenceservice-ab-test-llm.yaml",
        "013-inferenceservice-production-llm.yaml",
    }
    for text in errors.values():
        assert "'{{.TensorParallelSize}}'" in text
        assert "cannot render this runtime either" in text


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
    # a manifest KServe cannot render either has an error as its golden file, no objects
    return [p for p in _manifests() if not _render(p).startswith("# error")]


@pytest.mark.setup_tools  # the real CRDs (e2e/cluster/third-party-crds.sh)
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
