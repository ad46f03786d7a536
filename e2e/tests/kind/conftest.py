"""Fixtures for the kind suite (marker `kind`): a real kind cluster with Wharf installed and
its images loaded, as .github/workflows/gpu-e2e.yaml sets up on a self-hosted GPU runner.

The cluster is given, never made here: `WHARF_KIND_KUBECONFIG` names its kubeconfig. Without it
the tests skip with that reason; `WHARF_KIND_REQUIRED=1` (set by the workflow) turns the skip
into a failure, so the GPU job cannot pass without its cluster. Hosted CI has no kind cluster
and does not set it.

Tests that need GPUs ask `require_gpus(n)`: a cluster with fewer allocatable `nvidia.com/gpu`
skips them with the count, unless the cluster is required and the runner has the GPUs
(`WHARF_KIND_RUNNER_GPUS`, which the workflow sets from nvidia-smi): then the cluster lost them
and the test fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from wharf_e2e.kind import allocatable_gpus, gpu_shortfall
from wharf_e2e.kube import Kube

KUBECONFIG_ENV = "WHARF_KIND_KUBECONFIG"
REQUIRED_ENV = "WHARF_KIND_REQUIRED"
RUNNER_GPUS_ENV = "WHARF_KIND_RUNNER_GPUS"


@pytest.fixture(scope="session")
def kind_kubeconfig() -> Path:
    value = os.environ.get(KUBECONFIG_ENV, "").strip()
    problem = None
    if not value:
        problem = f"{KUBECONFIG_ENV} is not set"
    elif not Path(value).is_file():
        problem = f"{KUBECONFIG_ENV}={value} is not a file"
    if problem is not None:
        reason = (
            f"no kind cluster ({problem}); these tests run in .github/workflows/gpu-e2e.yaml, "
            f"or export {KUBECONFIG_ENV} for a kind cluster with Wharf installed"
        )
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(value)


@pytest.fixture
async def kind(kind_kubeconfig: Path) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kind_kubeconfig) as client:
        yield client


@pytest.fixture
async def kind_namespace(kind: Kube) -> AsyncIterator[str]:
    name = f"wharf-kind-{uuid.uuid4().hex[:8]}"
    await kind.create_namespace(name)
    yield name
    if os.environ.get("WHARF_E2E_KEEP") != "1":
        await kind.delete_namespace(name)


def _runner_gpus() -> int | None:
    value = os.environ.get(RUNNER_GPUS_ENV, "").strip()
    return int(value) if value.isdigit() else None


@pytest.fixture
def require_gpus(kind: Kube) -> Callable[[int], Awaitable[int]]:
    """`await require_gpus(n)`: the cluster's allocatable GPUs, or skip/fail when under `n`."""

    async def require(needed: int) -> int:
        allocatable = await allocatable_gpus(kind)
        required = os.environ.get(REQUIRED_ENV) == "1"
        shortfall = gpu_shortfall(needed, allocatable, _runner_gpus(), required)
        if shortfall is not None:
            reason, fail = shortfall
            if fail:
                pytest.fail(reason)
            pytest.skip(reason)
        return allocatable

    return require
