"""The model cache controller against a real API server (etcd, kube-apiserver,
kube-controller-manager with its garbage collector, kwok's fake nodes): a LocalModelCache on a
node group that holds the GPU node only -> a LocalModelNode for that node alone, the agent
DaemonSet, and a PV + PVC in the namespace of the InferenceService it covers; the agent's
per-model status becomes the cache's; deleting the cache removes them all."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_controller.controller import Controller
from wharf_controller.kube.api import LOCAL_MODEL_NODE, Api
from wharf_controller.model_cache_controller import ModelCacheController
from wharf_e2e.kube import Kube, wait_for
from wharf_e2e.pytest_plugin import CPU_NODE, GPU_NODE

pytestmark = [pytest.mark.kube, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[3]
CRDS = [
    REPO / "deploy" / "base" / "crds" / f"serving.kserve.io_{plural}.yaml"
    for plural in (
        "inferenceservices",
        "localmodelcaches",
        "localmodelnamespacecaches",
        "localmodelnodegroups",
        "localmodelnodes",
        "servingruntimes",
        "clusterservingruntimes",
        "clusterstoragecontainers",
    )
]
RUNTIME = REPO / "deploy" / "base" / "runtimes" / "kserve-sklearnserver.yaml"
V1A1 = "serving.kserve.io/v1alpha1"


@pytest.fixture
async def controller(kube: Kube, kube_namespace: str) -> AsyncIterator[ModelCacheController]:
    for path in CRDS:
        crd = yaml.safe_load(path.read_text())
        await kube.install_crd(crd)
    await kube.apply(yaml.safe_load(RUNTIME.read_text()))
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": kube_namespace},
        "data": {
            "deploy": json.dumps({"defaultDeploymentMode": "Standard"}),
            "ingress": json.dumps({"ingressDomain": "models.test", "ingressClassName": "nginx"}),
        },
    }
    await kube.apply(config, namespace=kube_namespace)
    api = Api(kube.api)
    services = Controller(api, config_namespace=kube_namespace, workers=1, resync_s=3600)
    ctl = ModelCacheController(api, agent_namespace=kube_namespace, resync_s=3600)
    ctl.serve_for(services)
    await services.start_caches()
    await ctl.start_caches()
    await services.start_workers()
    await ctl.start_workers()
    yield ctl
    await ctl.stop()
    await services.stop()


def _group(name: str) -> dict[str, Any]:
    on_gpu = {"key": "kubernetes.io/hostname", "operator": "In", "values": [GPU_NODE]}
    return {
        "apiVersion": V1A1,
        "kind": "LocalModelNodeGroup",
        "metadata": {"name": name},
        "spec": {
            "storageLimit": "10Gi",
            "persistentVolumeSpec": {
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "10Gi"},
                "local": {"path": "/models"},
                "storageClassName": "local-storage",
                "nodeAffinity": {
                    "required": {"nodeSelectorTerms": [{"matchExpressions": [on_gpu]}]}
                },
            },
            "persistentVolumeClaimSpec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    }


async def test_a_cache_makes_node_lists_agent_and_volumes_and_goes_with_its_cache(
    kube: Kube, kube_namespace: str, controller: ModelCacheController
) -> None:
    suffix = uuid.uuid4().hex[:6]
    group, cache = f"gpus-{suffix}", f"iris-{suffix}"
    uri = f"gs://bucket/{cache}"
    await kube.apply(_group(group))
    await kube.apply(
        {
            "apiVersion": V1A1,
            "kind": "LocalModelCache",
            "metadata": {"name": cache},
            "spec": {"sourceModelUri": uri, "modelSize": "1Gi", "nodeGroups": [group]},
        }
    )
    await kube.apply(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": kube_namespace},
            "spec": {
                "predictor": {
                    "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"{uri}/v1"}
                }
            },
        }
    )

    async def node_lists(node: str) -> list[str]:
        obj = await kube.get(V1A1, "LocalModelNode", node)
        return [m["modelName"] for m in ((obj or {}).get("spec") or {}).get("localModels", [])]

    assert await wait_for(partial(node_lists, GPU_NODE), "the GPU node's LocalModelNode") == [cache]
    assert await node_lists(CPU_NODE) == []  # the group's affinity leaves the CPU node out
    claim = f"{cache}-{group}"
    pvc = await wait_for(
        partial(kube.get, "v1", "PersistentVolumeClaim", claim, kube_namespace), "the serving PVC"
    )
    assert pvc is not None
    assert pvc["spec"]["volumeName"] == f"{claim}-{kube_namespace}"
    assert pvc["metadata"]["ownerReferences"][0]["name"] == cache
    pv = await kube.get("v1", "PersistentVolume", f"{claim}-{kube_namespace}")
    assert pv is not None and pv["spec"]["local"]["path"] == "/models"
    agent = await kube.get("apps/v1", "DaemonSet", f"wharf-model-agent-{group}", kube_namespace)
    assert agent is not None
    pod = agent["spec"]["template"]["spec"]
    assert pod["volumes"][0]["hostPath"]["path"] == "/models"

    # the covered predictor reads the cache: no download, the PVC read-only, the group's nodes
    async def predictor_pod() -> dict[str, Any] | None:
        deployment = await kube.get("apps/v1", "Deployment", "iris-predictor", kube_namespace)
        # the cache's events may reach the controller after the service's: wait for the cache
        template = deployment["spec"]["template"] if deployment else None
        return template if template and "initContainers" not in template["spec"] else None

    template = await wait_for(predictor_pod, "the predictor without its storage-initializer")
    assert template is not None
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["kserve-provision-location"]["persistentVolumeClaim"] == {
        "claimName": claim,
        "readOnly": True,
    }
    mounts = {m["name"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["kserve-provision-location"]["subPath"] == f"models/{cache}/v1"
    affinity = template["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [GPU_NODE]

    # the agent reports the model downloaded on its node: the cache counts one copy
    await Api(kube.api).request(
        "PATCH",
        LOCAL_MODEL_NODE.path(None, GPU_NODE) + "/status",
        body={"status": {"modelStatus": {cache: "ModelDownloaded"}}},
        content_type="application/merge-patch+json",
    )

    async def cache_status() -> dict[str, Any] | None:
        obj = await kube.get(V1A1, "LocalModelCache", cache)
        status = (obj or {}).get("status") or {}
        return status if (status.get("copies") or {}).get("available") == 1 else None

    status = await wait_for(cache_status, "the cache's status")
    assert status is not None
    assert status["nodeStatus"] == {GPU_NODE: "NodeDownloaded"}
    assert status["copies"] == {"total": 1, "available": 1, "failed": 0}
    assert status["inferenceServices"] == [{"namespace": kube_namespace, "name": "iris"}]

    await kube.delete(V1A1, "LocalModelCache", cache)

    async def all_gone() -> bool:
        return (
            await node_lists(GPU_NODE) == []
            and await kube.get("v1", "PersistentVolumeClaim", claim, kube_namespace) is None
            and await kube.get("apps/v1", "DaemonSet", f"wharf-model-agent-{group}", kube_namespace)
            is None
        )

    await wait_for(all_gone, "the cache's objects to go")
    await kube.delete(V1A1, "LocalModelNodeGroup", group)
