"""Golden files of multi-node predictors (`workerSpec`): every such InferenceService in
`examples/` and wharf-api's fixtures renders a LeaderWorkerSet (leader = the predictor
container, workers = the runtime's workerSpec container) and the predictor's Service; the
LeaderWorkerSet passes its CRD's schema, the rest `kubernetes-validate --strict`.

Regenerate after an intended change with `WHARF_UPDATE_GOLDEN=1 uv run pytest
services/controller/tests/test_multinode_render_golden.py` and review the diff.
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
GOLDEN = Path(__file__).parent / "golden" / "multinode"
RUNTIMES = REPO / "deploy" / "base" / "runtimes"
LWS = ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
UPDATE = os.environ.get("WHARF_UPDATE_GOLDEN") == "1"
BUILT_IN = ("v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1")
MULTINODE_FIXTURE = (
    REPO / "libs" / "wharf-api" / "tests" / "fixtures" / "kserve-docs"
    / "isvc-huggingface-multinode.yaml"
)  # fmt: skip


def _multi_node(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "InferenceService" and "workerSpec" in (
        (doc.get("spec") or {}).get("predictor") or {}
    )


def _manifests() -> list[Path]:
    roots = [REPO / "examples", REPO / "libs" / "wharf-api" / "tests" / "fixtures"]
    return [
        p
        for root in roots
        for p in sorted(root.rglob("*.yaml"))
        if "invalid" not in p.parts and any(_multi_node(d) for d in load_documents(p))
    ]


def _runtimes() -> list[dict[str, Any]]:
    return [
        d
        for p in sorted(RUNTIMES.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in load_documents(p)
    ]


def _render(path: Path) -> list[dict[str, Any]]:
    return render_documents([*_runtimes(), *load_documents(path)], mode="Standard")


def _name(path: Path) -> str:
    return str(path.relative_to(REPO)).replace("/", "__")


@pytest.mark.parametrize("path", _manifests(), ids=_name)
def test_multinode_render_matches_the_golden_file(path: Path) -> None:
    text = yaml.safe_dump_all(_render(path), sort_keys=False)
    golden = GOLDEN / _name(path)
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with WHARF_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{path} renders differently from {golden}"


@pytest.mark.setup_tools  # the real CRDs (e2e/cluster/third-party-crds.sh)
@pytest.mark.parametrize("path", _manifests(), ids=_name)
def test_every_object_passes_its_schema(path: Path) -> None:
    schema = crd_schemas()[LWS]  # the real CRD, e2e/cluster/third-party-crds.sh
    for obj in _render(path):
        if obj["apiVersion"] in BUILT_IN:
            kubernetes_validate.validate(obj, KUBERNETES_MINOR, strict=True)
        else:
            assert obj["kind"] == "LeaderWorkerSet"
            jsonschema.validate(obj, schema)
            group = obj["spec"]["leaderWorkerTemplate"]
            # the pod specs inside are validated as the pods they become
            for part in ("leaderTemplate", "workerTemplate"):
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
                pod["spec"] = group[part]["spec"]
                kubernetes_validate.validate(pod, KUBERNETES_MINOR, strict=True)


def test_the_fixture_is_covered() -> None:
    assert MULTINODE_FIXTURE in _manifests()


def test_a_workerspec_predictor_is_a_leader_worker_set() -> None:
    objects = _render(MULTINODE_FIXTURE)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert ("LeaderWorkerSet", "huggingface-llama3-predictor") in kinds
    assert ("Service", "huggingface-llama3-predictor") in kinds
    assert not any(k in ("Deployment", "HorizontalPodAutoscaler") for k, _ in kinds)
    lws = objects[0]
    group = lws["spec"]["leaderWorkerTemplate"]
    assert group["size"] == 2  # pipelineParallelSize: one pipeline stage per pod
    assert lws["spec"]["replicas"] == 1
    leader = group["leaderTemplate"]["spec"]["containers"][0]
    worker = group["workerTemplate"]["spec"]["containers"][0]
    assert leader["name"] == "kserve-container" and worker["name"] == "worker-container"
    for container in (leader, worker):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PIPELINE_PARALLEL_SIZE"] == "2" and env["TENSOR_PARALLEL_SIZE"] == "1"
        assert env["HEAD_SVC"] == "huggingface-llama3-predictor-0.huggingface-llama3-predictor-0"
        # the model (a PVC here) is mounted on every node
        assert any(m["mountPath"] == "/mnt/models" for m in container["volumeMounts"])
    # the Service selects the leaders only: workers carry another component label
    service = next(o for o in objects if o["kind"] == "Service")
    worker_labels = group["workerTemplate"]["metadata"]["labels"]
    assert not all(worker_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert group["workerTemplate"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_knative_mode_refuses_a_workerspec_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"spec\.predictor\.workerSpec"):
        render_documents([*_runtimes(), *load_documents(MULTINODE_FIXTURE)], mode="Knative")
