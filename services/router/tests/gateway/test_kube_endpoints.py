"""Endpoints from Kubernetes pods, against a real API server (kwok "runs" the pods: they turn
Running and Ready with a pod IP). Without the control plane binaries these tests are skipped
with the reason, and fail under CI (WHARF_K8S_REQUIRED=1)."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest

from wharf_e2e.cluster import ControlPlane
from wharf_e2e.kube import Kube
from wharf_e2e.pytest_plugin import CPU_NODE
from wharf_e2e.testing import until
from wharf_router.gateway.endpoints import Endpoint
from wharf_router.gateway.kube_endpoints import KubeEndpoints, KubeSelection, endpoint_of


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": CPU_NODE,
            "containers": [{"name": "engine", "image": "vllm/vllm-openai"}],
        },
    }


@pytest.mark.kube
async def test_ready_pods_by_label_with_their_roles(
    kube: Kube, kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    await kube.apply(pod("pre-0", {"app": "engine", "llm-d.ai/role": "prefill"}), kube_namespace)
    await kube.apply(pod("dec-0", {"app": "engine", "llm-d.ai/role": "decode"}), kube_namespace)
    await kube.apply(pod("both-0", {"app": "engine"}), kube_namespace)
    await kube.apply(pod("other-0", {"app": "something-else"}), kube_namespace)
    lists: list[list[Endpoint]] = []
    source = KubeEndpoints(
        KubeSelection(
            namespace=kube_namespace,
            selector="app=engine",
            port=8123,
            kubeconfig=kube_cluster.kubeconfig,
        )
    )
    task = asyncio.create_task(source.run(lists.append))
    try:
        await until(lambda: lists and len(lists[-1]) == 3, "the three engine pods", timeout_s=60)
        roles = {e.name: e.role for e in lists[-1]}
        assert roles == {"pre-0": "prefill", "dec-0": "decode", "both-0": "both"}
        assert all(e.url.startswith("http://") and e.url.endswith(":8123") for e in lists[-1])
        await kube.delete("v1", "Pod", "dec-0", kube_namespace)
        await until(
            lambda: {e.name for e in lists[-1]} == {"pre-0", "both-0"},
            "the deleted pod to go",
            timeout_s=60,
        )
        await kube.apply(pod("dec-1", {"app": "engine", "llm-d.ai/role": "decode"}), kube_namespace)
        await until(
            lambda: "dec-1" in {e.name for e in lists[-1]}, "a new pod to come", timeout_s=60
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _fake_pod(phase: str, ready: str, ip: str | None, deleting: bool = False) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name="p", labels={"role": "decode"}, deletion_timestamp="now" if deleting else None
        ),
        status=SimpleNamespace(
            phase=phase, pod_ip=ip, conditions=[SimpleNamespace(type="Ready", status=ready)]
        ),
    )


def test_only_running_ready_pods_with_an_ip_are_endpoints() -> None:
    sel = KubeSelection(namespace="ns", selector="a=b", role_label="role", port=9000)
    ep = endpoint_of(_fake_pod("Running", "True", "10.1.2.3"), sel)
    assert ep is not None and (ep.url, ep.role, ep.name) == ("http://10.1.2.3:9000", "decode", "p")
    assert endpoint_of(_fake_pod("Running", "False", "10.1.2.3"), sel) is None
    assert endpoint_of(_fake_pod("Pending", "True", "10.1.2.3"), sel) is None
    assert endpoint_of(_fake_pod("Running", "True", None), sel) is None
    assert endpoint_of(_fake_pod("Running", "True", "10.1.2.3", deleting=True), sel) is None
    v6 = endpoint_of(_fake_pod("Running", "True", "fd00::5"), sel)
    assert v6 is not None and v6.url == "http://[fd00::5]:9000"
