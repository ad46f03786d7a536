"""Helpers of the kind suite (e2e/tests/kind): what a test puts in its namespace, and how it
reaches the cluster's Services and pods from outside, through the API server.

- `file_server_objects`: an HTTP file server pod that serves bytes made by the test to the
  storage initializer, so nothing is downloaded from outside the cluster. The API server caps a
  ConfigMap at 1 MiB, so each file is cut into parts of at most `PART_BYTES`, the parts packed
  into ConfigMaps of at most `PART_BYTES` each and projected into one folder, and the pod joins
  them (`JOIN_SCRIPT`) before it serves.
- `proxy`: a request through `/api/v1/namespaces/NS/{services|pods}/NAME:PORT/proxy/PATH`, the
  way `kubectl proxy` reaches a ClusterIP Service or a pod.
- `llm_service`: the LLMInferenceService of the LLM tests (the tiny Llama, one GPU per worker),
  as a KServe user writes it.
- `gpu_shortfall`: whether a test that needs N GPUs skips or fails on a given cluster.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from wharf_e2e.kube import Kube, KubeError, wait_for
from wharf_e2e.vllm_servers import metric_value

JSON = dict[str, Any]

MODEL_SERVER_IMAGE = "ghcr.io/wharf-serving/model-server:0.1.0"
RESTRICTED: JSON = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Under the API server's 1 MiB per ConfigMap, with room for the object's own fields.
PART_BYTES = 768 * 1024
CONFIGMAP_LIMIT = 1024 * 1024
# The files of one server pass through etcd: a few models' worth, not a data set.
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_PARTS = 9999
PART_MARK = ".part-"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?")

# Run by the server pod as `python -c JOIN_SCRIPT PARTS_DIR OUT_DIR PORT`, in the model-server
# image (no other tool there): joins `NAME.part-NNNN` into `NAME`, then serves OUT_DIR. The
# projected volume also holds `..data` links and a timestamped folder; only part files count.
JOIN_SCRIPT = """\
import functools, http.server, os, sys
parts, out, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = {}
for entry in sorted(os.listdir(parts)):
    base, mark, index = entry.rpartition(".part-")
    if mark and base and index.isdigit():
        files.setdefault(base, []).append(entry)
for base, entries in files.items():
    with open(os.path.join(out, base), "wb") as joined:
        for entry in sorted(entries):
            with open(os.path.join(parts, entry), "rb") as part:
                joined.write(part.read())
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=out)
http.server.ThreadingHTTPServer(("", port), handler).serve_forever()
"""
PARTS_DIR = "/parts"
OUT_DIR = "/srv"


def _check_name(name: str, what: str) -> None:
    if not _OBJECT_NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r}: 1-42 lowercase letters, digits or '-'")


def split_parts(files: Mapping[str, bytes]) -> list[dict[str, bytes]]:
    """The files as `NAME.part-NNNN` parts, packed into groups of at most PART_BYTES (one
    ConfigMap each). An empty file is one empty part, so it is still served."""
    total = sum(len(data) for data in files.values())
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"files: {total} bytes, over the {MAX_TOTAL_BYTES} a file server takes")
    groups: list[dict[str, bytes]] = []
    size = 0
    for name, data in files.items():
        if not _FILE_NAME.fullmatch(name) or PART_MARK in name:
            raise ValueError(
                f"files: {name!r} must be 1-100 letters, digits, '.', '_' or '-' "
                f"(not starting with one of the last three) without {PART_MARK!r}"
            )
        offsets = range(0, max(len(data), 1), PART_BYTES)
        if len(offsets) > MAX_PARTS:
            raise ValueError(f"files: {name!r} needs more than {MAX_PARTS} parts")
        for index, offset in enumerate(offsets):
            part = data[offset : offset + PART_BYTES]
            if not groups or size + len(part) > PART_BYTES:
                groups.append({})
                size = 0
            groups[-1][f"{name}{PART_MARK}{index:04d}"] = part
            size += len(part)
    return groups


def file_server_objects(
    namespace: str, files: Mapping[str, bytes], *, name: str = "model-files", port: int = 8000
) -> list[JSON]:
    """ConfigMaps holding the files' parts, a Pod that joins and serves them over HTTP on
    `port`, and a Service of the same name in front of it (see `file_url`)."""
    _check_name(name, "file server name")
    if not files:
        raise ValueError("files: give at least one file to serve")
    groups = split_parts(files)
    labels = {"app.kubernetes.io/name": name}
    total_mib = sum(len(d) for d in files.values()) // (1024 * 1024) + 1
    objects: list[JSON] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-{i}", "namespace": namespace, "labels": labels},
            "binaryData": {key: base64.b64encode(part).decode() for key, part in group.items()},
        }
        for i, group in enumerate(groups)
    ]
    sources = [{"configMap": {"name": f"{name}-{i}"}} for i in range(len(groups))]
    container = {
        "name": "files",
        "image": MODEL_SERVER_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", JOIN_SCRIPT, PARTS_DIR, OUT_DIR, str(port)],
        "ports": [{"containerPort": port, "name": "http"}],
        "readinessProbe": {"tcpSocket": {"port": port}},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {**RESTRICTED, "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "parts", "mountPath": PARTS_DIR, "readOnly": True},
            {"name": "out", "mountPath": OUT_DIR},
        ],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [container],
            "volumes": [
                {"name": "parts", "projected": {"sources": sources}},
                # the joined files: as large as the parts, in the pod's own scratch space
                {"name": "out", "emptyDir": {"sizeLimit": f"{total_mib}Mi"}},
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": labels, "ports": [{"port": port, "targetPort": "http"}]},
    }
    return [*objects, pod, service]


def file_url(namespace: str, file: str, *, name: str = "model-files", port: int = 8000) -> str:
    """Where the pods of `namespace` download `file` from the file server."""
    return f"http://{name}.{namespace}.svc.cluster.local:{port}/{file}"


async def serve_files(
    kube: Kube,
    namespace: str,
    files: Mapping[str, bytes],
    *,
    name: str = "model-files",
    port: int = 8000,
    within: float = 180,
) -> None:
    """Apply `file_server_objects` and wait until the server pod is ready."""
    for obj in file_server_objects(namespace, files, name=name, port=port):
        await kube.apply(obj, namespace)

    async def pod_ready() -> bool:
        pod = await kube.get("v1", "Pod", name, namespace)
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and all(s.get("ready") for s in statuses)

    await wait_for(pod_ready, f"the file server pod {namespace}/{name}", within, interval=2)


def tar_gz(folder: Path) -> bytes:
    """The folder's files (not its subfolders) as a .tar.gz with members at its root, the way
    the storage initializer unpacks an http(s) archive into the model folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    return buffer.getvalue()


# -- through the API server ---------------------------------------------------------------------


def service_target(service: str, port: int) -> str:
    return f"services/{service}:{port}"


def pod_target(pod: str, port: int) -> str:
    return f"pods/{pod}:{port}"


async def proxy(
    kube: Kube,
    namespace: str,
    target: str,
    path: str,
    *,
    method: str = "GET",
    body: Any = None,
    request_timeout_s: float = 120,
) -> tuple[int, str]:
    """A request to `target` (`service_target` or `pod_target`) through the API server's proxy:
    the answer's status and text, read whole (a stream's events all arrive in it)."""
    headers = {"Accept": "*/*"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = await kube.api.call_api(
        f"/api/v1/namespaces/{namespace}/{target}/proxy/{path.lstrip('/')}",
        method,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=request_timeout_s,
    )
    text: str = await response.text()
    return int(response.status), text


async def proxy_json(
    kube: Kube, namespace: str, target: str, path: str, body: Any, *, request_timeout_s: float = 120
) -> Any:
    """POST `body` as JSON; the answer's JSON, or KubeError naming the status and the text."""
    status, text = await proxy(
        kube, namespace, target, path, method="POST", body=body, request_timeout_s=request_timeout_s
    )
    if status != 200:
        raise KubeError(status, f"POST {target}/{path}: {text[:500]}", {})
    return json.loads(text)


async def proxy_text(kube: Kube, namespace: str, target: str, path: str) -> str:
    """GET `path` (a /metrics page, say); the text, or KubeError."""
    status, text = await proxy(kube, namespace, target, path)
    if status != 200:
        raise KubeError(status, f"GET {target}/{path}: {text[:500]}", {})
    return text


def sse_data(text: str) -> tuple[list[JSON], bool]:
    """The JSON events of a server-sent event stream, and whether it ended with `[DONE]`."""
    events: list[JSON] = []
    done = False
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            done = True
        elif data:
            events.append(json.loads(data))
    return events, done


async def list_pods(
    kube: Kube, namespace: str, labels: Mapping[str, str], *, terminating: bool = False
) -> list[JSON]:
    """The pods with all of `labels`; without those being deleted (a rollout's old pod) unless
    `terminating`."""
    resource = await kube.resource("v1", "Pod")
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    result = await kube.dynamic.get(resource, namespace=namespace, label_selector=selector)
    items: list[JSON] = result.to_dict().get("items") or []
    return [p for p in items if terminating or not p["metadata"].get("deletionTimestamp")]


def ready(obj: Mapping[str, Any] | None) -> bool:
    """The object's `Ready` condition is True."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def diagnosis(kube: Kube, namespace: str, tail: int = 40) -> str:
    """What the pods of the namespace are doing, with their logs' last lines: the message of a
    wait that timed out (the namespace is deleted after the test, and its logs with it)."""
    core = client.CoreV1Api(kube.api)
    out: list[str] = []
    for pod in await list_pods(kube, namespace, {}, terminating=True):
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        out.append(f"pod {name}: {status.get('phase')}")
        for c in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            out.append(f"  {c.get('name')}: ready={c.get('ready')} state={c.get('state')}")
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True":
                out.append(f"  {condition.get('type')}: {condition.get('message')}")
        spec = pod.get("spec") or {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            try:
                log = await core.read_namespaced_pod_log(
                    name, namespace, container=c["name"], tail_lines=tail
                )
            except client.ApiException as exc:
                log = f"(no log: {exc.status} {exc.reason})"
            out.append(f"  --- {c['name']} log ---\n{log}")
    return "\n".join(out) or f"no pods in {namespace}"


async def wait_ready(
    kube: Kube, api_version: str, kind: str, name: str, namespace: str, within: float
) -> JSON:
    """Until the object is Ready; on timeout an AssertionError with its status and the pods'."""

    async def probe() -> JSON | None:
        got = await kube.get(api_version, kind, name, namespace)
        return got if ready(got) else None

    try:
        got = await wait_for(probe, f"{kind} {namespace}/{name} Ready", within, interval=3)
    except TimeoutError as exc:
        last = await kube.get(api_version, kind, name, namespace)
        conditions = ((last or {}).get("status") or {}).get("conditions")
        raise AssertionError(
            f"{exc}\nconditions: {conditions}\n{await diagnosis(kube, namespace)}"
        ) from None
    assert got is not None  # wait_for returns only a truthy probe result
    return got


# -- GPUs ---------------------------------------------------------------------------------------

GPU = "nvidia.com/gpu"


async def allocatable_gpus(kube: Kube) -> int:
    """The cluster's allocatable `nvidia.com/gpu`, over all nodes."""
    nodes = await client.CoreV1Api(kube.api).list_node()
    return sum(int((n.status.allocatable or {}).get(GPU, "0")) for n in nodes.items)


def gpu_shortfall(
    needed: int, allocatable: int, runner_gpus: int | None, required: bool
) -> tuple[str, bool] | None:
    """None when the cluster has `needed` GPUs; else the reason and whether it is a failure.
    It fails only where the cluster is required and the runner has the GPUs (the cluster lost
    them: device plugin, nvkind); a runner with fewer GPUs skips the test, saying so."""
    if allocatable >= needed:
        return None
    runner = "unknown" if runner_gpus is None else str(runner_gpus)
    reason = (
        f"needs {needed} allocatable {GPU}, the kind cluster has {allocatable} "
        f"(GPUs on the runner: {runner})"
    )
    return reason, required and runner_gpus is not None and runner_gpus >= needed


# -- the LLM tests' service ---------------------------------------------------------------------

SERVED_MODEL = "tiny-llama"
MODEL_ARCHIVE = "tiny-llama.tar.gz"
# vLLM's own flags, the same as the CPU tests' (wharf_e2e.vllm_servers): greedy answers compare
# across workers. bfloat16 needs a GPU of compute capability 8.0 or later with a CUDA engine.
ENGINE_ARGS = ("--dtype", "bfloat16", "--max-model-len", "1024", "--enforce-eager")
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache where the engine is vLLM's CPU build
    "HF_HUB_OFFLINE": "1",  # the model is a local folder; nothing is downloaded
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def _worker_template(prefill_decode: bool) -> JSON:
    # (no VLLM_NIXL_SIDE_CHANNEL_HOST: the P/D presets set it from the pod's IP)
    env: list[JSON] = [{"name": k, "value": v} for k, v in ENGINE_ENV.items()]
    return {
        "containers": [
            {
                "name": "main",
                "args": list(ENGINE_ARGS),
                "env": env,
                "resources": {
                    "requests": {"cpu": "1", "memory": "4Gi"},
                    "limits": {GPU: "1", "memory": "8Gi"},
                },
            }
        ]
    }


def llm_service(namespace: str, name: str, model_uri: str, *, prefill: bool = False) -> JSON:
    """The tiny Llama as an LLMInferenceService (v1alpha1), one GPU per worker, behind Wharf's
    router; with `prefill`, one prefill and one decode worker (P/D over NIXL)."""
    spec: JSON = {
        "model": {"uri": model_uri, "name": SERVED_MODEL},
        "replicas": 1,
        "router": {"route": {}, "gateway": {}, "scheduler": {}},
        "template": _worker_template(prefill),
    }
    if prefill:
        spec["prefill"] = {"replicas": 1, "template": _worker_template(True)}
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def main_command(deployment: Mapping[str, Any]) -> Sequence[str]:
    """The `main` container's command of a workload Deployment."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    main = next(c for c in containers if c["name"] == "main")
    command: Sequence[str] = main.get("command") or []
    return command


def workload_labels(name: str, role: str) -> dict[str, str]:
    """The labels of the service's serving pods of one role (the router's `--kube-selector`
    plus its `--role-label`; wharf_api.llm.presets)."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "llminferenceservice",
        "kserve.io/component": "workload",
        "llm-d.ai/role": role,
    }


def chat_body(prompt: str, max_tokens: int, *, stream: bool = False) -> JSON:
    """A greedy chat request whose answer is exactly `max_tokens` long (`ignore_eos`: the tiny
    model's weights are random, its end-of-text token may come at any step)."""
    body: JSON = {
        "model": SERVED_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def flag(command: Sequence[str], name: str) -> str | None:
    """The value after `name` in a command line, or None."""
    items = list(command)
    return items[items.index(name) + 1] if name in items[:-1] else None


async def wait_router_sees(
    kube: Kube, namespace: str, gateway: str, roles: Sequence[str], within: float = 300
) -> None:
    """Until the router (`gateway`, a `service_target`) has a healthy pod of every role: the
    service is Ready once its pods are, but the router finds them by watching, a moment later."""

    async def probe() -> bool:
        status, text = await proxy(kube, namespace, gateway, "metrics")
        return status == 200 and all(
            (metric_value(text, "wharf_router_pod_healthy", {"role": role}) or 0) >= 1
            for role in roles
        )

    try:
        await wait_for(probe, f"the router to see healthy {', '.join(roles)} pods", within, 2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{await diagnosis(kube, namespace)}") from None
