"""The LLMInferenceService controller against a real API server (etcd, kube-apiserver,
kube-controller-manager with its garbage collector, kwok running the pods): workloads, router,
RBAC, InferencePool and HTTPRoute with owner references; Ready with the URL; prefill/decode as
two workloads; a config change rolled out; everything collected after delete."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from wharf_api import load_documents
from wharf_api.conversion import convert
from wharf_controller.kube.api import Api
from wharf_controller.llm_controller import LLMController
from wharf_e2e.crds import fixture_crd_files, load_crd
from wharf_e2e.kube import Kube, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]
WHARF_CRDS = [
    REPO / "deploy" / "base" / "crds" / "serving.kserve.io_llminferenceservices.yaml",
    REPO / "deploy" / "base" / "crds" / "serving.kserve.io_llminferenceserviceconfigs.yaml",
    REPO / "deploy" / "base" / "crds" / "serving.kserve.io_clusterstoragecontainers.yaml",
]
LLM = "serving.kserve.io/v1alpha2"


def _example(name: str, kind: str) -> dict[str, Any]:
    """An example at the stored version: the CRDs convert v1alpha1 through the controller's
    conversion webhook, which this module does not run (test_webhook_on_control_plane does)."""
    doc = next(d for d in load_documents(REPO / "examples" / name) if d["kind"] == kind)
    return convert(copy.deepcopy(doc), LLM)


@pytest.fixture
async def controller(kube: Kube, kube_namespace: str) -> AsyncIterator[LLMController]:
    # KServe's, then the real third-party CRDs (e2e/cluster/third-party-crds.sh)
    for path in [*WHARF_CRDS, *fixture_crd_files()]:
        crd = load_crd(path)
        await kube.install_crd(crd)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config"},
        "data": {"ingress": json.dumps({"ingressDomain": "models.test"})},
    }
    await kube.apply(configmap, namespace=kube_namespace)
    ctl = LLMController(Api(kube.api), config_namespace=kube_namespace, workers=2, resync_s=3600)
    await ctl.start_caches()
    await ctl.start_workers()
    yield ctl
    await ctl.stop()


async def _true(value: bool) -> bool:
    return value


async def _idle(ctl: LLMController) -> None:
    """Wait until the queue is empty and no worker holds a key."""
    await wait_for(lambda: _true(len(ctl.queue) == 0 and not ctl.queue._processing), "idle")


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


async def test_an_llm_service_gets_workloads_a_router_and_becomes_ready(
    kube: Kube, controller: LLMController, kube_namespace: str
) -> None:
    ns = kube_namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token"},
        "stringData": {"HF_TOKEN": "hf_test_value"},
    }
    await kube.apply(secret, namespace=ns)
    service = _example("llm-pd.yaml", "LLMInferenceService")
    service["metadata"]["annotations"] = {"serving.kserve.io/storageSecretName": "hf-token"}
    created = await kube.apply(service, namespace=ns)
    uid = created["metadata"]["uid"]

    async def child(api_version: str, kind: str, name: str) -> dict[str, Any]:
        return await kube.get(api_version, kind, name, ns) or {}

    # its baseRef does not exist yet: the status names the field, nothing is created
    async def refused() -> dict[str, Any]:
        got = await child(LLM, "LLMInferenceService", "qwen-pd")
        return got if _conditions(got).get("Ready") == "False" else {}

    failed = await wait_for(refused, "Ready=False for the missing baseRef")
    ready_condition = failed["status"]["conditions"][0]
    assert ready_condition["reason"] == "InvalidSpec"
    assert "spec.baseRefs[0].name" in ready_condition["message"]
    assert not await child("apps/v1", "Deployment", "qwen-pd-kserve")
    # the config arrives: the service that names it is reconciled again
    await kube.apply(_example("llm-config-cpu.yaml", "LLMInferenceServiceConfig"), namespace=ns)

    expected = [
        ("apps/v1", "Deployment", "qwen-pd-kserve"),
        ("apps/v1", "Deployment", "qwen-pd-kserve-prefill"),
        ("v1", "Service", "qwen-pd-kserve"),
        ("v1", "Service", "qwen-pd-kserve-prefill"),
        ("v1", "ServiceAccount", "qwen-pd-epp-sa"),
        ("rbac.authorization.k8s.io/v1", "Role", "qwen-pd-epp-role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "qwen-pd-epp-rb"),
        ("v1", "Secret", "qwen-pd-epp-peer-token"),
        ("apps/v1", "Deployment", "qwen-pd-kserve-router-scheduler"),
        ("v1", "Service", "qwen-pd-epp-service"),
        ("inference.networking.k8s.io/v1", "InferencePool", "qwen-pd-inference-pool"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "qwen-pd-kserve-route"),
    ]
    for api_version, kind, name in expected:
        got = await wait_for(partial(child, api_version, kind, name), f"{kind} {name}")
        refs = got["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == uid and refs[0]["controller"] is True, (kind, name)

    decode = await child("apps/v1", "Deployment", "qwen-pd-kserve")
    prefill = await child("apps/v1", "Deployment", "qwen-pd-kserve-prefill")
    assert decode["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"] == "decode"
    assert prefill["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"] == "prefill"
    assert decode["spec"]["replicas"] == 2
    # the download reads the token from the Secret; its value is never copied into the pod
    init = decode["spec"]["template"]["spec"]["initContainers"][0]
    assert {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}},
    } in init["env"]
    assert "hf_test_value" not in json.dumps(decode)
    router = await child("apps/v1", "Deployment", "qwen-pd-kserve-router-scheduler")
    command = router["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--kube-namespace") + 1] == ns

    async def ready() -> dict[str, Any]:
        got = await child(LLM, "LLMInferenceService", "qwen-pd")
        return got if _conditions(got).get("Ready") == "True" else {}

    svc = await wait_for(ready, "the LLMInferenceService Ready", within=90)
    conditions = _conditions(svc)
    for wanted in ("MainWorkloadReady", "PrefillWorkloadReady", "SchedulerWorkloadReady",
                   "RouterReady", "InferencePoolReady", "HTTPRoutesReady"):  # fmt: skip
        assert conditions[wanted] == "True", wanted
    assert svc["status"]["url"] == f"http://qwen-pd-{ns}.models.test/{ns}/qwen-pd"
    assert svc["status"]["address"]["url"] == (
        f"http://qwen-pd-epp-service.{ns}.svc.cluster.local:8080"
    )
    assert svc["status"]["observedGeneration"] == svc["metadata"]["generation"]

    # a no-op resync writes nothing (every child and the status already match)
    await _idle(controller)
    before_writes, before_runs = controller.api.writes_in(ns), controller.reconciled
    controller.resync()
    await wait_for(lambda: _true(controller.reconciled > before_runs), "a resync reconcile")
    await _idle(controller)
    assert controller.api.writes_in(ns) == before_writes

    # a change of a config the service names reaches its pods
    config = _example("llm-config-cpu.yaml", "LLMInferenceServiceConfig")
    config["spec"]["template"]["containers"][0]["env"][0]["value"] = "6"
    await kube.apply(config, namespace=ns)

    async def rolled() -> bool:
        dep = await child("apps/v1", "Deployment", "qwen-pd-kserve")
        env = dep["spec"]["template"]["spec"]["containers"][0].get("env") or []
        return {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "6"} in env

    await wait_for(rolled, "the changed config in the decode pods")

    # without prefill the prefill workload and its Service are pruned
    aggregated = _example("llm-pd.yaml", "LLMInferenceService")
    del aggregated["spec"]["prefill"]
    await kube.apply(aggregated, namespace=ns)

    async def pruned() -> bool:
        return not await child("apps/v1", "Deployment", "qwen-pd-kserve-prefill") and not (
            await child("v1", "Service", "qwen-pd-kserve-prefill")
        )

    await wait_for(pruned, "the prefill workload pruned")
    decode = await child("apps/v1", "Deployment", "qwen-pd-kserve")
    assert decode["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"] == "both"
    expected = [e for e in expected if "prefill" not in e[2]]

    # multi-node: a LeaderWorkerSet (no LeaderWorkerSet controller runs here, so it stays
    # unready, and the status says which object)
    await kube.apply(_example("llm-multinode.yaml", "LLMInferenceService"), namespace=ns)
    lws = await wait_for(
        partial(child, "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "llama-70b-kserve-mn"),
        "the LeaderWorkerSet",
    )
    group = lws["spec"]["leaderWorkerTemplate"]
    assert group["size"] == 2 and lws["metadata"]["ownerReferences"][0]["name"] == "llama-70b"

    async def unready() -> dict[str, Any]:
        got = await child(LLM, "LLMInferenceService", "llama-70b")
        conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
        return conds.get("MainWorkloadReady") or {}

    main_ready = await wait_for(unready, "MainWorkloadReady of the multi-node service")
    assert main_ready["status"] == "False"
    assert "LeaderWorkerSet llama-70b-kserve-mn" in main_ready["message"]

    # deleting the service garbage-collects its children
    await kube.delete(LLM, "LLMInferenceService", "qwen-pd", ns)

    async def collected() -> bool:
        for api_version, kind, name in expected:
            if await child(api_version, kind, name):
                return False
        return True

    await wait_for(collected, "the children garbage-collected", within=90)


async def test_the_routers_peer_token_is_made_once_and_never_rewritten(
    kube: Kube,
    controller: LLMController,
    kube_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ns = kube_namespace
    await kube.apply(_example("llm-config-cpu.yaml", "LLMInferenceServiceConfig"), namespace=ns)
    service = _example("llm-pd.yaml", "LLMInferenceService")
    service["spec"]["router"]["scheduler"] = {"replicas": 2}
    created = await kube.apply(service, namespace=ns)

    async def child(api_version: str, kind: str, name: str) -> dict[str, Any]:
        return await kube.get(api_version, kind, name, ns) or {}

    secret = await wait_for(partial(child, "v1", "Secret", "qwen-pd-epp-peer-token"), "the token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 64 and int(token, 16) >= 0  # 32 random bytes, hex
    assert secret["immutable"] is True
    ref = secret["metadata"]["ownerReferences"][0]
    assert ref["uid"] == created["metadata"]["uid"] and ref["controller"] is True
    router = await wait_for(
        partial(child, "apps/v1", "Deployment", "qwen-pd-kserve-router-scheduler"),
        "the scheduler Deployment",
    )
    spec = router["spec"]["template"]["spec"]
    assert spec["volumes"][0]["secret"]["secretName"] == "qwen-pd-epp-peer-token"
    assert "--peer-kube-selector" in spec["containers"][0]["command"]

    async def ready() -> dict[str, Any]:
        got = await child(LLM, "LLMInferenceService", "qwen-pd")
        return got if _conditions(got).get("Ready") == "True" else {}

    await wait_for(ready, "the LLMInferenceService Ready", within=90)

    # a no-op resync writes nothing: the Secret is read, not written again
    await _idle(controller)
    before_writes, before_runs = controller.api.writes_in(ns), controller.reconciled
    controller.resync()
    await wait_for(lambda: _true(controller.reconciled > before_runs), "a resync reconcile")
    await _idle(controller)
    assert controller.api.writes_in(ns) == before_writes
    # a change of the service (scaled to 3) is applied; the Secret stays as it was
    service["spec"]["router"]["scheduler"]["replicas"] = 3
    await kube.apply(service, namespace=ns)

    async def scaled() -> bool:
        dep = await child("apps/v1", "Deployment", "qwen-pd-kserve-router-scheduler")
        return bool(dep["spec"]["replicas"] == 3)

    await wait_for(scaled, "the router scaled to 3")
    await _idle(controller)
    again = await child("v1", "Secret", "qwen-pd-epp-peer-token")
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    assert again["data"] == secret["data"]

    # deleted by hand: made again (a new token) at the next reconcile
    await kube.delete("v1", "Secret", "qwen-pd-epp-peer-token", ns)
    controller.resync()

    async def remade() -> dict[str, Any]:
        got = await child("v1", "Secret", "qwen-pd-epp-peer-token")
        return got if got.get("metadata", {}).get("uid") != secret["metadata"]["uid"] else {}

    fresh = await wait_for(remade, "the token Secret made again")
    assert fresh["data"] != secret["data"]
    # the token is in no status and no log line
    status = json.dumps((await child(LLM, "LLMInferenceService", "qwen-pd")).get("status"))
    new_token = base64.b64decode(fresh["data"]["token"]).decode()
    for value in (token, new_token):
        assert value not in status and value not in caplog.text
