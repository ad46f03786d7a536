"""Router overhead: what a proxy adds in front of an upstream that costs nothing.

The upstream is one `wharf-engine-sim --instant` pod (every engine step costs zero, nothing
waits). In front of it, one after another: nothing (`direct`), `wharf-router gateway` (default
policy), `vllm-router` and `sglang-router` (cache_aware, from their venvs under
~/.cache/wharf/bench). The load is `wrk` POSTing one small non-streamed completion
(`max_tokens: 1`, bench/wrk_post.lua): one connection for latency (p50, p99), 32 connections on
two threads for throughput (req/s). Overhead = p50 through the router - p50 direct.

Run alone: `uv run python bench/router_overhead.py [--duration S]`; bench/llm_routing.py runs it
after the routing steps, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_routing import MODEL, router_argv
from tooling import (
    CACHE_DIR,
    SGLANG_ROUTER_VENV,
    ensure_vllm_router_venv,
    ensure_wrk,
    free_port,
    markdown_table,
    serving,
)

from wharf_e2e.enginesim.fleet import SimFleet

BENCH_DIR = Path(__file__).resolve().parent
ROUTERS = ("wharf-default", "vllm-router", "sglang-router")


def wrk(url: str, connections: int, threads: int, duration_s: float, body: Path) -> dict[str, Any]:
    argv = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--latency",
            "-s", str(BENCH_DIR / "wrk_post.lua"), url]  # fmt: skip
    env = {**os.environ, "WRK_BODY_FILE": str(body)}
    result = subprocess.run(argv, text=True, capture_output=True, env=env, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("WRKJSON "):
            figures: dict[str, Any] = json.loads(line[8:])
            figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
            return figures
    raise RuntimeError(f"wrk printed no summary (exit {result.returncode}):\n{result.stderr}")


def measure(duration_s: float, logs: Path) -> dict[str, Any]:
    ensure_vllm_router_venv()
    logs.mkdir(parents=True, exist_ok=True)
    body = logs / "overhead-body.json"
    body.write_text(json.dumps({"model": MODEL, "prompt": "hello world", "max_tokens": 1}))
    results: dict[str, Any] = {"duration_s": duration_s, "systems": {}}
    with SimFleet(1, ["--instant", "--model", MODEL], log=logs / "overhead-pod.log") as pod:
        upstream = pod.urls[0]
        systems = ["direct", *ROUTERS]
        if not (SGLANG_ROUTER_VENV / "bin" / "sglang-router").exists():
            systems.remove("sglang-router")
        for system in systems:
            if system == "direct":
                results["systems"][system] = _load(upstream, duration_s, body)
                continue
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            argv = router_argv(system, port, [upstream])
            with serving(argv, f"{url}/health", logs / f"overhead-{system}.log"):
                results["systems"][system] = _load(url, duration_s, body)
            print(f"overhead {system}: {results['systems'][system]}", flush=True)
    direct = results["systems"]["direct"]
    for _name, figures in results["systems"].items():
        figures["p50_added_ms"] = (figures["c1"]["p50_us"] - direct["c1"]["p50_us"]) / 1e3
    return results


def _load(url: str, duration_s: float, body: Path) -> dict[str, Any]:
    target = f"{url}/v1/completions"
    wrk(target, 4, 1, 1.0, body)  # warm-up: connections, caches, lazy imports
    return {"c1": wrk(target, 1, 1, duration_s, body), "c32": wrk(target, 32, 2, duration_s, body)}


def table(results: dict[str, Any]) -> str:
    systems = results["systems"]
    peer = systems.get("vllm-router", {}).get("c32", {}).get("rps")
    rows = []
    for name, f in systems.items():
        share = f"{f['c32']['rps'] / peer:.0%}" if peer else "-"
        rows.append([name, f"{f['c1']['p50_us'] / 1e3:.2f}", f"{f['c1']['p99_us'] / 1e3:.2f}",
                     f"{f['p50_added_ms']:+.2f}", f"{f['c32']['rps']:,.0f}", share])  # fmt: skip
    head = ["system", "p50 ms (c=1)", "p99 ms (c=1)", "added p50 ms", "req/s (c=32)",
            "req/s / vllm-router"]  # fmt: skip
    return markdown_table(head, rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    args = p.parse_args(argv)
    started = datetime.now(UTC)
    logs = CACHE_DIR / "logs" / f"router_overhead-{started:%Y%m%dT%H%M%SZ}"
    results = measure(args.duration, logs)
    print(table(results))
    out = CACHE_DIR / "results" / f"router_overhead-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
