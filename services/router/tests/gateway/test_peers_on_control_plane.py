"""`--peer-kube-selector` against a real API server: two `wharf-router gateway` processes find
each other as the pods of one label selector (the flags the controller gives its scheduler
Deployment: docs/router.md, "Replicas") and a placement made through one reaches the other.

kwok's pods do not run anything, so the two "pods" here are pod objects that no scheduler or
kubelet touches (a scheduling gate), their status written by the test: Running, Ready, and a
loopback pod IP each (127.0.0.2, 127.0.0.3), where each gateway's `--peer-listen` is bound,
on the same port number as in a cluster. Without the control plane binaries the test is
skipped with the reason, and fails under CI (WHARF_K8S_REQUIRED=1)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from test_with_enginesim import MODEL, GatewayProcess, endpoints

from wharf_e2e.cluster import ControlPlane
from wharf_e2e.enginesim.fleet import SimFleet, metric
from wharf_e2e.kube import Kube
from wharf_e2e.testing import free_port, until

pytestmark = [pytest.mark.kube, pytest.mark.timeout(240)]

# the scheduler pods' labels, as the controller selects them (desired/llm_router.py)
LABELS = {
    "app.kubernetes.io/component": "llminferenceservice-router-scheduler",
    "app.kubernetes.io/name": "qwen",
    "app.kubernetes.io/part-of": "llminferenceservice",
}


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


SELECTOR = _selector(LABELS)


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            # never scheduled: no kubelet (nor kwok) writes its status but the test
            "schedulingGates": [{"name": "wharf.test/held"}],
            "containers": [{"name": "main", "image": "ghcr.io/wharf-serving/router:0.1.0"}],
        },
    }


def _peers(gateway: GatewayProcess, count: int) -> bool:
    return metric(gateway.metrics(), "wharf_router_peers") == count


def _received(gateway: GatewayProcess) -> dict[str, float]:
    """Messages received by outcome (a counter appears once it was counted)."""
    prefix = 'wharf_router_peer_messages_total{direction="received",outcome="'
    return {
        k.removeprefix(prefix).split('"')[0]: v
        for k, v in gateway.metrics().items()
        if k.startswith(prefix)
    }


async def _run_at(kube: Kube, namespace: str, name: str, ip: str) -> None:
    status = {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    await client.CoreV1Api(kube.api).patch_namespaced_pod_status(name, namespace, status)


async def test_two_gateways_find_each_other_by_label_and_share_a_placement(
    kube: Kube, kube_cluster: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    ips = {"gw-0": "127.0.0.2", "gw-1": "127.0.0.3"}
    for name, ip in ips.items():
        await kube.apply(_pod(name, LABELS), ns)
        await _run_at(kube, ns, name, ip)
    # the router of another service, on the same port number: not a peer (its labels differ)
    other = {**LABELS, "app.kubernetes.io/name": "other"}
    ips["other-0"] = "127.0.0.4"
    await kube.apply(_pod("other-0", other), ns)
    await _run_at(kube, ns, "other-0", ips["other-0"])
    token = tmp_path / "token"
    token.write_text("a-shared-secret-of-some-length\n")
    peer_port = free_port("127.0.0.2")

    def replica(name: str, fleet: SimFleet, selector: str = SELECTOR) -> GatewayProcess:
        kube_flags = ["--kube-namespace", ns, "--kubeconfig", str(kube_cluster.kubeconfig)]
        peer_flags = [
            *("--peer-listen", f"{ips[name]}:{peer_port}"),
            *("--peer-kube-selector", selector),
            *("--peer-token-file", str(token)),
            *("--peer-name", name),
        ]
        return GatewayProcess(
            [*endpoints(fleet), *kube_flags, *peer_flags], tmp_path / f"{name}.log"
        )

    with (
        SimFleet(2, ["--time-scale", "0"]) as fleet,
        replica("gw-0", fleet) as a,
        replica("gw-1", fleet) as b,
        replica("other-0", fleet, _selector(other)) as c,
    ):
        # each hears the other (its own pod's messages are its own, not a peer's)
        for gw in (a, b):
            await until(partial(_peers, gw, 1), f"the peer of {gw.url} found by label", 60)
        assert metric(b.metrics(), "wharf_router_peer_placements_total") == 0
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.post(
                f"{a.url}/v1/completions",
                json={"model": MODEL, "prompt": "placed through gw-0 " * 40, "max_tokens": 2},
            )
        assert r.status_code == 200, r.text
        await until(
            lambda: metric(b.metrics(), "wharf_router_peer_placements_total") >= 1,
            "gw-1 to take gw-0's placement",
            30,
        )
        # the other service's router heard from neither, nor took their placement
        assert metric(c.metrics(), "wharf_router_peers") == 0
        assert metric(c.metrics(), "wharf_router_peer_placements_total") == 0
        # its selector finds only its own pod, which it leaves out by its --peer-name (its host
        # name is not the pod's): it sends to no one, and no one sends to it
        assert _received(c) == {}
        for gw in (a, b):  # nor do the others send to themselves
            assert _received(gw).get("own", 0) == 0, _received(gw)
        # a replica whose pod is deleted is no longer sent to: gw-1 stops hearing from gw-0
        await kube.delete("v1", "Pod", "gw-1", ns)
        await until(partial(_peers, b, 0), "gw-0 to stop sending to the deleted pod", 60)
