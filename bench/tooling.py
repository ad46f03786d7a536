"""What the benchmark scripts share: the compared systems' virtual environments, the load
generators (wrk, ghz), free ports, CPU pinning and process CPU time, percentiles and tables.

The scripts import it as `tooling` (they run as `uv run python bench/<script>.py`, which puts
`bench/` first on `sys.path`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wharf_e2e.testing import free_port

__all__ = [
    "CACHE_DIR",
    "GHZ_BIN",
    "GHZ_VERSION",
    "KSERVE_STORAGE_VENV",
    "KSERVE_VENV",
    "KSERVE_VERSION",
    "MLSERVER_VENV",
    "MLSERVER_VERSION",
    "SGLANG_ROUTER_VENV",
    "SGLANG_ROUTER_VERSION",
    "VLLM_ROUTER_VENV",
    "VLLM_ROUTER_VERSION",
    "dev_version",
    "ensure_ghz",
    "ensure_kserve_storage_venv",
    "ensure_kserve_venv",
    "ensure_mlserver_venv",
    "ensure_sglang_router_venv",
    "ensure_venv",
    "ensure_vllm_router_venv",
    "ensure_wrk",
    "free_port",
    "kserve_python",
    "markdown_table",
    "percentile",
    "pinned",
    "process_cpu_seconds",
    "process_tree",
    "run",
    "serving",
    "sglang_router_argv",
    "tree_cpu_seconds",
    "venv_python",
    "venv_version",
    "vllm_router_argv",
]

CACHE_DIR = Path.home() / ".cache" / "wharf" / "bench"
KSERVE_VERSION = "0.21.0"  # newest `kserve` on PyPI that installs on Python 3.11
KSERVE_VENV = CACHE_DIR / "kserve-venv"
KSERVE_STORAGE_VENV = CACHE_DIR / "kserve-storage-venv"
GHZ_VERSION = "v0.121.0"
GHZ_BIN = CACHE_DIR / "bin" / "ghz"


def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, text=True, capture_output=True, **kwargs)


# ---------------------------------------------------------------------------------------------
# CPUs


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    """`argv` run under `taskset -c core` (unpinned on a one-CPU machine)."""
    return ["taskset", "-c", str(core), *argv] if (os.cpu_count() or 1) > 1 else list(argv)


def process_cpu_seconds(pid: int, children: bool = False) -> float | None:
    """User + system CPU time of a process and its threads so far (with `children`, also of its
    children that it has waited for); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(f) for f in fields[11:13] + (fields[13:15] if children else []))
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> set[int]:
    """`root` and every live process below it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return tree


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and of every live process below it (servers that
    run their work in child processes: MLServer's inference pool, `--workers`)."""
    tree = process_tree(pid)
    own = process_cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(process_cpu_seconds(p) or 0.0 for p in tree - {pid})


# ---------------------------------------------------------------------------------------------
# Servers


@contextlib.contextmanager
def serving(
    argv: Sequence[str], ready_url: str, log: Path, timeout_s: float = 120.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (output appended to `log`) that answers 200 on `ready_url`; stopped
    with SIGTERM (then SIGKILL) on exit. Fails naming the log when it exits or never answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {process.returncode}; see {log}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{argv[0]} not ready at {ready_url} in {timeout_s:.0f}s; see {log}"
                )
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------------------------------------
# Figures


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (1..99) of `values`, interpolated as `statistics.quantiles` does."""
    return statistics.quantiles(values, n=100)[q - 1]


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Virtual environments of the compared systems


def dev_version(package: str) -> str | None:
    """The version of `package` in this workspace's environment."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_version(python: Path, package: str) -> str | None:
    code = f"from importlib import metadata as m; print(m.version({package!r}))"
    result = subprocess.run([str(python), "-c", code], text=True, capture_output=True)
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_venv(
    venv: Path, specs: Sequence[str], want: dict[str, str | None], python: str = "3.11"
) -> Path:
    """A virtual environment at `venv` with `specs` installed (made with uv); made again when a
    package in `want` has another version than the one named (None: any). Returns its python."""
    exe = venv_python(venv)
    if exe.exists() and all(v is None or venv_version(exe, p) == v for p, v in want.items()):
        return exe
    print(f"creating {venv} with {' '.join(specs)}", flush=True)
    uv = shutil.which("uv")
    if not uv:
        raise SystemExit(f"uv is needed to create {venv}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    run([uv, "venv", "--python", python, "--clear", str(venv)])
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    subprocess.run([uv, "pip", "install", "-q", *specs], check=True, env=env)
    return exe


def kserve_python() -> Path:
    return venv_python(KSERVE_VENV)


def ensure_kserve_venv() -> Path:
    """KServe's model server in its own venv; scikit-learn pinned to the workspace's version so
    that every server unpickles the same model with the same library."""
    sklearn = dev_version("scikit-learn")
    specs = [f"kserve=={KSERVE_VERSION}", "joblib"]
    specs.append(f"scikit-learn=={sklearn}" if sklearn else "scikit-learn")
    return ensure_venv(KSERVE_VENV, specs, {"kserve": KSERVE_VERSION, "scikit-learn": sklearn})


MLSERVER_VERSION = "1.7.1"  # newest `mlserver` and `mlserver-sklearn` on PyPI
MLSERVER_VENV = CACHE_DIR / "mlserver-venv"
MLSERVER_UVLOOP = "0.21.0"


def ensure_mlserver_venv() -> Path:
    """Seldon's MLServer (KServe's V2 runtime) with its sklearn runtime in its own venv,
    scikit-learn pinned to the workspace's version as for KServe."""
    sklearn = dev_version("scikit-learn")
    specs = [f"mlserver=={MLSERVER_VERSION}", f"mlserver-sklearn=={MLSERVER_VERSION}", "joblib"]
    specs.append(f"scikit-learn=={sklearn}" if sklearn else "scikit-learn")
    # MLServer 1.7.1's inference worker calls asyncio.get_event_loop() in a new process, which
    # uvloop 0.22 and later refuse (the worker dies at start and the model never loads).
    specs.append(f"uvloop=={MLSERVER_UVLOOP}")
    want = {"mlserver": MLSERVER_VERSION, "scikit-learn": sklearn, "uvloop": MLSERVER_UVLOOP}
    return ensure_venv(MLSERVER_VENV, specs, want)


def ensure_kserve_storage_venv() -> Path:
    """KServe's storage initializer library (`kserve-storage`, newest) in its own venv."""
    return ensure_venv(KSERVE_STORAGE_VENV, ["kserve-storage"], {})


# LLM routers compared with Wharf's gateway (bench/llm_routing.py). Both are Rust binaries in
# Python wheels; each listens on `port` and exports Prometheus metrics on a port of its own
# (default 29000 for both: two of them at once would collide).
SGLANG_ROUTER_VERSION = "0.3.2"  # newest `sglang-router` on PyPI (sgl-model-gateway)
SGLANG_ROUTER_VENV = CACHE_DIR / "sglang-router-venv"
VLLM_ROUTER_VERSION = "0.1.17"  # newest `vllm-router` on PyPI (vllm-project/router)
VLLM_ROUTER_VENV = CACHE_DIR / "vllm-router-venv"


def ensure_sglang_router_venv() -> Path:
    """SGLang's router (`sglang-router`) in its own venv; returns the venv's python."""
    spec = f"sglang-router=={SGLANG_ROUTER_VERSION}"
    return ensure_venv(SGLANG_ROUTER_VENV, [spec], {"sglang-router": SGLANG_ROUTER_VERSION})


def ensure_vllm_router_venv() -> Path:
    """vLLM's router (`vllm-router`, a fork of SGLang's) in its own venv; returns its python."""
    spec = f"vllm-router=={VLLM_ROUTER_VERSION}"
    return ensure_venv(VLLM_ROUTER_VENV, [spec], {"vllm-router": VLLM_ROUTER_VERSION})


def sglang_router_argv(
    port: int, metrics_port: int, workers: Sequence[str], policy: str = "cache_aware"
) -> list[str]:
    """`sglang-router launch` over `workers` (its own defaults for everything else)."""
    exe = SGLANG_ROUTER_VENV / "bin" / "sglang-router"
    return [str(exe), "launch", "--host", "127.0.0.1", "--port", str(port),
            "--prometheus-port", str(metrics_port), "--policy", policy, "--log-level", "warn",
            "--worker-urls", *workers]  # fmt: skip


def vllm_router_argv(
    port: int, metrics_port: int, workers: Sequence[str], policy: str = "cache_aware"
) -> list[str]:
    """`vllm-router` over `workers` (its own defaults for everything else)."""
    exe = VLLM_ROUTER_VENV / "bin" / "vllm-router"
    return [str(exe), "--host", "127.0.0.1", "--port", str(port),
            "--prometheus-port", str(metrics_port), "--policy", policy,
            "--log-level", "warning", "--worker-urls", *workers]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Load generators


def ensure_wrk() -> str:
    """wrk from PATH; installed with apt-get (Debian's package) when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found; installing it with apt-get", flush=True)
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: install it (Debian: apt-get install -y wrk)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed no wrk binary")
    return found


def ensure_ghz() -> Path:
    """ghz built with `go install` into the bench cache (once)."""
    if GHZ_BIN.exists():
        return GHZ_BIN
    go = shutil.which("go")
    if not go:
        raise SystemExit(f"ghz is missing and there is no Go toolchain to build it: {GHZ_BIN}")
    print(f"building ghz {GHZ_VERSION} into {GHZ_BIN.parent} (go install)", flush=True)
    GHZ_BIN.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(GHZ_BIN.parent)}
    subprocess.run(
        [go, "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"], check=True, env=env
    )
    return GHZ_BIN
