"""Router overhead: what a proxy adds in front of an upstream that costs nothing.

The upstream is one `wharf-engine-sim --instant` pod (every engine step costs zero, nothing
waits). In front of it, one after another: nothing (`direct`), `wharf-router gateway` (default
policy), `vllm-router` and `sglang-router` (cache_aware, from their venvs under
~/.cache/wharf/bench). The load is `wrk` POSTing one small non-streamed completion
(`max_tokens: 1`, bench/wrk_post.lua): one connection for latency (p50, p99), 32 connections on
two threads for throughput (req/s). All routers run at once on their own ports and are measured
in rounds, in a rotating order, so that each round compares them over the same minute of a
shared machine. Overhead = p50 through the router - p50 direct in the same round; the figures
reported are the medians over the rounds.

Run alone: `uv run python bench/router_overhead.py [--duration S]`; bench/llm_routing.py runs it
after the routing steps, in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
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
TICKS = os.sysconf("SC_CLK_TCK")
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def measure(
    duration_s: float, logs: Path, rounds: int = 3, systems: Sequence[str] = ROUTERS
) -> dict[str, Any]:
    if "vllm-router" in systems:
        ensure_vllm_router_venv()
    logs.mkdir(parents=True, exist_ok=True)
    body = logs / "overhead-body.json"
    body.write_text(json.dumps({"model": MODEL, "prompt": "hello world", "max_tokens": 1}))
    per_round: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        pod = stack.enter_context(
            SimFleet(1, ["--instant", "--model", MODEL], log=logs / "overhead-pod.log")
        )
        upstream = pod.urls[0]
        urls = {"direct": upstream}
        pids: dict[str, int | None] = {"direct": None}
        for system in systems:
            if (
                system == "sglang-router"
                and not (SGLANG_ROUTER_VENV / "bin" / "sglang-router").exists()
            ):
                continue
            port = free_port()
            urls[system] = f"http://127.0.0.1:{port}"
            argv = router_argv(system, port, [upstream])
            process = stack.enter_context(
                serving(argv, f"{urls[system]}/health", logs / f"overhead-{system}.log")
            )
            pids[system] = process.pid
        names = list(urls)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for system in order:
                figures = _load(urls[system], duration_s, body, pids[system])
                per_round.setdefault(system, []).append(figures)
                print(f"overhead round {r + 1} {system}: p50 {figures['c1']['p50_us']} us, "
                      f"{figures['c32']['rps']:,.0f} req/s at c=32", flush=True)  # fmt: skip
    results: dict[str, Any] = {"duration_s": duration_s, "rounds": rounds, "systems": {}}
    direct = per_round["direct"]
    for system, runs in per_round.items():
        added = [
            (run["c1"]["p50_us"] - d["c1"]["p50_us"]) / 1e3
            for run, d in zip(runs, direct, strict=True)
        ]
        results["systems"][system] = {
            "c1_p50_ms": statistics.median(run["c1"]["p50_us"] for run in runs) / 1e3,
            "c1_p99_ms": statistics.median(run["c1"]["p99_us"] for run in runs) / 1e3,
            "p50_added_ms": statistics.median(added),
            "c32_rps": statistics.median(run["c32"]["rps"] for run in runs),
            "runs": runs,
        }
        if "cpu_ms_per_request" in runs[0]["c32"]:
            for label in ("c1", "c32"):
                results["systems"][system][f"{label}_cpu_ms"] = statistics.median(
                    run[label]["cpu_ms_per_request"] for run in runs
                )
    return results


def _load(url: str, duration_s: float, body: Path, pid: int | None) -> dict[str, Any]:
    """wrk at c=1 and c=32; with the router's `pid`, its CPU time per request in each run (the
    router's own process: a router that works in child processes would be undercounted)."""
    target = f"{url}/v1/completions"
    wrk(target, 4, 1, 1.0, body)  # warm-up: connections, caches, lazy imports
    out: dict[str, Any] = {}
    for label, connections, threads in (("c1", 1, 1), ("c32", 32, 2)):
        before = cpu_seconds(pid) if pid else 0.0
        run = wrk(target, connections, threads, duration_s, body)
        if pid:
            run["cpu_ms_per_request"] = (cpu_seconds(pid) - before) * 1e3 / max(run["requests"], 1)
        out[label] = run
    return out


def table(results: dict[str, Any]) -> str:
    systems = results["systems"]
    peer = systems.get("vllm-router", {}).get("c32_rps")
    rows = []
    for name, f in systems.items():
        share = f"{f['c32_rps'] / peer:.0%}" if peer else "-"
        cpu = f"{f['c1_cpu_ms']:.2f} / {f['c32_cpu_ms']:.2f}" if "c1_cpu_ms" in f else "-"
        rows.append([name, f"{f['c1_p50_ms']:.2f}", f"{f['c1_p99_ms']:.2f}",
                     f"{f['p50_added_ms']:+.2f}", f"{f['c32_rps']:,.0f}", share, cpu])  # fmt: skip
    head = ["system", "p50 ms (c=1)", "p99 ms (c=1)", "added p50 ms", "req/s (c=32)",
            "req/s / vllm-router", "CPU ms/request (c=1 / c=32)"]  # fmt: skip
    return markdown_table(head, rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--systems", default=",".join(ROUTERS), help="routers to compare with direct (comma list)"
    )
    args = p.parse_args(argv)
    started = datetime.now(UTC)
    logs = CACHE_DIR / "logs" / f"router_overhead-{started:%Y%m%dT%H%M%SZ}"
    results = measure(args.duration, logs, args.rounds, tuple(args.systems.split(",")))
    print(table(results))
    out = CACHE_DIR / "results" / f"router_overhead-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
