"""A new storageUri rolls out, in Standard mode, against a real API server: the Deployment's
template takes the new URI, kube-controller-manager's Deployment controller makes a new
ReplicaSet for it and retires the old one, kwok runs the new pod, and the InferenceService is
Ready again on the new generation only once no pod of the old template is left."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wharf_controller.controller import Controller
from wharf_controller.kube.api import Api
from wharf_e2e.kube import Kube, wait_for

sys.path.insert(0, str(Path(__file__).parent))
from standard_mode_cluster import (
    ISVC,
    POD,
    REPLICA_SET,
    install,
    is_ready,
    isvc,
    items,
    owned_by,
    storage_uri,
)

pytestmark = [pytest.mark.kube, pytest.mark.timeout(180)]


@pytest.fixture
async def controller(kube: Kube, kube_namespace: str) -> AsyncIterator[Controller]:
    await install(kube, kube_namespace)
    ctl = Controller(Api(kube.api), config_namespace=kube_namespace, workers=2, resync_s=3600)
    await ctl.start_caches()
    await ctl.start_workers()
    yield ctl
    await ctl.stop()


async def test_a_new_storage_uri_rolls_out_to_a_new_replica_set(
    kube: Kube, controller: Controller, kube_namespace: str
) -> None:
    ns = kube_namespace
    await kube.apply(isvc("iris", "gs://bucket/iris-v1"), namespace=ns)

    async def ready_at(generation: int) -> dict[str, Any]:
        got = await kube.get(ISVC, "InferenceService", "iris", ns) or {}
        at = got.get("metadata", {}).get("generation")
        return got if at == generation and is_ready(got) else {}

    await wait_for(lambda: ready_at(1), "the InferenceService Ready", within=90)
    before = await kube.get("apps/v1", "Deployment", "iris-predictor", ns)
    assert before is not None
    assert storage_uri(before["spec"]["template"]["spec"]) == "gs://bucket/iris-v1"
    uid = before["metadata"]["uid"]
    (first_set,) = [rs for rs in await items(kube, REPLICA_SET, ns) if owned_by(rs, uid)]

    await kube.apply(isvc("iris", "gs://bucket/iris-v2"), namespace=ns)
    isvc_v2 = await wait_for(lambda: ready_at(2), "Ready on the new storageUri", within=90)
    assert isvc_v2["status"]["observedGeneration"] == 2

    # the Deployment was changed in place (same object), its template carries the new URI
    after = await kube.get("apps/v1", "Deployment", "iris-predictor", ns)
    assert after is not None and after["metadata"]["uid"] == uid
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert storage_uri(after["spec"]["template"]["spec"]) == "gs://bucket/iris-v2"

    # a second ReplicaSet for the new template; the first one is scaled to nothing
    sets = {rs["metadata"]["name"]: rs for rs in await items(kube, REPLICA_SET, ns)}
    new_sets = [rs for name, rs in sets.items() if name != first_set["metadata"]["name"]]
    assert len(sets) == 2 and len(new_sets) == 1, sorted(sets)
    (new_set,) = new_sets
    assert owned_by(new_set, uid)
    assert storage_uri(new_set["spec"]["template"]["spec"]) == "gs://bucket/iris-v2"
    assert sets[first_set["metadata"]["name"]]["spec"]["replicas"] == 0
    assert int(new_set["status"].get("availableReplicas") or 0) >= 1

    # what serves is a pod of the new template, downloading the new model
    new_hash = new_set["metadata"]["labels"]["pod-template-hash"]
    serving = [
        pod
        for pod in await items(kube, POD, ns)
        if pod["metadata"].get("deletionTimestamp") is None
        and pod.get("status", {}).get("phase") == "Running"
    ]
    assert serving, "no running pod"
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in serving} == {new_hash}
    assert {storage_uri(p["spec"]) for p in serving} == {"gs://bucket/iris-v2"}
