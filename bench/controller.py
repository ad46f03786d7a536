"""The controller at scale: N InferenceServices created at once on a real control plane.

Starts the control plane the tests use (`wharf_e2e.cluster.ControlPlane`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok) with enough kwok fake nodes for one pod per
service, installs the CRDs (`deploy/base/crds`, plus the Gateway API / KEDA / LWS fixtures the
tests install) and the built-in runtimes (`deploy/base/runtimes`), and runs
`wharf-controller run` as its own process against the control plane's kubeconfig. Then:

1. creates N sklearn InferenceServices (Standard mode, `file://` storage: kwok runs no
   container, so nothing is downloaded) at once, 32 POSTs in flight, and watches them: the time
   until all are Ready, and per service the time from its POST to the first watch event that
   shows `Ready=True` (p50, p99);
2. waits until the controller is idle, then waits for its next periodic resync (every
   `--resync-seconds`) to reconcile every service again, and counts the writes the API server
   received meanwhile (`apiserver_request_total`, verbs POST/PUT/PATCH/DELETE) on the kinds the
   controller writes (InferenceService status, Deployments, Services, HPAs, Ingresses, PDBs,
   HTTPRoutes, ScaledObjects; the `status` subresources of the children are the cluster's own
   controllers' and are left out) and by the controller's own count
   (`wharf_controller_api_writes_total`). Target: 0;
3. samples the controller process's RSS (/proc, every 0.5 s; and VmHWM at the end) and its CPU
   seconds (utime + stime) per phase, and reads its reconcile counters from `/metrics`.

The control plane gets two changes, made here without touching the shared harness: the
Service ClusterIP range becomes a /16 (the harness's /24 holds 254 Services), and each fake node
gets its own pod CIDR (kwok's shared /24 holds 254 pod IPs). (The harness itself gives
kube-controller-manager a 10-minute node grace period: on a loaded machine kwok's heartbeats
come late, the pods are marked not ready and kwok never makes them ready again.)

Run: `uv run python bench/controller.py [--count 1000] [--workers 4] [--resync-seconds 60]
[--json out.json]`. Needs the binaries of `e2e/cluster/k8s-binaries.sh` (`WHARF_K8S_BIN`, or
found by running the script).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from wharf_controller.kube.api import DEPLOYMENT, INFERENCE_SERVICE, Api, Kind, connect
from wharf_controller.kube.informer import Informer
from wharf_e2e.cluster import ControlPlane
from wharf_e2e.crds import third_party_crd_dir
from wharf_e2e.testing import free_port

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
NAMESPACE = "bench"
CONFIG_NAMESPACE = "kserve"
PODS_PER_NODE = 100
IN_FLIGHT = 32
POD = Kind("v1", "Pod", "pods")
# the (resource, subresource) pairs the controller writes; anything else is another component's
CONTROLLER_WRITES = {
    ("inferenceservices", "status"),
    ("deployments", ""),
    ("services", ""),
    ("horizontalpodautoscalers", ""),
    ("ingresses", ""),
    ("poddisruptionbudgets", ""),
    ("httproutes", ""),
    ("scaledobjects", ""),
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE"}
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? ([0-9.e+-]+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class BenchControlPlane(ControlPlane):
    """The test control plane with a Service range that holds more than 254 Services, and
    fake nodes that are not declared lost when their heartbeat is late."""

    def _spawn(self, name: str, *args: str) -> None:
        if name == "kube-apiserver":
            args = tuple(
                "--service-cluster-ip-range=10.96.0.0/16"
                if a.startswith("--service-cluster-ip-range=")
                else a
                for a in args
            )
        super()._spawn(name, *args)


# ---- measuring ---------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def scrape(url: str, headers: dict[str, str], ctx: ssl.SSLContext | None) -> str:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
        return str(resp.read().decode())


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1) == metric:
            out.append((dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def apiserver_writes(cp: ControlPlane) -> dict[tuple[str, str, str], float]:
    """Write requests the API server has answered, by (resource, subresource, verb)."""
    ctx = ssl.create_default_context(cafile=str(cp.ca_file))
    text = scrape(cp.server + "/metrics", cp.auth_headers, ctx)
    counts: dict[tuple[str, str, str], float] = {}
    for labels, value in samples(text, "apiserver_request_total"):
        if labels.get("verb") in WRITE_VERBS:
            key = (labels.get("resource", ""), labels.get("subresource", ""), labels["verb"])
            counts[key] = counts.get(key, 0.0) + value
    return counts


def delta(
    after: dict[tuple[str, str, str], float], before: dict[tuple[str, str, str], float]
) -> dict[tuple[str, str, str], float]:
    keys = set(after) | set(before)
    diff = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {k: v for k, v in diff.items() if v}


def controller_metrics(port: int) -> dict[str, float]:
    text = scrape(f"http://127.0.0.1:{port}/metrics", {}, None)
    figures: dict[str, float] = {}
    for labels, value in samples(text, "wharf_controller_reconciles_total"):
        figures[f"reconciles.{labels['kind']}.{labels['result']}"] = value
    for labels, value in samples(text, "wharf_controller_api_writes_total"):
        figures[f"writes.{labels['verb']}"] = value
    for _, value in samples(text, "wharf_controller_queue_depth"):
        figures["queue_depth"] = value
    return figures


def isvc_reconciles(m: dict[str, float]) -> float:
    return m.get("reconciles.InferenceService.success", 0.0) + m.get(
        "reconciles.InferenceService.error", 0.0
    )


def controller_write_total(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("writes."))


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kib, self.last_kib = pid, 0, 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                self.last_kib = status_kib(self.pid, "VmRSS")
            except OSError:
                return
            self.peak_kib = max(self.peak_kib, self.last_kib)
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def start_process(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# ---- the cluster -------------------------------------------------------------------------------
def k8s_bin() -> Path:
    if os.environ.get("WHARF_K8S_BIN"):
        return Path(os.environ["WHARF_K8S_BIN"])
    script = REPO / "e2e" / "cluster" / "k8s-binaries.sh"
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def crd_paths() -> list[Path]:
    # the real third-party CRDs (e2e/cluster/third-party-crds.sh), then cert-manager's stubs
    fixtures = [third_party_crd_dir(), REPO / "e2e" / "cluster" / "crds"]
    return [
        *sorted((REPO / "deploy" / "base" / "crds").glob("serving.kserve.io_*.yaml")),
        *(p for d in fixtures for p in sorted(d.glob("*.yaml")) if "kustomization" not in p.name),
    ]


def runtime_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((REPO / "deploy" / "base" / "runtimes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


async def apply(api: Api, obj: dict[str, Any], path: str) -> None:
    await api.request(
        "PATCH",
        f"{path}/{obj['metadata']['name']}",
        query={"fieldManager": "wharf-bench", "force": "true"},
        body=obj,
        content_type="application/apply-patch+yaml",
    )


async def install(api: Api, cp: ControlPlane, nodes: int) -> None:
    for i in range(nodes):
        name = f"kwok-node-{i}"
        cp.add_fake_node(name, capacity={"cpu": "1000", "memory": "4Ti", "pods": "110"})
        # a pod CIDR per node: kwok then takes pod IPs from it, not from its one shared /24
        cidr = f"10.{100 + i // 256}.{i % 256}.0/24"
        await api.request(
            "PATCH",
            f"/api/v1/nodes/{name}",
            body={"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
            content_type="application/merge-patch+json",
        )
    crd_base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for path in crd_paths():
        for crd in yaml.safe_load_all(path.read_text()):
            if crd:
                await apply(api, crd, crd_base)
    for crd_path in crd_paths():
        for crd in yaml.safe_load_all(crd_path.read_text()):
            if not crd:
                continue
            for _ in range(240):
                got = await api.request("GET", f"{crd_base}/{crd['metadata']['name']}")
                conds = got.get("status", {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    break
                await asyncio.sleep(0.25)
    for doc in runtime_docs():
        await apply(api, doc, "/apis/serving.kserve.io/v1alpha1/clusterservingruntimes")
    for ns in (CONFIG_NAMESPACE, NAMESPACE):
        await api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": CONFIG_NAMESPACE},
        "data": {
            "deploy": json.dumps({"defaultDeploymentMode": "Standard"}),
            "ingress": json.dumps({"ingressDomain": "models.bench"}),
        },
    }
    await apply(api, config, f"/api/v1/namespaces/{CONFIG_NAMESPACE}/configmaps")


def isvc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"predictor": {"sklearn": {"storageUri": f"file:///mnt/models/{name}"}}},
    }


def _ready_condition(obj: dict[str, Any]) -> str | None:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((str(c.get("status")) for c in conds if c.get("type") == "Ready"), None)


def is_ready(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


# ---- the run -----------------------------------------------------------------------------------
async def wait_idle(port: int, settle_s: float, within_s: float) -> dict[str, float]:
    """Controller metrics once its queue is empty and no reconcile ran for `settle_s`."""
    deadline = time.monotonic() + within_s
    last = controller_metrics(port)
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = controller_metrics(port)
        # reconcile counts only: the queue-depth gauge is set when a worker takes a key, so it
        # can stay above 0 while the queue is empty
        if isvc_reconciles(now) != isvc_reconciles(last):
            still_since = time.monotonic()
        elif time.monotonic() - still_since >= settle_s:
            return now
        last = now
    raise TimeoutError(f"the controller was not idle within {within_s:.0f}s")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "count": args.count,
        "workers": args.workers,
        "resync_seconds": args.resync_seconds,
        "nproc": os.cpu_count(),
        "mem_total_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "load_at_start": load_average(),
    }
    nodes = math.ceil(args.count / PODS_PER_NODE)
    result["fake_nodes"] = nodes
    with BenchControlPlane(k8s_bin()) as cp:
        client = await connect(str(cp.kubeconfig))
        api = Api(client)
        try:
            await install(api, cp, nodes)
            await _wait_service_account(api)
            result.update(await _measure(args, cp, api))
        finally:
            await client.close()
    return result


async def _wait_service_account(api: Api) -> None:
    """The namespace's default ServiceAccount, which the controller reads for credentials."""
    for _ in range(240):
        try:
            await api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
            return
        except Exception:
            await asyncio.sleep(0.25)


async def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    for _ in range(600):
        try:
            scrape(f"http://127.0.0.1:{port}/readyz", {}, None)
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the controller exited; see {log_path}") from None
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the controller was not ready in 120 s; see {log_path}")


async def _create_and_wait(args: argparse.Namespace, api: Api, out: dict[str, Any]) -> float:
    """Create the services at once and wait until all are Ready; returns the start time."""
    created: dict[str, float] = {}
    ready: dict[str, float] = {}
    all_ready = asyncio.Event()

    def on_event(_event: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        name = obj["metadata"]["name"]
        if name in created and name not in ready and is_ready(obj):
            ready[name] = time.monotonic()
            if len(ready) == args.count:
                all_ready.set()

    # the Deployments: when the controller created each, and when the cluster made it
    # available (the rest of create -> Ready is the cluster's, not the controller's)
    dep_created: dict[str, float] = {}
    dep_available: dict[str, float] = {}

    def on_deployment(_event: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        name = obj["metadata"]["name"].removesuffix("-predictor")
        dep_created.setdefault(name, time.monotonic())
        if name not in dep_available and (obj.get("status") or {}).get("availableReplicas"):
            dep_available[name] = time.monotonic()

    watcher = Informer(api, INFERENCE_SERVICE, namespace=NAMESPACE)
    watcher.handlers.append(on_event)
    deployments = Informer(api, DEPLOYMENT, namespace=NAMESPACE)
    deployments.handlers.append(on_deployment)
    watch_tasks = [asyncio.create_task(i.run()) for i in (watcher, deployments)]
    await watcher.synced.wait()
    await deployments.synced.wait()
    gate = asyncio.Semaphore(IN_FLIGHT)
    path = INFERENCE_SERVICE.path(NAMESPACE)

    async def create(name: str) -> None:
        async with gate:
            created[name] = time.monotonic()
            await api.request("POST", path, body=isvc(name))

    t0 = time.monotonic()
    await asyncio.gather(*(create(f"isvc-{i:05d}") for i in range(args.count)))
    out["create_seconds"] = round(time.monotonic() - t0, 2)
    try:
        await asyncio.wait_for(all_ready.wait(), args.timeout)
    except TimeoutError:
        out["timed_out_ready"] = len(ready)
        raise RuntimeError(
            f"only {len(ready)} of {args.count} Ready after {args.timeout}s"
        ) from None
    out["all_ready_seconds"] = round(max(ready.values()) - t0, 2)
    latencies = [ready[n] - created[n] for n in created]
    out["ready_p50_seconds"] = round(pct(latencies, 50), 2)
    out["ready_p99_seconds"] = round(pct(latencies, 99), 2)
    out["ready_mean_seconds"] = round(statistics.fmean(latencies), 2)
    to_child = [dep_created[n] - created[n] for n in created if n in dep_created]
    to_available = [dep_available[n] - dep_created[n] for n in created if n in dep_available]
    after_available = [ready[n] - dep_available[n] for n in created if n in dep_available]
    if to_child and to_available and after_available:
        out["create_to_deployment_p50_p99"] = [round(pct(to_child, q), 2) for q in (50, 99)]
        out["deployment_to_available_p50_p99"] = [round(pct(to_available, q), 2) for q in (50, 99)]
        out["available_to_ready_p50_p99"] = [round(pct(after_available, q), 2) for q in (50, 99)]
    for task in watch_tasks:
        task.cancel()
    return t0


async def _noop_resync(
    args: argparse.Namespace,
    cp: ControlPlane,
    api: Api,
    port: int,
    pid: int,
    out: dict[str, Any],
) -> None:
    """Wait for the next periodic resync to reconcile every service; count the writes."""
    # what else changed meanwhile: a pod or a service whose Ready condition flipped is a real
    # change, and the writes it causes are not a no-op resync's
    flips = {"pods": 0, "inferenceservices": 0}

    def flipped(plural: str) -> Any:
        def handler(_event: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            if old is not None and _ready_condition(obj) != _ready_condition(old):
                flips[plural] += 1

        return handler

    watchers = [Informer(api, k, namespace=NAMESPACE) for k in (POD, INFERENCE_SERVICE)]
    for watcher in watchers:
        watcher.handlers.append(flipped(watcher.kind.plural))
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    for watcher in watchers:
        await watcher.synced.wait()
    before_api, before_cpu = apiserver_writes(cp), cpu_seconds(pid)
    before = controller_metrics(port)
    passes_from = isvc_reconciles(before)
    deadline = time.monotonic() + args.resync_seconds + args.timeout
    while isvc_reconciles(controller_metrics(port)) < passes_from + args.count:
        if time.monotonic() > deadline:
            raise RuntimeError("no resync pass reconciled every service in time")
        await asyncio.sleep(0.5)
    after = await wait_idle(port, settle_s=3.0, within_s=args.timeout)
    after_api = apiserver_writes(cp)
    out["resync_cpu_seconds"] = round(cpu_seconds(pid) - before_cpu, 2)
    all_writes = delta(after_api, before_api)
    mine = {k: v for k, v in all_writes.items() if (k[0], k[1]) in CONTROLLER_WRITES}
    out["resync_reconciles"] = isvc_reconciles(after) - isvc_reconciles(before)
    out["resync_apiserver_writes_controller_kinds"] = sum(mine.values())
    out["resync_controller_writes"] = controller_write_total(after) - controller_write_total(before)
    out["resync_apiserver_writes_all_by_resource"] = {
        "/".join(filter(None, k)): v for k, v in sorted(all_writes.items())
    }
    out["metrics_after_resync"] = after
    out["resync_ready_flips"] = dict(flips)
    for task in tasks:
        task.cancel()


async def _measure(args: argparse.Namespace, cp: ControlPlane, api: Api) -> dict[str, Any]:
    out: dict[str, Any] = {}
    port = free_port()
    log_path = Path(args.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "wharf_controller", "run",
        f"--kubeconfig={cp.kubeconfig}", f"--namespace={CONFIG_NAMESPACE}",
        f"--workers={args.workers}", f"--resync-seconds={args.resync_seconds}",
        "--metrics-host=127.0.0.1", f"--metrics-port={port}", "--no-leader-elect",
    ]  # fmt: skip
    proc = start_process(argv, log_path)
    rss = RssSampler(proc.pid)
    rss.start()
    try:
        await _wait_ready(proc, port, log_path)
        out["controller_idle_rss_mib"] = round(status_kib(proc.pid, "VmRSS") / 1024, 1)
        cpu_start = cpu_seconds(proc.pid)

        t0 = await _create_and_wait(args, api, out)
        out["cpu_seconds_to_ready"] = round(cpu_seconds(proc.pid) - cpu_start, 2)
        out["rss_at_ready_mib"] = round(status_kib(proc.pid, "VmRSS") / 1024, 1)
        out["metrics_at_ready"] = controller_metrics(port)

        idle = await wait_idle(port, settle_s=3.0, within_s=args.timeout)
        out["idle_seconds"] = round(time.monotonic() - t0 - 3.0, 1)
        out["cpu_seconds_to_idle"] = round(cpu_seconds(proc.pid) - cpu_start, 2)
        out["idle_metrics"] = idle
        await _noop_resync(args, cp, api, port, proc.pid, out)
        out["rss_after_resync_mib"] = round(status_kib(proc.pid, "VmRSS") / 1024, 1)
        out["peak_rss_mib"] = round(max(rss.peak_kib, status_kib(proc.pid, "VmHWM")) / 1024, 1)
        out["cpu_seconds_total"] = round(cpu_seconds(proc.pid) - cpu_start, 2)
        out["load_at_end"] = load_average()
    finally:
        rss.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


def _pair(r: dict[str, Any], key: str) -> str:
    p50, p99 = r.get(f"{key}_p50_p99") or ("?", "?")
    return f"{p50} s / {p99} s"


def report(r: dict[str, Any]) -> str:
    rows = [
        ("services", f"{r['count']} (fake nodes {r['fake_nodes']}, workers {r['workers']})"),
        ("machine", f"nproc {r['nproc']}, {r['mem_total_gib']} GiB, load {r['load_at_start']}"),
        ("all created (POSTs)", f"{r['create_seconds']} s"),
        ("all Ready", f"{r['all_ready_seconds']} s"),
        ("create -> Ready p50 / p99", f"{r['ready_p50_seconds']} s / {r['ready_p99_seconds']} s"),
        ("  create -> Deployment p50 / p99 (controller)", _pair(r, "create_to_deployment")),
        ("  Deployment -> available p50 / p99 (cluster)", _pair(r, "deployment_to_available")),
        ("  available -> Ready p50 / p99 (controller)", _pair(r, "available_to_ready")),
        ("controller idle after", f"{r['idle_seconds']} s"),
        (
            "controller CPU to all Ready / to idle",
            f"{r['cpu_seconds_to_ready']} s / {r['cpu_seconds_to_idle']} s",
        ),
        (
            "controller RSS idle / at Ready / peak",
            f"{r['controller_idle_rss_mib']} / {r['rss_at_ready_mib']} / {r['peak_rss_mib']} MiB",
        ),
        ("no-op resync: reconciles", f"{r['resync_reconciles']:.0f}"),
        (
            "no-op resync: API writes (API server, controller's kinds)",
            f"{r['resync_apiserver_writes_controller_kinds']:.0f}",
        ),
        ("no-op resync: writes the controller counted", f"{r['resync_controller_writes']:.0f}"),
        ("no-op resync: controller CPU", f"{r['resync_cpu_seconds']} s"),
        ("meanwhile, Ready flips (pods, services)", str(r["resync_ready_flips"])),
        (
            "reconciles to idle (InferenceService)",
            f"{isvc_reconciles(r['idle_metrics']):.0f}",
        ),
    ]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(width)}  {b}" for a, b in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="InferenceServices (1000)")
    parser.add_argument("--workers", type=int, default=4, help="controller workers (4)")
    parser.add_argument(
        "--resync-seconds", type=float, default=60.0, help="controller resync period (60)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per phase, seconds")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument(
        "--log", default="/tmp/wharf-bench-controller.log", help="the controller's output"
    )
    args = parser.parse_args()
    if not 1 <= args.count <= 5000:
        parser.error("--count must be between 1 and 5000")
    result = asyncio.run(bench(args))
    print(report(result))
    print("API server writes during the resync window, all components:")
    print(json.dumps(result["resync_apiserver_writes_all_by_resource"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
