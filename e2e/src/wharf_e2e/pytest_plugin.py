"""pytest fixtures for tests that need a real Kubernetes API server (marker `kube`), and for
tests that need real vLLM workers (marker `vllm`, at the end of this file).

One control plane per pytest run (`kube_cluster`), a fresh namespace per test (`kube_namespace`).
The binaries come from `e2e/cluster/k8s-binaries.sh`, which `./scripts/test` (and so `.ci/run`)
runs: before pytest when it is cached, exporting `WHARF_K8S_BIN`; otherwise in the background,
and then the `kube` tests wait for it and take `WHARF_K8S_BIN` from it (wharf_e2e.setup_gate).
Without them, `kube` tests are skipped with the reason, unless `WHARF_K8S_REQUIRED=1` (set by
CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from wharf_e2e import setup_gate
from wharf_e2e.cluster import ControlPlane, missing_binaries
from wharf_e2e.kube import Kube
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_e2e.vllm_servers import VllmWorker, WorkerPool, require_engine

GPU_NODE = "kwok-gpu-node"
CPU_NODE = "kwok-cpu-node"


def _bin_dir() -> Path | None:
    setup_gate.wait_for_setup()
    value = os.environ.get("WHARF_K8S_BIN")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[ControlPlane]:
    bin_dir = _bin_dir()
    problem = None
    if bin_dir is None:
        problem = "WHARF_K8S_BIN is not set"
    elif missing := missing_binaries(bin_dir):
        problem = f"{bin_dir} lacks {', '.join(missing)}"
    if problem is not None:
        reason = (
            f"no Kubernetes control plane binaries ({problem}); "
            "run ./scripts/test, or export WHARF_K8S_BIN=$(e2e/cluster/k8s-binaries.sh | tail -1)"
            + setup_gate.failure_note(setup_gate.K8S_BINARIES)
        )
        if os.environ.get("WHARF_K8S_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    assert bin_dir is not None
    with ControlPlane(bin_dir) as plane:
        plane.add_fake_node(CPU_NODE)
        plane.add_fake_node(GPU_NODE, capacity={"nvidia.com/gpu": "8"})
        yield plane


@pytest.fixture
async def kube(kube_cluster: ControlPlane) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_cluster.kubeconfig) as client:
        yield client


@pytest.fixture
async def kube_namespace(kube: Kube, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    await kube.create_namespace(name)
    yield name
    await kube.delete_namespace(name)


# --- the background tool set-up (wharf_e2e.setup_gate) ---------------------------------------
# While scripts/test still builds the tools, the tests that need them run after all the others
# (see pytest_collection_modifyitems) and wait for it here, outside pytest-timeout's timer
# (tryfirst: the outermost wrapper), since a first build takes much longer than a test may.

_GATE_OWNER = pytest.StashKey[setup_gate.SetupGate]()


def _needs_setup(item: pytest.Item) -> bool:
    markers = {mark.name for mark in item.iter_markers()}
    return setup_gate.needs_setup(markers, getattr(item, "fixturenames", ()))


def _terminal_report(config: pytest.Config) -> setup_gate.Report:
    def report(line: str) -> None:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if terminal is None:
            print(f"wharf: {line}", flush=True)
            return
        if capture is not None:
            # Also from inside a test (a misclassified one waiting in wait_for_setup()).
            with capture.global_and_fixture_disabled():
                terminal.write_line(f"wharf: {line}")
        else:
            terminal.write_line(f"wharf: {line}")

    return report


def pytest_configure(config: pytest.Config) -> None:
    gate = setup_gate.current_gate()
    if gate is not None:
        setup_gate.set_reporter(_terminal_report(config))
        if gate.claim():
            config.stash[_GATE_OWNER] = gate


def pytest_unconfigure(config: pytest.Config) -> None:
    gate = config.stash.get(_GATE_OWNER, None)
    if gate is not None:
        setup_gate.set_reporter(None)
        if gate.stop():
            print(
                f"wharf: stopped the tool set-up, still running at the end (log: {gate.log})",
                file=sys.stderr,
            )
        elif gate.ended_well():
            # A failed or stopped chain's folder stays, for its log.
            gate.remove()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    gate = setup_gate.current_gate()
    if gate is not None and gate.result is None and _needs_setup(item):
        gate.wait(_terminal_report(item.config))
    yield


# --- LLM workers (marker `vllm`): real vLLM, CPU build, from the engine environment ----------
# One worker per role per session, started by the first test that asks and shared; see
# wharf_e2e.vllm_servers. Tests using them set @pytest.mark.timeout(vllm_servers.TEST_TIMEOUT_S).
#
# An idle vLLM CPU engine still spins (about half a core each), so an engine started while the
# pool is up can starve on a 2-core machine. The run is therefore ordered: every other test
# first, then the `vllm` tests that start engines of their own, then the pool's users, one after
# another; the pool stops right after its last user.

_POOL = pytest.StashKey[WorkerPool]()
_LAST_POOL_USER = pytest.StashKey[str]()


def _uses_pool(item: pytest.Item) -> bool:
    return "vllm_pool" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gate = setup_gate.current_gate()
    items[:] = setup_gate.order(
        items,
        needs_setup=_needs_setup,
        engine=lambda item: item.get_closest_marker("vllm") is not None,
        pool_user=_uses_pool,
        gate_pending=gate is not None and gate.pending(),
    )
    pool_users = [item for item in items if _uses_pool(item)]
    if pool_users:
        config.stash[_LAST_POOL_USER] = pool_users[-1].nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    if item.config.stash.get(_LAST_POOL_USER, None) == item.nodeid:
        pool = item.config.stash.get(_POOL, None)
        if pool is not None:
            pool.close()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama-architecture model (wharf_e2e.tinyllm), built once per session."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def vllm_pool(
    tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[WorkerPool]:
    require_engine()
    pool = WorkerPool(tiny_llama, tmp_path_factory.mktemp("vllm-logs"))
    request.config.stash[_POOL] = pool
    yield pool
    pool.close()


@pytest.fixture
def vllm_worker(vllm_pool: WorkerPool) -> VllmWorker:
    """The session's combined worker (role `both`), started again if a test stopped it."""
    return vllm_pool.both()


@pytest.fixture
def vllm_pd_workers(vllm_pool: WorkerPool) -> tuple[VllmWorker, VllmWorker]:
    """The session's prefill and decode workers (NixlConnector), as (prefill, decode)."""
    return vllm_pool.prefill_decode()


@pytest.fixture
def vllm_pd_and_single(vllm_pool: WorkerPool) -> tuple[VllmWorker, VllmWorker, VllmWorker]:
    """(prefill, decode, combined): the P/D pair and the combined worker to compare it with,
    started together when missing."""
    workers = vllm_pool.get("pd", "both")
    prefill, decode = workers["pd"]
    (single,) = workers["both"]
    return prefill, decode, single
