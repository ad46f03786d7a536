"""Predictive data plane benchmark: Wharf's model server against KServe's, with a floor.

Builds an iris LogisticRegression (scikit-learn's bundled data set) into `model.joblib`, serves it
with

- `wharf` — `wharf-model-server` from this workspace,
- `wharf-batch` — the same with its adaptive batching on (`WHARF_BATCH_ARGS`),
- `kserve` — KServe's Python model server (`kserve` from PyPI, pinned below) with KServe's sklearn
  runtime (`bench/kserve_sklearn_server.py`), in its own virtual environment under
  `~/.cache/wharf/bench/kserve-venv`,
- `kserve-quiet` — the same with KServe's per-request logging off (`--enable_latency_logging
  false`, KServe's and uvicorn's loggers at WARNING through `--log_config_file`), to show how much
  of KServe's cost is its default logging,
- `mlserver` — Seldon's MLServer (`mlserver` + `mlserver-sklearn` from PyPI, KServe's V2 runtime)
  with its defaults, in its own virtual environment under `~/.cache/wharf/bench/mlserver-venv`;
  V2 REST and gRPC only (it has no V1),
- `model-floor` — a raw ASGI app and a bare `grpc.aio` server that decode the request, call the
  same model's `predict` inline and encode the answer, nothing else (`bench/model_floor_server.py`),
- `floor` — a raw ASGI app on uvicorn (uvloop + httptools) and a bare `grpc.aio` server that
  answer with constant responses (`bench/floor_server.py`),

and drives each with the same load generators on loopback: `wrk` (one thread, keep-alive
connections, a Lua script that POSTs the body) for V1 and V2 REST at concurrency 1 and 32, and
`ghz` (one connection, 32 concurrent streams) for gRPC V2 ModelInfer at concurrency 32. All
servers run pinned to one core and the generators to another (`taskset`); the systems are measured
cell by cell, one after another, in every round, so that each cell compares them over the same
minute of this shared machine. Prints req/s, p50 and p99 per system side by side with the
Wharf/KServe ratios, and writes everything (versions, method, raw figures) to a JSON file.

Run: `uv run python bench/model_server.py [--duration S] [--rounds N] [--quick]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tooling import (
    CACHE_DIR,
    GHZ_BIN,
    GHZ_VERSION,
    MLSERVER_VENV,
    dev_version,
    ensure_ghz,
    ensure_kserve_venv,
    ensure_mlserver_venv,
    ensure_wrk,
    free_port,
    kserve_python,
    markdown_table,
    pinned,
    run,
    tree_cpu_seconds,
    venv_version,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
REPO_PROTO = REPO_ROOT / "protos" / "inference" / "grpc_predict_v2.proto"

SERVER_CORE = 1
GENERATOR_CORE = 0
MODEL_NAME = "iris"
SYSTEMS = (
    "wharf", "wharf-batch", "kserve", "kserve-quiet", "mlserver", "model-floor", "floor",
)  # fmt: skip
# The APIs a system speaks (the others speak all): MLServer has no V1.
ONLY = {"mlserver": {"v2", "grpc"}}
# Wharf's adaptive batching (off by default): up to 32 requests merged into one predict call, the
# first waiting at most 5 ms. KServe's batcher (in its Go agent) handles V1 only, so it has no
# counterpart here.
WHARF_BATCH_ARGS = ["--enable_batcher", "true", "--max_batchsize", "32", "--max_latency", "5"]
# Every server gets the same environment. Warnings are silenced because the newest FastAPI that
# `kserve` resolves to warns on every response KServe builds (ORJSONResponse is deprecated),
# which would charge KServe for a stderr write per request that its own image need not make.
SERVER_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
# Two rows, as in KServe's sklearn iris example.
INSTANCES = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


@dataclass(frozen=True)
class Api:
    key: str
    label: str
    concurrency: int


APIS = (
    Api("v1", "V1 REST", 1),
    Api("v1", "V1 REST", 32),
    Api("v2", "V2 REST", 1),
    Api("v2", "V2 REST", 32),
    Api("grpc", "gRPC V2", 32),
)


@dataclass
class Cell:
    """One measurement: one system, one API, one concurrency, one round."""

    system: str
    api: str
    concurrency: int
    round: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us_per_req: float | None
    error_detail: str = ""


@dataclass
class Server:
    name: str
    argv: list[str]
    http_port: int
    grpc_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    core: int | None = SERVER_CORE  # None: unpinned

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


# ---------------------------------------------------------------------------------------------
# Pure helpers


def v1_body() -> bytes:
    return json.dumps({"instances": INSTANCES}).encode()


def v2_body() -> bytes:
    data = [x for row in INSTANCES for x in row]
    tensor = {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def grpc_body() -> str:
    data = [x for row in INSTANCES for x in row]
    tensor = {
        "name": "input-0",
        "datatype": "FP32",
        "shape": [2, 4],
        "contents": {"fp32_contents": data},
    }
    return json.dumps({"model_name": MODEL_NAME, "inputs": [tensor]})


def speaks(system: str, api: str) -> bool:
    return api in ONLY.get(system, {api})


def api_path(api: str) -> str:
    return f"/v1/models/{MODEL_NAME}:predict" if api == "v1" else f"/v2/models/{MODEL_NAME}/infer"


class GeneratorFailed(RuntimeError):
    """The load generator produced no report (it crashed, or the server went away)."""


def parse_wrk(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
            return parsed
    raise RuntimeError(f"wrk printed no summary line:\n{output}")


def parse_ghz(
    report: dict[str, Any], concurrency: int
) -> tuple[int, float, float, float, int, str]:
    """(requests, seconds, p50 ms, p99 ms, errors, error detail) from ghz's JSON report.

    ghz closes its connection when the duration is up and reports the calls then in flight (at
    most one per concurrent worker) as Unavailable "use of closed network connection"; those are
    the generator stopping, not server errors, and are left out."""
    statuses: dict[str, int] = report.get("statusCodeDistribution") or {}
    ok = statuses.get("OK", 0)
    errors = sum(n for code, n in statuses.items() if code != "OK")
    cut = sum(
        n
        for message, n in (report.get("errorDistribution") or {}).items()
        if "closed network connection" in message or "context canceled" in message
    )
    if cut <= concurrency:
        errors -= cut
    percentiles = {
        int(p["percentage"]): p["latency"] / 1e6 for p in report.get("latencyDistribution") or []
    }
    detail = json.dumps(report.get("errorDistribution") or {})[:300] if errors else ""
    return (
        ok,
        report["total"] / 1e9,
        percentiles.get(50, float("nan")),
        percentiles.get(99, float("nan")),
        errors,
        detail,
    )


def median_cell(cells: Sequence[Cell]) -> dict[str, Any]:
    """Each figure is the median over rounds, taken on its own: one stall of this shared machine
    in one round moves neither req/s nor p99."""
    errors = sum(c.errors for c in cells)
    measured = [c for c in cells if c.requests] or list(cells)  # a failed round is left out
    cpu = [c.server_cpu_us_per_req for c in measured if c.server_cpu_us_per_req is not None]
    return {
        "rps": statistics.median(c.rps for c in measured),
        "p50_ms": statistics.median(c.p50_ms for c in measured),
        "p99_ms": statistics.median(c.p99_ms for c in measured),
        "errors": errors,
        "server_cpu_us_per_req": statistics.median(cpu) if cpu else None,
        "rps_rounds": [round(c.rps, 1) for c in cells],
        "p99_ms_rounds": [round(c.p99_ms, 2) for c in cells],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def metric(cell: dict[str, Any] | None, name: str) -> float | None:
    return None if cell is None else float(cell[name])


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(summary: dict[str, dict[str, dict[str, Any]]], systems: Sequence[str]) -> str:
    """Markdown table: per API cell, one row per system, with req/s and p99 relative to KServe
    (defaults) and to KServe with its per-request logging off."""
    head = ["API", "conc.", "system", "req/s", "p50 ms", "p99 ms", "server CPU us/req"]
    head += ["req/s vs KServe", "p99 vs KServe", "req/s vs KServe quiet"]
    rows: list[list[str]] = []
    for api in APIS:
        key = f"{api.key}/c{api.concurrency}"
        kserve = summary.get("kserve", {}).get(key)
        quiet = summary.get("kserve-quiet", {}).get(key)
        for system in systems:
            c = summary.get(system, {}).get(key)
            if c is None:
                continue
            vs_rps = ratio(c["rps"], metric(kserve, "rps"))
            vs_p99 = ratio(c["p99_ms"], metric(kserve, "p99_ms"))
            vs_quiet = ratio(c["rps"], metric(quiet, "rps"))
            row = [
                api.label,
                str(api.concurrency),
                system,
                fmt(c["rps"], ".0f"),
                fmt(c["p50_ms"], ".2f"),
                fmt(c["p99_ms"], ".2f"),
                fmt(c["server_cpu_us_per_req"], ".0f"),
                fmt(vs_rps, ".2f") + "x" if vs_rps is not None else "-",
                fmt(vs_p99, ".2f") + "x" if vs_p99 is not None else "-",
                fmt(vs_quiet, ".2f") + "x" if vs_quiet is not None else "-",
            ]
            if c["errors"]:
                row[3] += f" ({c['errors']} errors)"
            rows.append(row)
    return markdown_table(head, rows)


def verdict(
    summary: dict[str, dict[str, dict[str, Any]]], candidate: str, baseline: str
) -> dict[str, Any]:
    """The issue's target: V2 REST c=32 >= 3x req/s and <= 0.5x p99; gRPC c=32 >= 3x req/s."""
    w, k = summary.get(candidate, {}), summary.get(baseline, {})

    def get(d: dict[str, dict[str, Any]], key: str, metric: str) -> float | None:
        cell = d.get(key)
        return None if cell is None else float(cell[metric])

    def paired(key: str) -> float | None:
        """Median over rounds of the round's own ratio (the two measured minutes apart)."""
        if key not in w or key not in k:
            return None
        rounds = zip(w[key]["rps_rounds"], k[key]["rps_rounds"], strict=True)
        ratios = [a / b for a, b in rounds if a and b]
        return statistics.median(ratios) if ratios else None

    def capacity(key: str) -> float | None:
        """Baseline's server CPU per request over the candidate's: the req/s ratio each would
        reach with the core to itself; less moved by the neighbours' load than req/s."""
        return ratio(get(k, key, "server_cpu_us_per_req"), get(w, key, "server_cpu_us_per_req"))

    v2_rps = ratio(get(w, "v2/c32", "rps"), get(k, "v2/c32", "rps"))
    v2_p99 = ratio(get(w, "v2/c32", "p99_ms"), get(k, "v2/c32", "p99_ms"))
    grpc_rps = ratio(get(w, "grpc/c32", "rps"), get(k, "grpc/c32", "rps"))
    return {
        "v2_rest_c32_rps_ratio": v2_rps,
        "v2_rest_c32_rps_met": v2_rps is not None and v2_rps >= 3,
        "v2_rest_c32_p99_ratio": v2_p99,
        "v2_rest_c32_p99_met": v2_p99 is not None and v2_p99 <= 0.5,
        "grpc_c32_rps_ratio": grpc_rps,
        "grpc_c32_rps_met": grpc_rps is not None and grpc_rps >= 3,
        "v2_rest_c32_rps_ratio_paired": paired("v2/c32"),
        "grpc_c32_rps_ratio_paired": paired("grpc/c32"),
        "v2_rest_c32_cpu_capacity_ratio": capacity("v2/c32"),
        "grpc_c32_cpu_capacity_ratio": capacity("grpc/c32"),
    }


def floor_targets(summary: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The targets against MLServer, the model floor and for batching at low and high load:
    (what, candidate's figure over the reference's, the bound, met)."""

    def get(system: str, key: str, metric: str) -> float | None:
        cell = summary.get(system, {}).get(key)
        return None if cell is None else float(cell[metric])

    rows: list[dict[str, Any]] = []

    def add(what: str, a: float | None, b: float | None, bound: float, at_least: bool) -> None:
        value = ratio(a, b)
        met = value is not None and (value >= bound if at_least else value <= bound)
        rows.append(
            {"what": what, "ratio": value, "bound": bound, "at_least": at_least, "met": met}
        )

    for key, label, times in (("v2/c32", "V2 REST c=32", 3), ("v1/c32", "V1 REST c=32", 3)):
        add(
            f"wharf {label} req/s vs kserve",
            get("wharf", key, "rps"),
            get("kserve", key, "rps"),
            times,
            True,
        )
        add(
            f"wharf {label} p99 vs kserve",
            get("wharf", key, "p99_ms"),
            get("kserve", key, "p99_ms"),
            0.5,
            False,
        )
        if key.startswith("v2"):
            add(
                f"wharf {label} req/s vs mlserver",
                get("wharf", key, "rps"),
                get("mlserver", key, "rps"),
                1,
                True,
            )
        add(
            f"wharf {label} req/s vs model-floor",
            get("wharf", key, "rps"),
            get("model-floor", key, "rps"),
            0.6,
            True,
        )
    key = "grpc/c32"
    add(
        "wharf gRPC c=32 req/s vs kserve",
        get("wharf", key, "rps"),
        get("kserve", key, "rps"),
        2,
        True,
    )
    add(
        "wharf gRPC c=32 req/s vs mlserver",
        get("wharf", key, "rps"),
        get("mlserver", key, "rps"),
        1,
        True,
    )
    add(
        "wharf gRPC c=32 req/s vs model-floor",
        get("wharf", key, "rps"),
        get("model-floor", key, "rps"),
        0.6,
        True,
    )
    for key, label in (("v1/c1", "V1 REST c=1"), ("v2/c1", "V2 REST c=1")):
        add(
            f"wharf-batch {label} p50 vs wharf",
            get("wharf-batch", key, "p50_ms"),
            get("wharf", key, "p50_ms"),
            1.3,
            False,
        )
    add(
        "wharf-batch V2 REST c=32 req/s vs kserve",
        get("wharf-batch", "v2/c32", "rps"),
        get("kserve", "v2/c32", "rps"),
        5,
        True,
    )
    add(
        "wharf-batch gRPC c=32 req/s vs kserve",
        get("wharf-batch", "grpc/c32", "rps"),
        get("kserve", "grpc/c32", "rps"),
        3,
        True,
    )
    return [r for r in rows if r["ratio"] is not None]


# ---------------------------------------------------------------------------------------------
# Tools and environments


def ghz_proto_args(workdir: Path) -> list[str]:
    """The repository's OIP proto when it exists; otherwise a protoset made from the descriptor
    compiled into KServe's wheel (the same `inference` package on the wire)."""
    if REPO_PROTO.exists():
        return ["--proto", str(REPO_PROTO), "--import-paths", str(REPO_PROTO.parent)]
    protoset = workdir / "grpc_predict_v2.protoset"
    code = (
        "import sys\n"
        "from google.protobuf import descriptor_pb2\n"
        "from kserve.protocol.grpc import grpc_predict_v2_pb2 as m\n"
        "fds = descriptor_pb2.FileDescriptorSet()\n"
        "m.DESCRIPTOR.CopyToProto(fds.file.add())\n"
        "open(sys.argv[1], 'wb').write(fds.SerializeToString())\n"
    )
    run([str(kserve_python()), "-c", code, str(protoset)])
    return ["--protoset", str(protoset)]


def build_model(model_dir: Path) -> list[int]:
    """Train and save the model; return its predictions for INSTANCES (the expected answer)."""
    import joblib  # type: ignore[import-untyped, unused-ignore]
    from sklearn.datasets import load_iris  # type: ignore[import-untyped, unused-ignore]
    from sklearn.linear_model import (  # type: ignore[import-untyped, unused-ignore]
        LogisticRegression,
    )

    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    return [int(x) for x in model.predict(INSTANCES)]


def versions() -> dict[str, Any]:
    def out(argv: Sequence[str]) -> str:
        r = subprocess.run(list(argv), text=True, capture_output=True)
        return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr) else ""

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    kpy = kserve_python()
    common = ("fastapi", "uvicorn", "uvloop", "httptools", "grpcio", "orjson", "numpy")
    return {
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "wharf_commit": out(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]),
        "wharf_env": {p: dev_version(p) for p in (*common, "scikit-learn")},
        "kserve_env": {p: venv_version(kpy, p) for p in ("kserve", *common, "scikit-learn")},
        "wrk": out(["wrk", "-v"]),
        "ghz": f"ghz {GHZ_VERSION} (go install; the binary reports {out([str(GHZ_BIN), '-v'])!r})",
    }


# ---------------------------------------------------------------------------------------------
# Servers


def make_servers(systems: Sequence[str], model_dir: Path, workdir: Path) -> list[Server]:
    servers = []
    for name in systems:
        http_port, grpc_port = free_port(), free_port()
        ports = ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
        model = ["--model_name", MODEL_NAME, "--model_dir", str(model_dir)]
        if name.startswith("wharf"):
            argv = [str(Path(sys.executable).parent / "wharf-model-server"), *model, *ports]
            if name == "wharf-batch":
                argv += WHARF_BATCH_ARGS
        elif name.startswith("kserve"):
            argv = [str(kserve_python()), str(BENCH_DIR / "kserve_sklearn_server.py")]
            argv += model + ports
            if name == "kserve-quiet":
                argv += ["--enable_latency_logging", "false"]
                argv += ["--log_config_file", str(kserve_quiet_log_config(workdir))]
        elif name == "mlserver":
            folder = mlserver_folder(workdir, model_dir, http_port, grpc_port)
            argv = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(folder)]
        elif name == "model-floor":
            argv = [sys.executable, str(BENCH_DIR / "model_floor_server.py"), *model, *ports]
        else:
            argv = [sys.executable, str(BENCH_DIR / "floor_server.py"), *ports]
        servers.append(Server(name, argv, http_port, grpc_port, workdir / f"{name}.log"))
    return servers


def mlserver_folder(workdir: Path, model_dir: Path, http_port: int, grpc_port: int) -> Path:
    """MLServer's settings and the model's settings (its sklearn runtime on the same joblib
    file); everything else as MLServer ships it (one inference worker process, metrics on)."""
    folder = workdir / "mlserver"
    folder.mkdir(exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": free_port(),
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model_dir / "model.joblib")},
    }
    (folder / "model-settings.json").write_text(json.dumps(model))
    return folder


def kserve_quiet_log_config(workdir: Path) -> Path:
    """KServe's own default logging configuration with every logger raised to WARNING."""
    path = workdir / "kserve-quiet-logging.json"
    code = (
        "import json, sys\n"
        "from kserve.logging import KSERVE_LOG_CONFIG as c\n"
        "for logger in c['loggers'].values(): logger['level'] = 'WARNING'\n"
        "open(sys.argv[1], 'w').write(json.dumps(c))\n"
    )
    run([str(kserve_python()), "-c", code, str(path)])
    return path


def http(url: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start(server: Server, timeout: float = 120) -> None:
    log = server.log_path.open("wb")
    env = {**os.environ, **SERVER_ENV, **server.env}
    server.process = subprocess.Popen(
        server.argv if server.core is None else pinned(server.core, server.argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    ready_url = f"{server.base_url}/v2/models/{MODEL_NAME}/ready"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{tail}")
        with contextlib.suppress(OSError):
            status, _ = http(ready_url, timeout=1)
            if status == 200 and tcp_open(server.grpc_port):
                return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready within {timeout:.0f} s: see {server.log_path}")


def tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop(server: Server) -> None:
    p = server.process
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def server_cpu_seconds(server: Server) -> float | None:
    """User + system CPU time of the server process, its threads and its child processes (MLServer
    runs inference in a worker process) so far."""
    return None if server.process is None else tree_cpu_seconds(server.process.pid)


@contextlib.contextmanager
def running(servers: Sequence[Server]) -> Iterator[None]:
    try:
        for s in servers:
            print(f"starting {s.name}: {' '.join(s.argv)}", flush=True)
            start(s)
        yield
    finally:
        for s in servers:
            stop(s)


# ---------------------------------------------------------------------------------------------
# Checks


def check_answers(server: Server, expected: list[int]) -> dict[str, str]:
    """V1 and V2 REST answers match the model's own predict (the floor's are constants)."""
    problems: dict[str, str] = {}
    if speaks(server.name, "v1"):
        status, body = http(f"{server.base_url}{api_path('v1')}", v1_body())
        got_v1 = json.loads(body).get("predictions") if status == 200 else None
        if got_v1 != expected:
            problems["v1"] = f"status {status}, body {body[:300]!r}"
    status, body = http(f"{server.base_url}{api_path('v2')}", v2_body())
    outputs = json.loads(body).get("outputs") if status == 200 else None
    got_v2 = [int(x) for x in outputs[0]["data"]] if outputs else None
    if got_v2 != expected:
        problems["v2"] = f"status {status}, body {body[:300]!r}"
    return problems


def kserve_client_check(server: Server, expected: list[int]) -> dict[str, Any]:
    argv = [
        str(kserve_python()),
        str(BENCH_DIR / "kserve_client_check.py"),
        server.base_url,
        f"127.0.0.1:{server.grpc_port}",
        MODEL_NAME,
        json.dumps(INSTANCES),
        json.dumps(expected),
    ]
    result = subprocess.run(argv, text=True, capture_output=True, timeout=120)
    try:
        parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return parsed
    except (json.JSONDecodeError, IndexError):
        return {"client": {"ok": False, "detail": (result.stdout + result.stderr)[-500:]}}


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class Generator:
    wrk: str
    ghz: Path
    proto_args: list[str]
    bodies: dict[str, Path]
    core: int | None = GENERATOR_CORE  # None: unpinned

    def pin(self, argv: list[str]) -> list[str]:
        return argv if self.core is None else pinned(self.core, argv)

    def command(self, server: Server, api: Api, seconds: float) -> tuple[list[str], dict[str, str]]:
        if api.key == "grpc":
            argv = [
                str(self.ghz),
                "--insecure",
                *self.proto_args,
                "--call",
                "inference.GRPCInferenceService.ModelInfer",
                "--data-file",
                str(self.bodies["grpc"]),
                "--concurrency",
                str(api.concurrency),
                "--connections",
                "1",
                "--duration",
                f"{seconds:g}s",
                "--cpus",
                "1",
                "--format",
                "json",
                f"127.0.0.1:{server.grpc_port}",
            ]
            return self.pin(argv), {}
        argv = [
            self.wrk,
            "--threads",
            "1",
            "--connections",
            str(api.concurrency),
            "--duration",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "--script",
            str(BENCH_DIR / "wrk_post.lua"),
            f"{server.base_url}{api_path(api.key)}",
        ]
        return self.pin(argv), {"WRK_BODY_FILE": str(self.bodies[api.key])}

    def measure(self, server: Server, api: Api, seconds: float, round_no: int) -> Cell:
        argv, extra_env = self.command(server, api, seconds)
        cpu_before = server_cpu_seconds(server)
        result = subprocess.run(
            argv,
            text=True,
            capture_output=True,
            env={**os.environ, **extra_env},
            timeout=seconds + 60,
        )
        cpu_after = server_cpu_seconds(server)
        if api.key == "grpc":
            if not result.stdout.strip():
                raise GeneratorFailed(
                    f"ghz exited {result.returncode}: {result.stderr.strip()[-500:]}"
                )
            requests, secs, p50, p99, errors, detail = parse_ghz(
                json.loads(result.stdout), api.concurrency
            )
        else:
            try:
                w = parse_wrk(result.stdout)
            except RuntimeError:
                raise GeneratorFailed(
                    f"wrk exited {result.returncode}: "
                    f"{(result.stdout + result.stderr).strip()[-500:]}"
                ) from None
            kinds = ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
            errors = sum(w[k] for k in kinds)
            requests, secs = w["requests"] - w["status_errors"], w["duration_us"] / 1e6
            p50, p99, detail = w["p50_us"] / 1e3, w["p99_us"] / 1e3, ""
        cpu = None
        if cpu_before is not None and cpu_after is not None and requests:
            cpu = (cpu_after - cpu_before) / requests * 1e6
        return Cell(
            system=server.name,
            api=api.key,
            concurrency=api.concurrency,
            round=round_no,
            requests=requests,
            seconds=secs,
            rps=requests / secs if secs else 0.0,
            p50_ms=p50,
            p99_ms=p99,
            errors=errors,
            server_cpu_us_per_req=cpu,
            error_detail=detail,
        )


def write_bodies(workdir: Path) -> dict[str, Path]:
    paths = {"v1": workdir / "v1.json", "v2": workdir / "v2.json", "grpc": workdir / "grpc.json"}
    paths["v1"].write_bytes(v1_body())
    paths["v2"].write_bytes(v2_body())
    paths["grpc"].write_text(grpc_body())
    return paths


def measure_or_record(
    generator: Generator, server: Server, api: Api, seconds: float, round_no: int
) -> Cell:
    """One cell; a generator failure is tried once more, then recorded as a failed cell (with
    the server's exit status if it died) so that one crash does not lose the whole run."""
    detail = ""
    for _ in range(2):
        if server.process is not None and server.process.poll() is not None:
            detail = f"server exited with {server.process.returncode}; see {server.log_path}"
            break
        try:
            return generator.measure(server, api, seconds, round_no)
        except GeneratorFailed as e:
            detail = str(e)
    nan = float("nan")
    return Cell(
        server.name, api.key, api.concurrency, round_no, 0, 0.0, 0.0, nan, nan, 1, None, detail
    )


def run_cells(
    servers: Sequence[Server],
    generator: Generator,
    seconds: float,
    warmup: float,
    rounds: int,
    on_cell: Callable[[Cell], None],
) -> list[Cell]:
    cells: list[Cell] = []
    for round_no in range(1, rounds + 1):
        # Alternate the order so that no system always runs first (or last) in a cell.
        order = list(servers) if round_no % 2 else list(reversed(servers))
        for api in APIS:
            for server in order:
                if not speaks(server.name, api.key):
                    continue
                measure_or_record(generator, server, api, warmup, round_no)  # warm-up
                cell = measure_or_record(generator, server, api, seconds, round_no)
                on_cell(cell)
                cells.append(cell)
    return cells


def summarize(cells: Sequence[Cell]) -> dict[str, dict[str, dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        grouped.setdefault((c.system, f"{c.api}/c{c.concurrency}"), []).append(c)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for (system, key), group in grouped.items():
        summary.setdefault(system, {})[key] = median_cell(group)
    return summary


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="seconds per measured cell (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per cell (default 2)")
    parser.add_argument("--rounds", type=int, help="rounds of all cells; medians kept (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="3 s cells, 1 s warm-up, 1 round (a smoke run)"
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)}",
    )
    parser.add_argument("--json", type=Path, help="where to write the results (JSON)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, model)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.rounds = args.rounds or (1 if quick else 3)
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    systems: list[str] = args.systems
    wharf_bin = Path(sys.executable).parent / "wharf-model-server"
    if not wharf_bin.exists() and any(s.startswith("wharf") for s in systems):
        print(f"skipping Wharf: {wharf_bin} not found (run `uv sync --all-packages`)")
        systems = [s for s in systems if not s.startswith("wharf")]

    wrk = ensure_wrk()
    ghz = ensure_ghz()
    ensure_kserve_venv()
    if "mlserver" in systems:
        ensure_mlserver_venv()
    started = datetime.now(UTC)
    load_at_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="wharf-bench-"))
    try:
        model_dir = workdir / "model"
        expected = build_model(model_dir)
        generator = Generator(wrk, ghz, ghz_proto_args(workdir), write_bodies(workdir))
        servers = make_servers(systems, model_dir, workdir)
        compat: dict[str, Any] = {}
        with running(servers):
            for s in servers:
                if s.name == "floor":
                    continue
                problems = check_answers(s, expected)
                if problems:
                    raise SystemExit(f"{s.name} answered wrongly: {problems}")
            for s in servers:
                if s.name == "wharf":
                    compat = kserve_client_check(s, expected)
                    for check, outcome in compat.items():
                        word = "pass" if outcome["ok"] else "FAIL"
                        print(f"KServe client vs Wharf: {check}: {word} ({outcome['detail']})")

            def show(c: Cell) -> None:
                cpu = fmt(c.server_cpu_us_per_req, ".0f")
                err = f" errors={c.errors} {c.error_detail}" if c.errors else ""
                print(
                    f"  round {c.round} {c.system:6} {c.api:4} c={c.concurrency:<2} "
                    f"{c.rps:8.0f} req/s  p50 {c.p50_ms:7.2f} ms  p99 {c.p99_ms:7.2f} ms  "
                    f"server CPU {cpu} us/req{err}",
                    flush=True,
                )

            cells = run_cells(servers, generator, args.duration, args.warmup, args.rounds, show)
        summary = summarize(cells)
        table = render_table(summary, systems)
        targets = {
            f"{c} vs {b}": verdict(summary, c, b)
            for c in ("wharf", "wharf-batch")
            for b in ("kserve", "kserve-quiet")
            if c in summary and b in summary
        }
        result = {
            "date": started.isoformat(timespec="seconds"),
            "command": " ".join(["uv run python bench/model_server.py", *(argv or sys.argv[1:])]),
            "method": {
                "server_core": SERVER_CORE,
                "generator_core": GENERATOR_CORE,
                "seconds_per_cell": args.duration,
                "warmup_seconds": args.warmup,
                "rounds": args.rounds,
                "rest_generator": "wrk, 1 thread, N keep-alive connections, bench/wrk_post.lua",
                "grpc_generator": "ghz, 1 connection, N concurrent streams, --cpus 1",
                "request": {"instances": INSTANCES},
                "load_average_at_start": load_at_start,
                "load_average_at_end": os.getloadavg(),
            },
            "versions": versions(),
            "kserve_client_vs_wharf": compat,
            "summary": summary,
            "target": targets,
            "floor_targets": floor_targets(summary),
            "cells": [asdict(c) for c in cells],
        }
        out = args.json or CACHE_DIR / "results" / f"model_server-{started:%Y%m%dT%H%M%SZ}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print()
        print(table)
        print()
        for pair, v in targets.items():
            print(
                f"target, {pair}: V2 REST c=32 req/s {fmt(v['v2_rest_c32_rps_ratio'], '.2f')}x"
                f" (>= 3x {'met' if v['v2_rest_c32_rps_met'] else 'NOT met'}),"
                f" p99 {fmt(v['v2_rest_c32_p99_ratio'], '.2f')}x"
                f" (<= 0.5x {'met' if v['v2_rest_c32_p99_met'] else 'NOT met'});"
                f" gRPC c=32 req/s {fmt(v['grpc_c32_rps_ratio'], '.2f')}x"
                f" (>= 3x {'met' if v['grpc_c32_rps_met'] else 'NOT met'});"
                f" paired per round: V2 {fmt(v['v2_rest_c32_rps_ratio_paired'], '.2f')}x,"
                f" gRPC {fmt(v['grpc_c32_rps_ratio_paired'], '.2f')}x;"
                f" CPU capacity: V2 {fmt(v['v2_rest_c32_cpu_capacity_ratio'], '.2f')}x,"
                f" gRPC {fmt(v['grpc_c32_cpu_capacity_ratio'], '.2f')}x"
            )
        for t in floor_targets(summary):
            bound = f"{'>=' if t['at_least'] else '<='} {t['bound']:g}x"
            word = "met" if t["met"] else "NOT met"
            print(f"target: {t['what']} {t['ratio']:.2f}x ({bound} {word})")
        print(
            "load average (1, 5, 15 min) at start "
            + " ".join(f"{x:.1f}" for x in load_at_start)
            + ", at end "
            + " ".join(f"{x:.1f}" for x in os.getloadavg())
        )
        print(f"results: {out}")
        failed = [k for k, v in compat.items() if not v["ok"]]
        if failed or any(c.errors for c in cells):
            args.keep = True  # the servers' logs explain the errors
            return 1
        return 0
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
