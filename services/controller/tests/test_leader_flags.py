"""`wharf-controller run --lease-seconds/--renew-seconds`: the Lease campaign is timed by the
flags (they were parsed and then dropped, so every replica ran with 15 s / 2 s), and timings
that cannot work are refused before anything connects, naming the flags. The last test runs
the real `wharf-controller run` against a real control plane (marked `kube`) and reads the
Lease it writes."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from wharf_controller.__main__ import lease_timing_error, main, parser
from wharf_controller.kube.api import Api
from wharf_controller.kube.leader import LeaderElector
from wharf_controller.manager import LEASE_NAME, leader_elector
from wharf_e2e.cluster import ControlPlane
from wharf_e2e.kube import Kube, wait_for
from wharf_e2e.testing import free_port

sys.path.insert(0, str(Path(__file__).parent))
from standard_mode_cluster import install


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    # A real client that is never asked anything: building the elector sends no request.
    api_client = client.ApiClient(client.Configuration())
    try:
        yield Api(api_client)
    finally:
        await api_client.close()


def _run_args(*flags: str) -> argparse.Namespace:
    return parser().parse_args(["run", "--namespace", "wharf-system", *flags])


def _elector(api: Api, args: argparse.Namespace) -> LeaderElector:
    elector = leader_elector(api, args)
    assert elector is not None
    return elector


async def test_the_flags_time_the_lease_campaign(api: Api) -> None:
    elector = _elector(
        api, _run_args("--lease-seconds", "7", "--renew-seconds", "0.5", "--identity", "ctl-a")
    )
    assert (elector.lease_s, elector.retry_s) == (7, 0.5)
    assert (elector.namespace, elector.name, elector.identity) == (
        "wharf-system",
        LEASE_NAME,
        "ctl-a",
    )
    # what the replica writes into the Lease: the duration other replicas wait out
    spec = elector._spec(None, datetime.now(UTC))
    assert spec["leaseDurationSeconds"] == 7
    assert spec["holderIdentity"] == "ctl-a"


async def test_without_the_flags_the_defaults_hold(api: Api) -> None:
    elector = _elector(api, _run_args())
    assert (elector.lease_s, elector.retry_s) == (15, 2.0)
    assert elector.identity  # host name and pid when --identity is not given


async def test_no_leader_elect_builds_no_elector(api: Api) -> None:
    assert leader_elector(api, _run_args("--no-leader-elect", "--lease-seconds", "7")) is None


@pytest.mark.parametrize(
    ("lease", "renew", "message"),
    [
        (15, 15.0, "--renew-seconds (15) must be less than --lease-seconds (15)"),
        (3, 4.5, "--renew-seconds (4.5) must be less than --lease-seconds (3)"),
        (0, 0.5, "--lease-seconds must be at least 1 (got 0)"),
        (15, 0.0, "--renew-seconds must be more than 0 (got 0.0)"),
        (15, -1.0, "--renew-seconds must be more than 0 (got -1.0)"),
        (15, float("nan"), "--renew-seconds must be more than 0 (got nan)"),
    ],
)
def test_timings_that_cannot_work_are_named(lease: int, renew: float, message: str) -> None:
    problem = lease_timing_error(lease, renew)
    assert problem is not None and message in problem


def test_timings_that_work_pass() -> None:
    assert lease_timing_error(15, 2.0) is None
    assert lease_timing_error(3, 0.5) is None  # what the control-plane tests run
    assert lease_timing_error(1, 0.999) is None


def test_run_refuses_a_renewal_slower_than_the_lease_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The kubeconfig does not exist: reaching it would fail differently, so exit 2 with the
    # message shows the check runs first.
    with pytest.raises(SystemExit) as exited:
        main(["run", "--kubeconfig", "/nonexistent/kubeconfig", "--lease-seconds", "5",
              "--renew-seconds", "5"])  # fmt: skip
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--renew-seconds (5) must be less than --lease-seconds (5)" in err
    assert "usage: wharf-controller" in err


@pytest.mark.kube
@pytest.mark.timeout(180)
async def test_a_running_controller_writes_the_lease_duration_it_was_given(
    kube_cluster: ControlPlane, kube: Kube, kube_namespace: str, tmp_path: Path
) -> None:
    await install(kube, kube_namespace)
    with (tmp_path / "controller.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wharf_controller",
            "run",
            f"--kubeconfig={kube_cluster.kubeconfig}",
            f"--namespace={kube_namespace}",
            f"--metrics-port={free_port()}",
            "--metrics-host=127.0.0.1",
            "--identity=ctl-flags",
            "--lease-seconds=7",
            "--renew-seconds=0.5",
            stdout=log,
            stderr=log,
        )
    try:

        async def held() -> dict[str, Any] | None:
            lease = await kube.get("coordination.k8s.io/v1", "Lease", LEASE_NAME, kube_namespace)
            if lease is None or lease["spec"].get("holderIdentity") != "ctl-flags":
                return None
            return lease

        lease = await wait_for(held, "the controller's Lease", within=90)
        assert lease is not None
        assert lease["spec"]["leaseDurationSeconds"] == 7  # 15, the default, when it was dropped
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, (
            tmp_path / "controller.log"
        ).read_text()
