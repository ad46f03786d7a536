"""A controller killed mid-way converges once a new one starts, against a real API server: the
controller runs as its own process (`wharf-controller run`, leader election on), is killed with
SIGKILL while it is part-way through several InferenceServices (some Deployments made, not every
service Ready), and a second process takes the Lease when it expires and finishes the work:
every service Ready, each with exactly its children, owned once, nothing made twice, nothing
left over and no pod template changed by the restart."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wharf_controller.kube.api import (
    DEPLOYMENT,
    HPA,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    INGRESS,
    PDB,
    SERVICE,
    Kind,
)
from wharf_e2e.cluster import ControlPlane
from wharf_e2e.kube import Kube, wait_for
from wharf_e2e.testing import free_port

sys.path.insert(0, str(Path(__file__).parent))
from standard_mode_cluster import POD, REPLICA_SET, install, is_ready, isvc, items, owned_by

pytestmark = [pytest.mark.kube, pytest.mark.timeout(180)]

NAMES = [f"m{i}" for i in range(6)]
# what each service gets with minReplicas 1 and the Gateway API on (no PodDisruptionBudget)
CHILDREN: dict[Kind, Callable[[str], str]] = {
    DEPLOYMENT: lambda name: f"{name}-predictor",
    SERVICE: lambda name: f"{name}-predictor",
    HPA: lambda name: f"{name}-predictor",
    HTTP_ROUTE: lambda name: name,
}
NOT_WANTED = (PDB, INGRESS)

Start = Callable[[str], Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def start_controller(
    kube_cluster: ControlPlane, kube_namespace: str, tmp_path: Path
) -> AsyncIterator[Start]:
    """Starts `wharf-controller run` processes; stops what is left of them at the end."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(identity: str) -> asyncio.subprocess.Process:
        log = (tmp_path / f"{identity}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wharf_controller",
            "run",
            f"--kubeconfig={kube_cluster.kubeconfig}",
            f"--namespace={kube_namespace}",
            f"--metrics-port={free_port()}",
            "--metrics-host=127.0.0.1",
            f"--identity={identity}",
            # one worker: the services are taken one after another, so a kill lands mid-way
            "--workers=1",
            "--lease-seconds=8",
            "--renew-seconds=1",
            stdout=log,
            stderr=log,
        )
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)


async def _services(kube: Kube, ns: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in await items(kube, INFERENCE_SERVICE, ns)}


async def _where_they_are(kube: Kube, ns: str) -> str:
    """The services' Ready conditions and the Deployments' counts, to say what is stuck."""
    services = {
        name: (
            obj.get("status", {}).get("observedGeneration"),
            [c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == "Ready"],
        )
        for name, obj in (await _services(kube, ns)).items()
    }
    deployments = {
        d["metadata"]["name"]: d.get("status") for d in await items(kube, DEPLOYMENT, ns)
    }
    return f"services: {services}; deployments: {deployments}"


async def test_a_controller_killed_mid_way_converges_after_a_restart(
    kube: Kube, kube_namespace: str, start_controller: Start
) -> None:
    ns = kube_namespace
    await install(kube, ns)
    for name in NAMES:
        await kube.apply(isvc(name, f"gs://bucket/{name}"), namespace=ns)

    first = await start_controller("ctl-first")

    async def some_deployments() -> list[dict[str, Any]]:
        return await items(kube, DEPLOYMENT, ns)

    await wait_for(some_deployments, "the first controller's first Deployment", within=90)
    first.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL

    # it died part-way: the work left is what the second controller must finish
    at_kill = await _services(kube, ns)
    ready_at_kill = sorted(n for n, o in at_kill.items() if is_ready(o))
    assert len(ready_at_kill) < len(NAMES), "the controller finished before it was killed"
    made_at_kill = {d["metadata"]["name"] for d in await items(kube, DEPLOYMENT, ns)}
    assert made_at_kill, "no Deployment before the kill"

    await start_controller("ctl-second")

    async def all_ready() -> dict[str, dict[str, Any]]:
        services = await _services(kube, ns)
        return services if sorted(n for n, o in services.items() if is_ready(o)) == NAMES else {}

    try:
        services = await wait_for(all_ready, "every InferenceService Ready", within=120)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; {await _where_they_are(kube, ns)}") from None
    lease = await kube.get("coordination.k8s.io/v1", "Lease", "wharf-controller-leader", ns)
    assert lease is not None and lease["spec"]["holderIdentity"] == "ctl-second"

    uids = {name: obj["metadata"]["uid"] for name, obj in services.items()}
    for kind, child_name in CHILDREN.items():
        found = {o["metadata"]["name"]: o for o in await items(kube, kind, ns)}
        # exactly the desired children: none missing, none extra
        assert sorted(found) == sorted(child_name(n) for n in NAMES), kind.kind
        for name in NAMES:
            refs = found[child_name(name)]["metadata"]["ownerReferences"]
            assert len(refs) == 1 and refs[0]["uid"] == uids[name], (kind.kind, refs)
            assert refs[0]["controller"] is True
    for kind in NOT_WANTED:
        assert await items(kube, kind, ns) == [], kind.kind

    # the restart changed no pod template: one ReplicaSet per Deployment, one pod each
    deployments = {d["metadata"]["uid"]: d for d in await items(kube, DEPLOYMENT, ns)}
    sets = await items(kube, REPLICA_SET, ns)
    per_deployment = {uid: [rs for rs in sets if owned_by(rs, uid)] for uid in deployments}
    assert all(len(owned) == 1 for owned in per_deployment.values()), {
        deployments[uid]["metadata"]["name"]: len(owned) for uid, owned in per_deployment.items()
    }
    assert len(sets) == len(NAMES)
    pods = [p for p in await items(kube, POD, ns) if p["metadata"].get("deletionTimestamp") is None]
    for rs in sets:
        assert len([p for p in pods if owned_by(p, rs["metadata"]["uid"])]) == 1, rs["metadata"]
    assert len(pods) == len(NAMES)
