"""The agent against a real API server, with real downloads (wharf_storage) from a model
store on loopback: the cache converges on the spec, survives a restart, isolates failures,
and keeps to the node group's storage limit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from kubernetes_asyncio import client as k8s
from moto.server import ThreadedMotoServer

from wharf_api import parse_object
from wharf_e2e.cluster import ControlPlane
from wharf_e2e.kube import Kube, KubeError, wait_for
from wharf_e2e.testing import free_port
from wharf_model_agent import status
from wharf_model_agent.agent import Agent
from wharf_model_agent.config import AgentConfig
from wharf_model_agent.kube import LocalModelApi, connect

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "deploy" / "base" / "crds"
LOCAL_MODEL_CRDS = (
    "localmodelnodes",
    "localmodelnodegroups",
    "localmodelcaches",
    "localmodelnamespacecaches",
)
API_VERSION = "serving.kserve.io/v1alpha1"
SLOW_PATH = "/slow/model.bin"


class ModelStore:
    """Model files served over HTTP on loopback; `requests` counts GETs and HEADs per path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        self.closing = threading.Event()
        store = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                store.requests[self.path] += 1
                if self.path == SLOW_PATH:
                    self._trickle()
                else:
                    super().do_GET()

            def _trickle(self) -> None:
                # A model that takes minutes: 1 KiB every 50 ms of a 64 MiB file.
                self.send_response(200)
                self.send_header("Content-Length", str(64 * 2**20))
                self.end_headers()
                try:
                    while not store.closing.is_set():
                        self.wfile.write(b"x" * 1024)
                        self.wfile.flush()
                        time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped the download

            def do_HEAD(self) -> None:
                store.requests[self.path] += 1
                super().do_HEAD()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, path: str, size: int) -> str:
        """A file of `size` bytes at `path`; its URL."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(i % 251 for i in range(size)))
        return f"{self.url}/{path}"

    def total(self) -> int:
        return sum(self.requests.values())


@pytest.fixture
def model_store(tmp_path: Path) -> Iterator[ModelStore]:
    store = ModelStore(tmp_path / "store")
    store.root.mkdir()
    thread = threading.Thread(target=store.server.serve_forever, daemon=True)
    thread.start()
    yield store
    store.closing.set()
    store.server.shutdown()
    store.server.server_close()
    thread.join()


async def _established(kube: Kube, name: str) -> bool:
    crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    conditions = (crd or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture
async def local_model_crds(kube: Kube) -> None:
    for plural in LOCAL_MODEL_CRDS:
        crd = yaml.safe_load((CRDS / f"serving.kserve.io_{plural}.yaml").read_text())
        await kube.apply(crd)
    for plural in LOCAL_MODEL_CRDS:
        name = f"{plural}.serving.kserve.io"
        await wait_for(partial(_established, kube, name), f"CRD {name} Established")


@pytest.fixture
def node_name(kube_namespace: str) -> str:
    """A LocalModelNode name no other test uses (LocalModelNodes are cluster-scoped)."""
    return kube_namespace


@pytest.fixture
async def cluster_objects(kube: Kube) -> AsyncIterator[list[tuple[str, str]]]:
    """(kind, name) of cluster-scoped objects a test made; deleted afterwards."""
    made: list[tuple[str, str]] = []
    yield made
    for kind, name in made:
        with contextlib.suppress(Exception):
            await kube.delete(API_VERSION, kind, name)


class RunningAgent:
    """An agent running in this event loop, as in its pod."""

    def __init__(self, agent: Agent, api_client: k8s.ApiClient) -> None:
        self.agent = agent
        self.api_client = api_client
        self.task = asyncio.create_task(agent.run())

    async def stop(self) -> None:
        """Stop it as SIGTERM does (the task is cancelled), and close its API client."""
        if self.task.done():
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.api_client.close()


AgentFactory = Callable[..., Awaitable[RunningAgent]]


@pytest.fixture
async def start_agent(
    kube_cluster: ControlPlane, tmp_path: Path, node_name: str
) -> AsyncIterator[AgentFactory]:
    """Start an agent for `node_name` with its cache in `tmp_path/cache`."""
    started: list[RunningAgent] = []

    async def start(env: dict[str, str] | None = None, **overrides: Any) -> RunningAgent:
        config = AgentConfig(
            node_name=node_name, cache_root=tmp_path / "cache", metrics_port=0, **overrides
        )
        api_client = await connect(str(kube_cluster.kubeconfig))
        api = LocalModelApi(api_client, watch_timeout_s=30)
        running = RunningAgent(Agent(config, api, env=env), api_client)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


pytestmark = [
    pytest.mark.kube,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("local_model_crds"),
]


def local_model_node(
    name: str,
    models: dict[str, str],
    group: str | None = None,
    namespaces: dict[str, str] | None = None,
) -> dict[str, Any]:
    entries = []
    for model, uri in models.items():
        entry = {"modelName": model, "sourceModelUri": uri}
        if group is not None:
            entry["nodeGroup"] = group
        if namespaces and model in namespaces:
            entry["namespace"] = namespaces[model]
        entries.append(entry)
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalModelNode",
        "metadata": {"name": name},
        "spec": {"localModels": entries},
    }


async def node_status(kube: Kube, name: str) -> dict[str, Any]:
    node = await kube.get(API_VERSION, "LocalModelNode", name)
    return (node or {}).get("status") or {}


async def wait_status(kube: Kube, name: str, expected: dict[str, str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def probe() -> dict[str, Any]:
        seen["status"] = current = await node_status(kube, name)
        return current if current.get("modelStatus") == expected else {}

    try:
        return await wait_for(probe, f"LocalModelNode {name} status {expected}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last status: {seen.get('status')}") from None


async def test_the_cache_follows_the_spec(
    kube: Kube,
    node_name: str,
    model_store: ModelStore,
    start_agent: AgentFactory,
    cluster_objects: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    models = tmp_path / "cache" / "models"
    iris = model_store.add("iris/model.joblib", 3000)
    bert = model_store.add("bert/weights.bin", 5000)
    await kube.apply(local_model_node(node_name, {"iris": iris}))
    cluster_objects.append(("LocalModelNode", node_name))
    running = await start_agent()

    await wait_status(kube, node_name, {"iris": status.DOWNLOADED})
    assert (models / "iris" / "model.joblib").read_bytes() == (
        model_store.root / "iris" / "model.joblib"
    ).read_bytes()

    await kube.apply(local_model_node(node_name, {"iris": iris, "bert": bert}))
    await wait_status(kube, node_name, {"iris": status.DOWNLOADED, "bert": status.DOWNLOADED})
    assert (models / "bert" / "weights.bin").stat().st_size == 5000

    await kube.apply(local_model_node(node_name, {"bert": bert}))
    await wait_status(kube, node_name, {"bert": status.DOWNLOADED})
    await wait_for(lambda: _gone(models / "iris"), "models/iris deleted", within=10)
    assert sorted(p.name for p in models.iterdir()) == ["bert"]

    # A new source URI for the same model name replaces the folder's content.
    bert_v2 = model_store.add("bert-v2/weights.bin", 7000)
    await kube.apply(local_model_node(node_name, {"bert": bert_v2}))
    await wait_for(
        lambda: _size_is(models / "bert" / "weights.bin", 7000), "bert replaced", within=30
    )
    await wait_status(kube, node_name, {"bert": status.DOWNLOADED})

    metrics = running.agent.metrics
    assert metrics.downloads.labels("success")._value.get() == 3
    assert metrics.cache_bytes._value.get() == 7000


async def _size_is(path: Path, size: int) -> bool:
    def check() -> bool:
        return path.exists() and path.stat().st_size == size

    return await asyncio.to_thread(check)


async def _gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)


async def test_a_restart_does_not_download_again(
    kube: Kube,
    node_name: str,
    model_store: ModelStore,
    start_agent: AgentFactory,
    cluster_objects: list[tuple[str, str]],
) -> None:
    uri = model_store.add("llama/model.safetensors", 20000)
    await kube.apply(local_model_node(node_name, {"llama": uri}))
    cluster_objects.append(("LocalModelNode", node_name))
    first = await start_agent()
    await wait_status(kube, node_name, {"llama": status.DOWNLOADED})
    await first.stop()
    requests_before = model_store.total()
    assert requests_before > 0

    second = await start_agent()
    await wait_for(lambda: _reconciled(second.agent), "the restarted agent to reconcile", within=30)
    assert (await node_status(kube, node_name))["modelStatus"] == {"llama": status.DOWNLOADED}
    assert model_store.total() == requests_before
    assert second.agent.metrics.downloads.labels("success")._value.get() == 0
    assert second.agent.metrics.cache_bytes._value.get() == 20000


async def _reconciled(agent: Any) -> bool:
    return bool(agent.reconciles > 0 and not agent.downloads_in_flight)


async def test_a_failing_uri_fails_alone_with_its_reason(
    kube: Kube,
    node_name: str,
    model_store: ModelStore,
    start_agent: AgentFactory,
    cluster_objects: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    good = model_store.add("good/model.bin", 4000)
    missing = f"{model_store.url}/missing/model.bin"
    await kube.apply(local_model_node(node_name, {"missing": missing, "good": good}))
    cluster_objects.append(("LocalModelNode", node_name))
    running = await start_agent()

    reported = await wait_status(
        kube, node_name, {"missing": status.ERROR, "good": status.DOWNLOADED}
    )
    reason = reported["modelErrors"]["missing"]
    assert "404" in reason or "not found" in reason.lower(), reason
    assert set(reported["modelErrors"]) == {"missing"}
    assert not (tmp_path / "cache" / "models" / "missing").exists()
    metrics = running.agent.metrics
    assert metrics.downloads.labels("failure")._value.get() >= 1
    assert metrics.downloads.labels("success")._value.get() == 1
    events = await k8s.CoreV1Api(kube.api).list_namespaced_event(
        "default", field_selector=f"involvedObject.name={node_name}"
    )
    warnings = [e for e in events.items if e.reason == "ModelDownloadError"]
    assert warnings and warnings[0].type == "Warning"
    assert "missing" in warnings[0].message


async def test_the_node_group_storage_limit_is_kept(
    kube: Kube,
    node_name: str,
    model_store: ModelStore,
    start_agent: AgentFactory,
    cluster_objects: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    group = f"{node_name}-workers"
    await kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "LocalModelNodeGroup",
            "metadata": {"name": group},
            "spec": {
                "storageLimit": "10k",
                "persistentVolumeSpec": {"capacity": {"storage": "10k"}, "local": {"path": "/m"}},
                "persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "10k"}}},
            },
        }
    )
    cluster_objects.append(("LocalModelNodeGroup", group))
    small = model_store.add("small/model.bin", 6000)
    large = model_store.add("large/model.bin", 6000)
    # The second model declares its size on its LocalModelCache: refused before any fetch.
    declared = f"{node_name}-large"
    await kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "LocalModelCache",
            "metadata": {"name": declared},
            "spec": {"sourceModelUri": large, "modelSize": "6k", "nodeGroups": [group]},
        }
    )
    cluster_objects.append(("LocalModelCache", declared))
    await kube.apply(local_model_node(node_name, {"small": small}, group))
    cluster_objects.append(("LocalModelNode", node_name))
    await start_agent()
    await wait_status(kube, node_name, {"small": status.DOWNLOADED})

    await kube.apply(local_model_node(node_name, {"small": small, declared: large}, group))
    reported = await wait_status(
        kube, node_name, {"small": status.DOWNLOADED, declared: status.ERROR}
    )
    assert "storage limit is 10000 bytes" in reported["modelErrors"][declared]
    assert model_store.requests["/large/model.bin"] == 0
    assert not (tmp_path / "cache" / "models" / declared).exists()

    # Removing the first model frees the space: the second one comes in.
    await kube.apply(local_model_node(node_name, {declared: large}, group))
    await wait_status(kube, node_name, {declared: status.DOWNLOADED})


async def test_the_console_script_reports_and_serves_metrics(
    kube: Kube,
    kube_cluster: ControlPlane,
    node_name: str,
    model_store: ModelStore,
    cluster_objects: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    uri = model_store.add("tiny/model.bin", 1234)
    await kube.apply(local_model_node(node_name, {"tiny": uri}))
    cluster_objects.append(("LocalModelNode", node_name))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wharf_model_agent",
        f"--node-name={node_name}",
        f"--cache-root={tmp_path / 'cache'}",
        f"--kubeconfig={kube_cluster.kubeconfig}",
        f"--metrics-port={port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_status(kube, node_name, {"tiny": status.DOWNLOADED})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/readyz")).status_code == 200
            metrics = (await http.get("/metrics")).text
        assert 'wharf_model_agent_downloads_total{result="success"} 1.0' in metrics
        assert "wharf_model_agent_cache_bytes 1234.0" in metrics
        assert 'wharf_model_agent_models{status="ModelDownloaded"} 1.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def test_an_s3_prefix_is_cached_once(
    kube: Kube,
    node_name: str,
    moto_endpoint: str,
    start_agent: AgentFactory,
    cluster_objects: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    bucket = node_name
    s3.create_bucket(Bucket=bucket)
    files = {"config.json": 200, "weights/part-0.bin": 30000, "weights/part-1.bin": 20000}
    for key, size in files.items():
        s3.put_object(Bucket=bucket, Key=f"llm/{key}", Body=bytes(i % 7 for i in range(size)))
    await kube.apply(local_model_node(node_name, {"llm": f"s3://{bucket}/llm/"}))
    cluster_objects.append(("LocalModelNode", node_name))

    first = await start_agent(env=env)
    await wait_status(kube, node_name, {"llm": status.DOWNLOADED})
    folder = tmp_path / "cache" / "models" / "llm"
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == set(files)
    assert first.agent.metrics.fetched_bytes._value.get() == sum(files.values())
    await first.stop()

    second = await start_agent(env=env)
    await wait_for(lambda: _reconciled(second.agent), "the restarted agent to reconcile")
    assert second.agent.metrics.downloads.labels("success")._value.get() == 0
    assert second.agent.metrics.fetched_bytes._value.get() == 0
    assert second.agent.metrics.cache_bytes._value.get() == sum(files.values())


async def test_a_download_removed_from_the_spec_is_stopped_and_cleaned_up(
    kube: Kube,
    node_name: str,
    model_store: ModelStore,
    start_agent: AgentFactory,
    cluster_objects: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    models = tmp_path / "cache" / "models"
    await kube.apply(local_model_node(node_name, {"slow": model_store.url + SLOW_PATH}))
    cluster_objects.append(("LocalModelNode", node_name))
    running = await start_agent()
    await wait_status(kube, node_name, {"slow": status.DOWNLOADING})
    await wait_for(lambda: _exists(models / ".slow.wharf-partial"), "the partial folder", within=30)

    await kube.apply(local_model_node(node_name, {}))
    await wait_status(kube, node_name, {})
    await wait_for(lambda: _empty(models), "models/ emptied", within=30)
    assert running.agent.metrics.downloads.labels("cancelled")._value.get() == 1
    assert not running.agent.downloads_in_flight


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def _empty(folder: Path) -> bool:
    return not await asyncio.to_thread(lambda: any(folder.iterdir()))


async def test_a_namespace_cache_is_served_with_its_own_declared_size(
    kube: Kube,
    kube_namespace: str,
    node_name: str,
    model_store: ModelStore,
    start_agent: AgentFactory,
    cluster_objects: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    group = f"{node_name}-ns-workers"
    await kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "LocalModelNodeGroup",
            "metadata": {"name": group},
            "spec": {
                "storageLimit": 10000,  # a number, as a YAML manifest may write it
                "persistentVolumeSpec": {"capacity": {"storage": "10k"}, "local": {"path": "/m"}},
                "persistentVolumeClaimSpec": {"resources": {"requests": {"storage": "10k"}}},
            },
        }
    )
    cluster_objects.append(("LocalModelNodeGroup", group))
    small = model_store.add("ns-small/model.bin", 3000)
    large = model_store.add("ns-large/model.bin", 3000)
    # Two LocalModelNamespaceCaches in the test's namespace; a cluster-wide LocalModelCache of
    # the same name as the second declares a small size, which must not be the one read.
    for name, uri, size in (("small", small, "3k"), ("large", large, "20k")):
        await kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "LocalModelNamespaceCache",
                "metadata": {"name": name, "namespace": kube_namespace},
                "spec": {"sourceModelUri": uri, "modelSize": size, "nodeGroups": [group]},
            },
            namespace=kube_namespace,
        )
    await kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "LocalModelCache",
            "metadata": {"name": "large"},
            "spec": {"sourceModelUri": large, "modelSize": "1k", "nodeGroup": group},
        }
    )
    cluster_objects.append(("LocalModelCache", "large"))
    namespaces = {"small": kube_namespace, "large": kube_namespace}
    await kube.apply(
        local_model_node(node_name, {"small": small, "large": large}, group, namespaces)
    )
    cluster_objects.append(("LocalModelNode", node_name))
    await start_agent()
    reported = await wait_status(
        kube, node_name, {"small": status.DOWNLOADED, "large": status.ERROR}
    )
    assert "needs 20000 bytes" in reported["modelErrors"]["large"]
    assert model_store.requests["/ns-large/model.bin"] == 0
    assert (tmp_path / "cache" / "models" / "small" / "model.bin").stat().st_size == 3000


async def test_kserve_cache_shapes_pass_the_api_server_and_read_back(
    kube: Kube, kube_namespace: str, node_name: str, cluster_objects: list[tuple[str, str]]
) -> None:
    name = f"{node_name}-singular"
    stored = await kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "LocalModelCache",
            "metadata": {"name": name},
            "spec": {"sourceModelUri": "hf://a/b", "modelSize": 1000000000, "nodeGroup": "gpu"},
        }
    )
    cluster_objects.append(("LocalModelCache", name))
    assert stored["spec"]["nodeGroup"] == "gpu"  # kept by the CRD for the model layer
    spec = parse_object(stored).to_dict()["spec"]
    assert spec["nodeGroups"] == ["gpu"]
    assert spec["modelSize"] == "1G"
    with pytest.raises(KubeError) as refused:
        await kube.create(
            {
                "apiVersion": API_VERSION,
                "kind": "LocalModelNamespaceCache",
                "metadata": {"name": "bad-size", "namespace": kube_namespace},
                "spec": {"sourceModelUri": "hf://a/b", "modelSize": "12 GB", "nodeGroups": ["g"]},
            },
            namespace=kube_namespace,
        )
    assert refused.value.code == 422
    assert "spec.modelSize" in refused.value.message
