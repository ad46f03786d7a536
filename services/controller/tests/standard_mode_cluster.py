"""What the Standard-mode control-plane tests share: the CRDs and runtime to install, the
controller's ConfigMap, an InferenceService, and reads of what the API server holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from wharf_controller.kube.api import Api, Kind
from wharf_e2e.crds import fixture_crd_files, load_crd
from wharf_e2e.kube import Kube

REPO = Path(__file__).resolve().parents[3]
# only the kinds the InferenceService controller reads (all of KServe's CRDs take long to install)
KSERVE_CRDS = ("inferenceservices", "servingruntimes", "clusterservingruntimes",
               "clusterstoragecontainers")  # fmt: skip


def crd_files() -> list[Path]:
    """KServe's CRDs the controller reads, then the real third-party CRDs
    (e2e/cluster/third-party-crds.sh; skips, or fails under CI, when they cannot be fetched)."""
    kserve = [
        REPO / "deploy" / "base" / "crds" / f"serving.kserve.io_{k}.yaml" for k in KSERVE_CRDS
    ]
    return [*kserve, *fixture_crd_files()]


RUNTIME = REPO / "deploy" / "base" / "runtimes" / "kserve-sklearnserver.yaml"
ISVC = "serving.kserve.io/v1beta1"
REPLICA_SET = Kind("apps/v1", "ReplicaSet", "replicasets")
POD = Kind("v1", "Pod", "pods")
JSON = dict[str, Any]


async def install(kube: Kube, namespace: str) -> None:
    """The CRDs, the sklearn runtime, and the controller's ConfigMap in `namespace`."""
    for path in crd_files():
        crd = load_crd(path)
        await kube.install_crd(crd)
    await kube.apply(yaml.safe_load(RUNTIME.read_text()))
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": namespace},
        "data": {
            "deploy": json.dumps({"defaultDeploymentMode": "Standard"}),
            "ingress": json.dumps({"enableGatewayApi": True, "ingressDomain": "models.test"}),
            "storageInitializer": json.dumps({"image": "init:1"}),
        },
    }
    await kube.apply(configmap, namespace=namespace)


def isvc(name: str, storage_uri: str) -> JSON:
    return {
        "apiVersion": ISVC,
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 2,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri},
            }
        },
    }


def is_ready(obj: JSON) -> bool:
    """Ready, and the status is about the current spec."""
    status = obj.get("status") or {}
    conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
    current = status.get("observedGeneration") == obj.get("metadata", {}).get("generation")
    return current and conds.get("Ready") == "True"


async def items(kube: Kube, kind: Kind, namespace: str) -> list[JSON]:
    listing = await Api(kube.api).request("GET", kind.path(namespace))
    found: list[JSON] = listing.get("items") or []
    return found


def storage_uri(pod_spec: JSON) -> str:
    """The URI the storage initializer downloads (its first argument)."""
    init = pod_spec["initContainers"][0]
    assert init["name"] == "storage-initializer", init["name"]
    uri: str = init["args"][0]
    return uri


def owned_by(obj: JSON, uid: str) -> list[JSON]:
    return [r for r in obj["metadata"].get("ownerReferences") or [] if r["uid"] == uid]
