"""Behaviour only a real API server shows: CRD acceptance, schema validation, server-side apply,
the status subresource, kwok-run Pods, and owner-reference garbage collection."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from wharf_api import default, parse_object
from wharf_api.conversion import convert
from wharf_e2e.crds import fixture_crd_files, load_crd
from wharf_e2e.kube import Kube, KubeError, wait_for
from wharf_e2e.pytest_plugin import CPU_NODE, GPU_NODE

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]

# kube-scheduler and kwok make a pod Running in a second on an idle machine; a cold CI run
# beside vLLM tests took over 60 s, so the bound is wide: it only turns a hang into a failure.
SCHEDULING_S = 150.0

REPO = Path(__file__).resolve().parents[2]
WHARF_CRDS = REPO / "deploy" / "base" / "crds"
SAMPLES = REPO / "libs" / "wharf-api" / "tests" / "fixtures"


def _crd_files() -> list[Path]:
    # KServe's, then the real third-party CRDs (e2e/cluster/third-party-crds.sh) and the stubs
    return sorted(WHARF_CRDS.glob("serving.kserve.io_*.yaml")) + fixture_crd_files()


def _samples() -> dict[str, dict[str, Any]]:
    """One manifest per kind from the API fixtures (KServe's docs and the seeds)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(SAMPLES.glob("kserve-docs/*.yaml")) + sorted(SAMPLES.glob("seeds/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") not in found:
                found[doc["kind"]] = _stored_version(doc)
    return found


def _stored_version(doc: dict[str, Any]) -> dict[str, Any]:
    """LLM kinds at the version they are stored in: the API server converts the served
    v1alpha1 through the controller's conversion webhook, which this module does not run
    (services/controller/tests/test_webhook_on_control_plane.py does)."""
    if doc.get("kind", "").startswith("LLMInferenceService"):
        return convert(doc, "serving.kserve.io/v1alpha2")
    return doc


async def _established(kube: Kube, name: str) -> bool:
    crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    conditions = (crd or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture
async def crds(kube: Kube) -> list[str]:
    names = []
    for path in _crd_files():
        crd = load_crd(path)
        await kube.apply(crd)
        names.append(crd["metadata"]["name"])
    for name in names:
        await wait_for(lambda n=name: _established(kube, n), f"CRD {name} Established")
    return names


async def test_every_generated_crd_is_accepted_and_established(crds: list[str]) -> None:
    assert "inferenceservices.serving.kserve.io" in crds
    assert "llminferenceservices.serving.kserve.io" in crds
    assert "httproutes.gateway.networking.k8s.io" in crds
    assert len(crds) == len(_crd_files())


async def test_a_sample_of_every_kind_round_trips(
    kube: Kube, crds: list[str], kube_namespace: str
) -> None:
    samples = _samples()
    assert len(samples) >= 11, sorted(samples)
    cluster_scoped: list[dict[str, Any]] = []
    try:
        for kind, sample in samples.items():
            stored = await kube.apply(sample, namespace=kube_namespace)
            if not stored["metadata"].get("namespace"):
                cluster_scoped.append(stored)
            sent = default(parse_object(sample))
            back = default(parse_object(stored))
            # Nothing the models know was pruned or changed by the CRD's schema.
            assert back.model_dump(exclude={"metadata", "status"}) == sent.model_dump(
                exclude={"metadata", "status"}
            ), kind
    finally:
        # the namespace goes with the test; cluster-scoped samples (a ClusterStorageContainer
        # among them) would outlive it and change what the controller's tests render
        for obj in cluster_scoped:
            await _delete_unless_gone(kube, obj)


async def _delete_unless_gone(kube: Kube, obj: dict[str, Any]) -> None:
    """Delete a cluster-scoped object, taking a 404 for done: an error here would replace the
    test's own failure as the one reported."""
    try:
        await kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], None)
    except KubeError as exc:
        if exc.code != 404:
            raise
    except ApiException as exc:
        # a missing object comes back as a failure Status (KubeError above); Kube.get takes
        # the raised form too, and so does this
        if exc.status != 404:
            raise


async def test_the_real_gateway_api_crd_rejects_a_route_its_rules_forbid(
    kube: Kube, crds: list[str], kube_namespace: str
) -> None:
    """The installed HTTPRoute CRD is Gateway API's own (a stub would take any spec): its CEL
    rule wants a port on a Service backend, its schema a weight of at least 0."""
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "no-port"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "svc"}]}]},
    }
    with pytest.raises(KubeError) as caught:
        await kube.create(route, namespace=kube_namespace)
    assert caught.value.code == 422
    assert "port" in caught.value.message
    route["spec"]["rules"][0]["backendRefs"][0].update(port=80, weight=-1)
    with pytest.raises(KubeError) as caught:
        await kube.create(route, namespace=kube_namespace)
    assert caught.value.code == 422
    assert "weight" in caught.value.message
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1
    await kube.create(route, namespace=kube_namespace)


async def test_the_schema_rejects_a_wrong_type_naming_the_field(
    kube: Kube, crds: list[str], kube_namespace: str
) -> None:
    bad = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "bad-replicas"},
        "spec": {
            "predictor": {
                "minReplicas": "many",
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://b/m"},
            }
        },
    }
    with pytest.raises(KubeError) as caught:
        await kube.create(bad, namespace=kube_namespace)
    assert caught.value.code == 422
    assert "spec.predictor.minReplicas" in caught.value.message


async def test_the_schema_rejects_a_value_outside_an_enum(
    kube: Kube, crds: list[str], kube_namespace: str
) -> None:
    bad = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "bad-protocol"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "protocolVersion": "v9",
                    "storageUri": "gs://b/m",
                }
            }
        },
    }
    with pytest.raises(KubeError) as caught:
        await kube.apply(bad, namespace=kube_namespace)
    assert caught.value.code == 422
    assert "spec.predictor.model.protocolVersion" in caught.value.message


async def test_status_is_a_subresource(kube: Kube, crds: list[str], kube_namespace: str) -> None:
    isvc = _samples()["InferenceService"]
    await kube.apply(isvc, namespace=kube_namespace)
    name = isvc["metadata"]["name"]
    resource = await kube.resource("serving.kserve.io/v1beta1", "InferenceService")
    with_status = {**isvc, "status": {"url": "http://should-not-stick"}}
    await kube.apply(with_status, namespace=kube_namespace)
    stored = await kube.get("serving.kserve.io/v1beta1", "InferenceService", name, kube_namespace)
    assert stored is not None and "url" not in stored.get("status", {})
    await kube.dynamic.patch(
        resource.subresources["status"],
        name=name,
        namespace=kube_namespace,
        body={"status": {"url": "http://sklearn.example.com"}},
        content_type="application/merge-patch+json",
    )
    stored = await kube.get("serving.kserve.io/v1beta1", "InferenceService", name, kube_namespace)
    assert stored is not None and stored["status"]["url"] == "http://sklearn.example.com"


async def test_a_deployment_gets_running_pods_on_fake_nodes(
    kube: Kube, kube_namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "model"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "model"}},
            "template": {
                "metadata": {"labels": {"app": "model"}},
                "spec": {"containers": [{"name": "kserve-container", "image": "model:1"}]},
            },
        },
    }
    await kube.apply(deployment, namespace=kube_namespace)

    async def available() -> int:
        got = await kube.get("apps/v1", "Deployment", "model", kube_namespace)
        return int((got or {}).get("status", {}).get("availableReplicas") or 0) >= 2

    try:
        await wait_for(available, "2 available replicas", within=SCHEDULING_S)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; {await _nodes(kube)}") from None
    pods = await kube.resource("v1", "Pod")
    listed = await kube.dynamic.get(pods, namespace=kube_namespace, label_selector="app=model")
    phases = [p["status"]["phase"] for p in listed.to_dict()["items"]]
    assert phases == ["Running", "Running"]


async def test_a_gpu_pod_lands_on_the_gpu_node(kube: Kube, kube_namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "vllm:1",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ]
        },
    }
    await kube.apply(pod, namespace=kube_namespace)

    async def running() -> dict[str, Any] | None:
        got = await kube.get("v1", "Pod", "gpu", kube_namespace)
        return got if got and got.get("status", {}).get("phase") == "Running" else None

    try:
        got = await wait_for(running, "the GPU pod Running", within=SCHEDULING_S)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; {await _where(kube, 'gpu', kube_namespace)}") from None
    assert got["spec"]["nodeName"] == GPU_NODE


async def test_the_fake_nodes_heartbeat_is_renewed(kube: Kube) -> None:
    """kwok renews a Ready fake node's heartbeat (e2e/cluster/kwok-stages.yaml): without it the
    node lifecycle controller marks the nodes Unknown, taints them and marks their pods not
    ready whenever the session outlives its grace period."""

    async def renewed() -> dict[str, Any] | None:
        node = await kube.get("v1", "Node", GPU_NODE, None)
        assert node, f"no node {GPU_NODE}"
        for condition in node.get("status", {}).get("conditions", []):
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                # The ready stage writes lastTransitionTime and lastHeartbeatTime both "now",
                # also when it makes the node Ready again after it went Unknown (no renewal
                # within the grace period). The heartbeat stage writes a new lastHeartbeatTime
                # 20-40 s later and the node's creation as lastTransitionTime. So only a renewal
                # puts 15 s between them, however long the session has run.
                since = _time(condition["lastTransitionTime"])
                if _time(condition["lastHeartbeatTime"]) - since >= timedelta(seconds=15):
                    return dict(condition)
        return None

    try:
        await wait_for(renewed, f"{GPU_NODE}'s heartbeat renewed", within=90.0, interval=1.0)
    except TimeoutError as exc:
        got = await kube.get("v1", "Node", GPU_NODE, None) or {}
        ready = [c for c in got.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        raise TimeoutError(f"{exc}; Ready condition {ready}") from None
    # kwok merges a stage's rendered status into the node's: the renewal must keep what the
    # node had (a render that wrote capacity null would delete it)
    node = await kube.get("v1", "Node", GPU_NODE, None)
    assert node, f"no node {GPU_NODE}"
    status = node["status"]
    assert status["allocatable"]["nvidia.com/gpu"] == "8"
    assert status["capacity"]["pods"] == "110"
    assert status["addresses"] and status["phase"] == "Running"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _where(kube: Kube, pod: str, namespace: str) -> str:
    """What a pod that is not Running waits for, and the state of the fake nodes: a timeout
    that says why (unschedulable and the scheduler's message, a tainted or not-ready node)."""
    got = await kube.get("v1", "Pod", pod, namespace) or {}
    status = got.get("status", {})
    scheduled = [c for c in status.get("conditions", []) if c.get("type") == "PodScheduled"]
    return (
        f"pod {pod}: phase {status.get('phase')!r}, node {got.get('spec', {}).get('nodeName')!r}, "
        f"PodScheduled {scheduled}; {await _nodes(kube)}"
    )


async def _nodes(kube: Kube) -> str:
    """The fake nodes' Ready condition (with its last heartbeat) and taints."""
    nodes = []
    for name in (GPU_NODE, CPU_NODE):
        node = await kube.get("v1", "Node", name, None) or {}
        ready = [
            (c.get("status"), c.get("lastHeartbeatTime"))
            for c in node.get("status", {}).get("conditions", [])
            if c.get("type") == "Ready"
        ]
        nodes.append(f"{name}: Ready {ready}, taints {node.get('spec', {}).get('taints')}")
    return "; ".join(nodes)


async def test_deleting_an_owner_garbage_collects_its_children(
    kube: Kube, crds: list[str], kube_namespace: str
) -> None:
    owner = await kube.apply(_samples()["InferenceService"], namespace=kube_namespace)
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned-by-isvc",
            "ownerReferences": [
                {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceService",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {"k": "v"},
    }
    await kube.apply(child, namespace=kube_namespace)
    assert await kube.get("v1", "ConfigMap", "owned-by-isvc", kube_namespace) is not None
    await kube.delete(
        "serving.kserve.io/v1beta1", "InferenceService", owner["metadata"]["name"], kube_namespace
    )

    async def gone() -> bool:
        return await kube.get("v1", "ConfigMap", "owned-by-isvc", kube_namespace) is None

    await wait_for(gone, "the child ConfigMap to be garbage-collected")
