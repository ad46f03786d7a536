"""Knative mode, canary and multi-node predictors against a real API server.

No Knative controller runs on the test control plane (Knative is not installable here), so the
test writes each Knative Service's status itself, as Knative would after making the revision
(`latestCreatedRevisionName`, `latestReadyRevisionName`, `traffic` resolved to revision names,
`url`, the `Ready` condition). Likewise no LeaderWorkerSet controller runs: the test checks the
LeaderWorkerSet the controller creates and writes its status as that controller would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_controller.controller import Controller
from wharf_controller.kube.api import KNATIVE_SERVICE, LEADER_WORKER_SET, Api
from wharf_e2e.crds import fixture_crd_files, load_crd
from wharf_e2e.kube import Kube, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]
# only the kinds this controller reads (the full set of KServe CRDs takes long to install)
KSERVE_CRDS = ("inferenceservices", "servingruntimes", "clusterservingruntimes",
               "clusterstoragecontainers")  # fmt: skip
WHARF_CRDS = [
    REPO / "deploy" / "base" / "crds" / f"serving.kserve.io_{k}.yaml" for k in KSERVE_CRDS
]
RUNTIMES = [
    REPO / "deploy" / "base" / "runtimes" / "kserve-sklearnserver.yaml",
    REPO / "deploy" / "base" / "runtimes" / "kserve-huggingfaceserver-multinode.yaml",
]
ISVC = "serving.kserve.io/v1beta1"
KSVC = "serving.knative.dev/v1"
TAGS = "serving.kserve.io/enable-tag-routing"


@pytest.fixture
async def controller(kube: Kube, kube_namespace: str) -> AsyncIterator[Controller]:
    # KServe's, then the real third-party CRDs (e2e/cluster/third-party-crds.sh)
    for path in [*WHARF_CRDS, *fixture_crd_files()]:
        crd = load_crd(path)
        await kube.install_crd(crd)
    for path in RUNTIMES:
        await kube.apply(yaml.safe_load(path.read_text()))
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": kube_namespace},
        "data": {
            # KServe's shipped default: Knative (Serverless) unless a service says otherwise
            "deploy": json.dumps({"defaultDeploymentMode": "Serverless"}),
            "storageInitializer": json.dumps({"image": "init:1"}),
        },
    }
    await kube.apply(configmap, namespace=kube_namespace)
    ctl = Controller(Api(kube.api), config_namespace=kube_namespace, workers=2, resync_s=3600)
    await ctl.start_caches()
    await ctl.start_workers()
    yield ctl
    await ctl.stop()


def _isvc(storage_uri: str, canary: int | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}
    }
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {
        "apiVersion": ISVC,
        "kind": "InferenceService",
        "metadata": {"name": "iris", "annotations": {TAGS: "true"}},
        "spec": {"predictor": predictor},
    }


async def _knative_writes_status(
    kube: Kube, ns: str, ksvc: dict[str, Any], created: str, ready: str
) -> None:
    """What Knative's controller would write: the revisions and the resolved traffic."""
    traffic = []
    for target in ksvc["spec"]["traffic"]:
        resolved = {k: v for k, v in target.items() if k != "revisionName"}
        resolved["revisionName"] = ready if target["latestRevision"] else target["revisionName"]
        if "tag" in target:
            resolved["url"] = f"http://{target['tag']}-iris-predictor.{ns}.svc.cluster.local"
        traffic.append(resolved)
    status = {
        "observedGeneration": ksvc["metadata"]["generation"],
        "latestCreatedRevisionName": created,
        "latestReadyRevisionName": ready,
        "url": f"http://iris-predictor.{ns}.svc.cluster.local",
        "address": {"url": f"http://iris-predictor.{ns}.svc.cluster.local"},
        "traffic": traffic,
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t in ("ConfigurationsReady", "Ready", "RoutesReady")
        ],
    }
    await Api(kube.api).request(
        "PATCH",
        KNATIVE_SERVICE.path(ns, "iris-predictor") + "/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )


async def test_knative_service_canary_and_promotion(
    kube: Kube, controller: Controller, kube_namespace: str
) -> None:
    ns = kube_namespace
    created = await kube.apply(_isvc("gs://bucket/iris-v1"), namespace=ns)

    async def ksvc_at(generation: int) -> dict[str, Any]:
        got = await kube.get(KSVC, "Service", "iris-predictor", ns) or {}
        return got if got.get("metadata", {}).get("generation", 0) >= generation else {}

    ksvc = await wait_for(partial(ksvc_at, 1), "the Knative Service")
    ref = ksvc["metadata"]["ownerReferences"][0]
    assert ref["uid"] == created["metadata"]["uid"] and ref["controller"] is True
    assert ksvc["spec"]["traffic"] == [{"latestRevision": True, "percent": 100, "tag": "latest"}]
    template = ksvc["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    assert template["spec"]["initContainers"][0]["args"] == ["gs://bucket/iris-v1", "/mnt/models"]
    # Standard mode's children are not made in Knative mode
    assert await kube.get("apps/v1", "Deployment", "iris-predictor", ns) is None

    await _knative_writes_status(kube, ns, ksvc, "iris-predictor-00001", "iris-predictor-00001")

    async def isvc_where(check: Any) -> dict[str, Any]:
        got = await kube.get(ISVC, "InferenceService", "iris", ns) or {}
        return got if check(got.get("status") or {}) else {}

    def ready(status: dict[str, Any]) -> bool:
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return conds.get("Ready") == "True"

    isvc = await wait_for(partial(isvc_where, ready), "the InferenceService Ready")
    status = isvc["status"]
    assert status["url"] == f"http://iris-predictor.{ns}.svc.cluster.local"
    assert status["deploymentMode"] == "Knative"
    predictor = status["components"]["predictor"]
    assert predictor["latestReadyRevision"] == "iris-predictor-00001"
    assert predictor["latestRolledoutRevision"] == "iris-predictor-00001"

    # canary: a new model at 10%; the rolled-out revision keeps the rest, tagged prev
    await kube.apply(_isvc("gs://bucket/iris-v2", canary=10), namespace=ns)
    ksvc = await wait_for(partial(ksvc_at, 2), "the canary's Knative Service")
    # the template Knative makes the new revision from carries the new model
    new_template = ksvc["spec"]["template"]["spec"]
    assert new_template["initContainers"][0]["args"] == ["gs://bucket/iris-v2", "/mnt/models"]
    assert ksvc["spec"]["traffic"] == [
        {"latestRevision": True, "percent": 10, "tag": "latest"},
        {
            "latestRevision": False,
            "revisionName": "iris-predictor-00001",
            "percent": 90,
            "tag": "prev",
        },
    ]
    await _knative_writes_status(kube, ns, ksvc, "iris-predictor-00002", "iris-predictor-00002")

    def split(status: dict[str, Any]) -> bool:
        traffic = (status.get("components") or {}).get("predictor", {}).get("traffic") or []
        return ready(status) and len(traffic) == 2

    isvc = await wait_for(partial(isvc_where, split), "the canary split in status")
    predictor = isvc["status"]["components"]["predictor"]
    assert {(t["revisionName"], t["percent"], t["tag"]) for t in predictor["traffic"]} == {
        ("iris-predictor-00002", 10, "latest"),
        ("iris-predictor-00001", 90, "prev"),
    }
    assert predictor["latestRolledoutRevision"] == "iris-predictor-00001"

    # promotion: the percent removed, the new revision takes everything and is rolled out
    await kube.apply(_isvc("gs://bucket/iris-v2"), namespace=ns)

    async def promoted() -> dict[str, Any]:
        got = await kube.get(KSVC, "Service", "iris-predictor", ns) or {}
        return got if len(got.get("spec", {}).get("traffic") or []) == 1 else {}

    ksvc = await wait_for(promoted, "the promoted Knative Service")
    await _knative_writes_status(kube, ns, ksvc, "iris-predictor-00002", "iris-predictor-00002")

    def rolled_out(status: dict[str, Any]) -> bool:
        predictor = (status.get("components") or {}).get("predictor") or {}
        return predictor.get("latestRolledoutRevision") == "iris-predictor-00002"

    isvc = await wait_for(partial(isvc_where, rolled_out), "the promotion in status")
    assert isvc["status"]["components"]["predictor"]["previousRolledoutRevision"] == (
        "iris-predictor-00001"
    )


async def test_a_workerspec_predictor_gets_a_leader_worker_set(
    kube: Kube, controller: Controller, kube_namespace: str
) -> None:
    ns = kube_namespace
    isvc = {
        "apiVersion": ISVC,
        "kind": "InferenceService",
        "metadata": {
            "name": "llama",
            "annotations": {
                "serving.kserve.io/deploymentMode": "Standard",
                "serving.kserve.io/autoscalerClass": "none",
            },
        },
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "runtime": "kserve-huggingfaceserver-multinode",
                    "storageUri": "pvc://models/llama",
                },
                "workerSpec": {"pipelineParallelSize": 2, "tensorParallelSize": 1},
            }
        },
    }
    created = await kube.apply(isvc, namespace=ns)

    async def lws() -> dict[str, Any]:
        lws_version = LEADER_WORKER_SET.api_version
        return await kube.get(lws_version, "LeaderWorkerSet", "llama-predictor", ns) or {}

    got = await wait_for(lws, "the LeaderWorkerSet")
    assert got["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert got["spec"]["leaderWorkerTemplate"]["size"] == 2
    # the children are applied one after another: the Service may follow the LeaderWorkerSet
    await wait_for(partial(kube.get, "v1", "Service", "llama-predictor", ns), "the Service")
    assert await kube.get("apps/v1", "Deployment", "llama-predictor", ns) is None

    # what the LeaderWorkerSet controller would write once the group is up
    await Api(kube.api).request(
        "PATCH",
        LEADER_WORKER_SET.path(ns, "llama-predictor") + "/status",
        body={"status": {"replicas": 1, "readyReplicas": 1}},
        content_type="application/merge-patch+json",
    )

    async def ready() -> dict[str, Any]:
        got = await kube.get(ISVC, "InferenceService", "llama", ns) or {}
        conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions") or []}
        return got if conds.get("Ready") == "True" else {}

    done = await wait_for(ready, "the multi-node InferenceService Ready")
    assert done["status"]["deploymentMode"] == "Standard"
