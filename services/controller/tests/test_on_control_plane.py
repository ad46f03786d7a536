"""The controller against a real API server (etcd, kube-apiserver, kube-controller-manager with
its garbage collector, kwok running the pods): children with owner references, status Ready with
the URL, no writes on a no-op resync, hand edits put back, a 409 retried, a ConfigMap change
re-reconciled, children garbage-collected, and leader election between two candidates."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_controller.controller import Conflict, Controller
from wharf_controller.kube.api import Api
from wharf_controller.kube.leader import LeaderElector
from wharf_e2e.crds import fixture_crd_files, load_crd
from wharf_e2e.kube import Kube, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
WHARF_CRDS = sorted((REPO / "deploy" / "base" / "crds").glob("serving.kserve.io_*.yaml"))
RUNTIME = REPO / "deploy" / "base" / "runtimes" / "kserve-sklearnserver.yaml"
ISVC = "serving.kserve.io/v1beta1"


@pytest.fixture
async def installed(kube: Kube) -> None:
    # KServe's, then the real third-party CRDs (e2e/cluster/third-party-crds.sh)
    for path in [*WHARF_CRDS, *fixture_crd_files()]:
        crd = load_crd(path)
        await kube.install_crd(crd)
    await kube.apply(yaml.safe_load(RUNTIME.read_text()))


def _configmap(namespace: str, storage_image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": namespace},
        "data": {
            "deploy": json.dumps({"defaultDeploymentMode": "Standard"}),
            "ingress": json.dumps({"enableGatewayApi": True, "ingressDomain": "models.test"}),
            "storageInitializer": json.dumps({"image": storage_image}),
        },
    }


def _isvc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": ISVC,
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "minReplicas": 2,
                "maxReplicas": 4,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://bucket/iris"},
            }
        },
    }


@pytest.fixture
async def controller(kube: Kube, installed: None, kube_namespace: str) -> AsyncIterator[Controller]:
    await kube.apply(_configmap(kube_namespace, "init:1"), namespace=kube_namespace)
    ctl = Controller(Api(kube.api), config_namespace=kube_namespace, workers=2, resync_s=3600)
    await ctl.start_caches()
    await ctl.start_workers()
    yield ctl
    await ctl.stop()


async def _idle(ctl: Controller) -> None:
    """Wait until the queue is empty and no worker holds a key."""
    await wait_for(
        lambda: _async(len(ctl.queue) == 0 and not ctl.queue._processing), "an idle queue"
    )


async def _async(value: bool) -> bool:
    return value


async def test_an_inference_service_becomes_ready_and_stays_converged(
    kube: Kube, controller: Controller, kube_namespace: str
) -> None:
    ns = kube_namespace
    created = await kube.apply(_isvc("iris"), namespace=ns)
    uid = created["metadata"]["uid"]

    async def child(api_version: str, kind: str, name: str) -> dict[str, Any]:
        return await kube.get(api_version, kind, name, ns) or {}

    deployment = await wait_for(
        lambda: child("apps/v1", "Deployment", "iris-predictor"), "Deployment"
    )
    for api_version, kind, name in [
        ("apps/v1", "Deployment", "iris-predictor"),
        ("v1", "Service", "iris-predictor"),
        ("autoscaling/v2", "HorizontalPodAutoscaler", "iris-predictor"),
        ("policy/v1", "PodDisruptionBudget", "iris-predictor"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "iris"),
    ]:
        got = await wait_for(partial(child, api_version, kind, name), f"{kind} {name}")
        refs = got["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == uid and refs[0]["controller"] is True, kind
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == "init:1" and init["args"] == ["gs://bucket/iris", "/mnt/models"]

    async def ready() -> dict[str, Any]:
        got = await child(ISVC, "InferenceService", "iris")
        conds = {c["type"]: c for c in got.get("status", {}).get("conditions") or []}
        return got if conds.get("Ready", {}).get("status") == "True" else {}

    isvc = await wait_for(ready, "the InferenceService Ready", within=120)
    assert isvc["status"]["url"] == f"http://iris-{ns}.models.test"
    assert isvc["status"]["address"]["url"] == f"http://iris-predictor.{ns}.svc.cluster.local"
    assert isvc["status"]["observedGeneration"] == 1
    assert isvc["status"]["clusterServingRuntimeName"] == "kserve-sklearnserver"

    # a no-op resync writes nothing
    await _idle(controller)
    before_writes, before_runs = controller.api.writes_in(ns), controller.reconciled
    controller.resync()
    await wait_for(lambda: _async(controller.reconciled > before_runs), "a resync reconcile")
    await _idle(controller)
    assert controller.api.writes_in(ns) == before_writes

    # a child edited by hand is put back
    edited = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "iris-predictor"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9999, "protocol": "TCP"}]},
    }
    await kube.apply(edited, namespace=ns)

    async def restored() -> bool:
        svc = await child("v1", "Service", "iris-predictor")
        return bool(svc) and [p["targetPort"] for p in svc["spec"]["ports"]] == [8080, 8081]

    await wait_for(restored, "the Service's targetPort put back")

    # a ConfigMap change re-reconciles the services it affects
    await kube.apply(_configmap(ns, "init:2"), namespace=ns)

    async def rolled() -> bool:
        dep = await child("apps/v1", "Deployment", "iris-predictor")
        return (
            bool(dep) and dep["spec"]["template"]["spec"]["initContainers"][0]["image"] == "init:2"
        )

    await wait_for(rolled, "the new storage-initializer image")

    # fewer replicas: the PodDisruptionBudget is pruned
    smaller = _isvc("iris")
    smaller["spec"]["predictor"]["minReplicas"] = 1
    await kube.apply(smaller, namespace=ns)

    async def pruned() -> bool:
        return not await child("policy/v1", "PodDisruptionBudget", "iris-predictor")

    await wait_for(pruned, "the PodDisruptionBudget pruned")

    # deleting the service garbage-collects its children (kube-controller-manager's collector)
    await kube.delete(ISVC, "InferenceService", "iris", ns)

    async def collected() -> bool:
        return not await child("apps/v1", "Deployment", "iris-predictor") and not await child(
            "v1", "Service", "iris-predictor"
        )

    await wait_for(collected, "the children garbage-collected", within=120)


async def test_a_model_no_runtime_serves_is_reported_and_nothing_is_created(
    kube: Kube, controller: Controller, kube_namespace: str
) -> None:
    ns = kube_namespace
    unserved = _isvc("torch")
    unserved["spec"]["predictor"]["model"]["modelFormat"]["name"] = "pytorch"
    await kube.apply(unserved, namespace=ns)

    async def reported() -> dict[str, Any]:
        got = await kube.get(ISVC, "InferenceService", "torch", ns) or {}
        conds = got.get("status", {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Ready"), {})

    ready = await wait_for(reported, "a Ready condition")
    assert ready["status"] == "False" and ready["reason"] == "NoSupportingRuntime"
    assert "pytorch" in ready["message"]
    assert await kube.get("apps/v1", "Deployment", "torch-predictor", ns) is None


async def test_a_conflict_is_retried(
    kube: Kube, controller: Controller, kube_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    ns = kube_namespace
    await kube.apply(_isvc("conflict"), namespace=ns)
    await wait_for(
        lambda: kube.get("apps/v1", "Deployment", "conflict-predictor", ns), "the Deployment"
    )
    await _idle(controller)
    stale = await kube.get(ISVC, "InferenceService", "conflict", ns)
    assert stale is not None
    # someone else writes in between: the stale copy's status write gets a real 409
    await kube.apply(
        {**_isvc("conflict"), "metadata": {"name": "conflict", "labels": {"x": "1"}}}, ns
    )
    stale = {**stale, "status": {}}
    with pytest.raises(Conflict):
        await controller.reconcile_object(stale)
    # through the queue, the retry reads the fresh object and succeeds. The error counter is per
    # kind and the controller is shared (an earlier test's namespace, still terminating, fails
    # its own reconciles meanwhile), so this key's failures are looked for in the worker's log.
    caplog.set_level(logging.WARNING, logger="wharf_controller")
    seen = len(caplog.records)
    controller.queue.add((ns, "conflict"))
    await _idle(controller)
    ours = f"InferenceService {ns}/conflict:"
    assert not [r for r in caplog.records[seen:] if ours in r.getMessage()]
    got = await kube.get(ISVC, "InferenceService", "conflict", ns)
    assert got is not None and got["status"]["observedGeneration"] == got["metadata"]["generation"]


async def test_one_of_two_candidates_leads_and_the_other_takes_over(
    kube: Kube, kube_namespace: str
) -> None:
    api = Api(kube.api)
    first = LeaderElector(api, kube_namespace, "lead", "first", lease_s=2, retry_s=0.2)
    second = LeaderElector(api, kube_namespace, "lead", "second", lease_s=2, retry_s=0.2)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await wait_for(
            lambda: _async(first.leading.is_set() or second.leading.is_set()), "a leader"
        )
        leader, other = (first, second) if first.leading.is_set() else (second, first)
        assert not other.leading.is_set()
        assert await other.try_acquire_or_renew() is False
        lease = await kube.get("coordination.k8s.io/v1", "Lease", "lead", kube_namespace)
        assert lease is not None and lease["spec"]["holderIdentity"] == leader.identity
        await leader.release()
        await wait_for(lambda: _async(other.leading.is_set()), "the other candidate to lead")
        lease = await kube.get("coordination.k8s.io/v1", "Lease", "lead", kube_namespace)
        assert lease is not None and lease["spec"]["holderIdentity"] == other.identity
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _leader_metric(http: Any, port: int) -> float | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("wharf_controller_leader "):
            return float(line.split()[1])
    return None


async def test_two_controller_processes_one_leads_and_the_other_takes_over(
    kube_cluster: Any, installed: None, kube_namespace: str
) -> None:
    import aiohttp

    from wharf_e2e.testing import free_port

    ports = [free_port(), free_port()]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wharf_controller",
            "run",
            f"--kubeconfig={kube_cluster.kubeconfig}",
            f"--namespace={kube_namespace}",
            f"--metrics-port={port}",
            "--metrics-host=127.0.0.1",
            f"--identity=ctl-{i}",
            "--lease-seconds=8",
            "--renew-seconds=1",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for i, port in enumerate(ports)
    ]
    try:
        async with aiohttp.ClientSession() as http:

            async def leaders() -> list[int]:
                values = [await _leader_metric(http, p) for p in ports]
                return [i for i, v in enumerate(values) if v == 1.0] if None not in values else []

            leading = await wait_for(leaders, "one leader", within=90)
            assert len(leading) == 1
            leader = leading[0]
            procs[leader].send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(procs[leader].wait(), 30) == 0
            other = ports[1 - leader]

            async def took_over() -> bool:
                return await _leader_metric(http, other) == 1.0

            await wait_for(took_over, "the other process to lead", within=60)
        lease = await _lease(kube_cluster, kube_namespace)
        assert lease["spec"]["holderIdentity"] == f"ctl-{1 - leader}"
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)


async def _lease(kube_cluster: Any, namespace: str) -> dict[str, Any]:
    async with Kube.from_kubeconfig(kube_cluster.kubeconfig) as kube:
        lease = await kube.get(
            "coordination.k8s.io/v1", "Lease", "wharf-controller-leader", namespace
        )
    assert lease is not None
    return lease
