"""InferenceGraph router: router CPU per request and latency, step calls over httpx vs the pool.

One `wharf-engine-sim --instant` pod (answers at once) is every step's `serviceUrl`. Two
routers run the same graph (a Sequence of `--steps` steps, each sent the graph's request) side
by side: `pool`, the router as shipped (steps over wharf_datapath's upstream pool), and `httpx`,
the same router with its step caller replaced by the httpx caller it had before (kept here, in
the benchmark, only to compare). `direct` is the pod without a router. `wrk` POSTs a small
completion: one connection (p50, p99) and 32 connections on 2 threads (req/s). Router CPU per
request = the router process's user+system CPU time (/proc/PID/stat) over a wrk run divided by
the requests it served. Systems are measured in rounds in rotating order so that each round
compares them over the same minute of a shared machine; medians over the rounds.

`uv run python bench/graph_router.py [--rounds N] [--duration S] [--steps N]`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router_overhead import cpu_seconds, wrk
from tooling import CACHE_DIR, free_port, markdown_table, serving

from wharf_e2e.enginesim.fleet import SimFleet

MODEL = "sim-model"
BENCH_DIR = Path(__file__).resolve().parent


def graph_json(pod: str, steps: int) -> str:
    url = f"{pod}/v1/completions"
    step = {"serviceUrl": url, "data": "$request"}
    return json.dumps({"nodes": {"root": {"routerType": "Sequence", "steps": [step] * steps}}})


def router_argv(variant: str, port: int, graph: str) -> list[str]:
    args = ["--graph-json", graph, "--port", str(port), "--host", "127.0.0.1",
            "--drain-seconds", "0"]  # fmt: skip
    if variant == "pool":
        return [sys.executable, "-m", "wharf_router.cli", *args]
    return [sys.executable, str(Path(__file__).resolve()), "--serve-httpx", *args]


def measure(duration_s: float, rounds: int, steps: int, logs: Path) -> dict[str, Any]:
    logs.mkdir(parents=True, exist_ok=True)
    body = logs / "graph-body.json"
    body.write_text(json.dumps({"model": MODEL, "prompt": "hello world", "max_tokens": 1}))
    per_round: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        pod = stack.enter_context(
            SimFleet(1, ["--instant", "--model", MODEL], log=logs / "graph-pod.log")
        )
        upstream = pod.urls[0]
        targets: dict[str, tuple[str, int | None]] = {
            "direct": (f"{upstream}/v1/completions", None)
        }
        graph = graph_json(upstream, steps)
        for variant in ("httpx", "pool"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = stack.enter_context(
                serving(router_argv(variant, port, graph), f"{url}/readyz", logs / f"{variant}.log")
            )
            targets[variant] = (f"{url}/", process.pid)
        names = list(targets)
        for r in range(rounds):
            for system in names[r % len(names) :] + names[: r % len(names)]:
                url, pid = targets[system]
                wrk(url, 4, 1, 1.0, body)  # warm-up
                figures: dict[str, Any] = {}
                for label, conns, threads in (("c1", 1, 1), ("c32", 32, 2)):
                    before = cpu_seconds(pid) if pid else 0.0
                    run = wrk(url, conns, threads, duration_s, body)
                    if pid:
                        spent = cpu_seconds(pid) - before
                        run["cpu_ms_per_request"] = spent * 1e3 / max(run["requests"], 1)
                    figures[label] = run
                per_round.setdefault(system, []).append(figures)
                cpu = figures["c32"].get("cpu_ms_per_request")
                print(f"round {r + 1} {system}: p50 {figures['c1']['p50_us']} us, "
                      f"{figures['c32']['rps']:,.0f} req/s at c=32"
                      + (f", {cpu:.2f} ms CPU/request" if cpu is not None else ""),
                      flush=True)  # fmt: skip
    results: dict[str, Any] = {"duration_s": duration_s, "rounds": rounds, "steps": steps,
                               "systems": {}}  # fmt: skip
    direct = per_round["direct"]
    for system, runs in per_round.items():
        entry: dict[str, Any] = {
            "c1_p50_ms": statistics.median(run["c1"]["p50_us"] for run in runs) / 1e3,
            "c1_p99_ms": statistics.median(run["c1"]["p99_us"] for run in runs) / 1e3,
            "p50_added_ms": statistics.median(
                (run["c1"]["p50_us"] - d["c1"]["p50_us"]) / 1e3
                for run, d in zip(runs, direct, strict=True)
            ),
            "c32_rps": statistics.median(run["c32"]["rps"] for run in runs),
            "runs": runs,
        }
        if system != "direct":
            for label in ("c1", "c32"):
                entry[f"{label}_cpu_ms"] = statistics.median(
                    run[label]["cpu_ms_per_request"] for run in runs
                )
        results["systems"][system] = entry
    return results


def table(results: dict[str, Any]) -> str:
    rows = []
    for name, f in results["systems"].items():
        cpu = f"{f['c1_cpu_ms']:.2f} / {f['c32_cpu_ms']:.2f}" if "c1_cpu_ms" in f else "-"
        rows.append([name, f"{f['c1_p50_ms']:.2f}", f"{f['c1_p99_ms']:.2f}",
                     f"{f['p50_added_ms']:+.2f}", f"{f['c32_rps']:,.0f}", cpu])  # fmt: skip
    head = ["system", "p50 ms (c=1)", "p99 ms (c=1)", "added p50 ms", "req/s (c=32)",
            "router CPU ms/request (c=1 / c=32)"]  # fmt: skip
    return markdown_table(head, rows)


def serve_httpx(argv: list[str]) -> int:
    """The graph router with the httpx step caller it had before the pool (for comparison)."""
    import httpx

    from wharf_router.graph import cli
    from wharf_router.graph.engine import Answer, Headers, RoutingError

    class HttpxCaller:
        def __init__(self, timeout_s: float | None) -> None:
            self.client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout_s),
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
                follow_redirects=False,
                trust_env=False,
            )

        async def __call__(self, url: str, body: bytes, headers: Headers) -> Answer:
            try:
                async with self.client.stream(
                    "POST", url, content=body, headers=list(headers)
                ) as r:
                    return Answer(b"".join([c async for c in r.aiter_bytes()]), r.status_code)
            except (httpx.HTTPError, ValueError) as exc:
                raise RoutingError(500, f"Post {url!r}: {exc}") from None

        async def aclose(self) -> None:
            await self.client.aclose()

    vars(cli)["HttpCaller"] = HttpxCaller  # the "before" variant: the step client it replaced
    return cli.main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--serve-httpx"]:
        return serve_httpx(args_list[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=1, help="steps in the graph's Sequence")
    args = p.parse_args(args_list)
    started = datetime.now(UTC)
    stamp = f"{started:%Y%m%dT%H%M%SZ}"
    results = measure(args.duration, args.rounds, args.steps, CACHE_DIR / "logs" / f"graph-{stamp}")
    print(table(results))
    out = CACHE_DIR / "results" / f"graph_router-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
