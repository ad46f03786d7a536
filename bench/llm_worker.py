"""What the LLM worker costs: `wharf-llm-worker --role both`, alone and behind
`wharf-router gateway`, against vLLM's own server.

Both engines serve the tiny Llama of the tests (`wharf_e2e.tinyllm`, built here) with the same
engine arguments from the same engine environment (`scripts/install-llm-engine`); the only
difference is Wharf (its command line, which execs vLLM's server, and its ASGI middleware).
They are started at once, then measured one after the other in each round, the order rotating;
an idle vLLM server uses no CPU, so the one not measured does not disturb the other. The third
row, `wharf+router`, is the same Wharf worker reached through a gateway process in front of it
(`--endpoint URL=both`): what a client of an LLMInferenceService with a router pays.

Each cell: C concurrent clients, each sending streamed chat completions (`max_tokens` M,
`ignore_eos`, greedy) back to back for D seconds. Output tokens/s is the completion tokens
(`usage` of each stream) over the cell's wall time; TTFT is the time from sending a request to
its first content chunk. Figures are medians over rounds; overhead is Wharf against vLLM.

Run: `uv run python bench/llm_worker.py [--rounds 3] [--duration 20] [--concurrency 4]
[--max-tokens 64] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from wharf_e2e.testing import free_port
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_e2e.vllm_servers import ENGINE_ARGS, ENGINE_ENV
from wharf_llm_worker.engine_env import engine_python
from wharf_llm_worker.launch import ENGINE_MODULE

MODEL = "tiny-llama"
# vLLM's own server first: the others are measured against it.
NAMES = ("vllm", "wharf", "wharf+router")
STARTUP_S = 900.0


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start(name: str, command: list[str], port: int, workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENGINE_ENV},
            start_new_session=True,
        )
    return Server(name, port, proc, log)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited while starting; see {server.log}")
        try:
            if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{server.name} was not ready after {STARTUP_S:.0f} s; see {server.log}")


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(90)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    if server.proc.poll() is None:
        server.proc.wait()


async def one_stream(client: httpx.AsyncClient, max_tokens: int) -> tuple[float, int]:
    """(seconds to the first content chunk, completion tokens) of one streamed chat."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "the router sends requests to the workers"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                first = time.perf_counter() - sent
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return (first if first is not None else float("nan")), tokens


async def cell(url: str, concurrency: int, duration: float, max_tokens: int) -> dict[str, float]:
    ttfts: list[float] = []
    tokens = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await one_stream(client, 4)  # warm the connection and the engine
        end = time.perf_counter() + duration
        started = time.perf_counter()

        async def loop() -> None:
            nonlocal tokens
            while time.perf_counter() < end:
                ttft, count = await one_stream(client, max_tokens)
                ttfts.append(ttft)
                tokens += count

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "output_tokens_per_s": tokens / wall,
        "ttft_median_ms": statistics.median(ttfts) * 1000,
        "requests": float(len(ttfts)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per cell")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    python = str(engine_python())
    workdir = Path(tempfile.mkdtemp(prefix="wharf-bench-llm-"))
    model = build_tiny_llama(workdir / "model")
    vllm_port, wharf_port, router_port = free_port(), free_port(), free_port()
    common = ["--model", str(model), "--served-model-name", MODEL, "--host", "127.0.0.1"]
    bare = [python, "-m", ENGINE_MODULE, *common, "--port", str(vllm_port), *ENGINE_ARGS]
    worker = [
        sys.executable, "-m", "wharf_llm_worker.cli", "--role", "both", "--model", str(model),
        "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(wharf_port),
        "--", *ENGINE_ARGS,
    ]  # fmt: skip
    router = [
        sys.executable, "-m", "wharf_router.cli", "gateway", "--host", "127.0.0.1",
        "--port", str(router_port), "--endpoint", f"http://127.0.0.1:{wharf_port}=both",
    ]  # fmt: skip
    servers = [start("vllm", bare, vllm_port, workdir), start("wharf", worker, wharf_port, workdir)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
    load_at_start = os.getloadavg()
    try:
        for server in servers:
            wait_ready(server)
        # The gateway's /health is 200 once it has seen its pod healthy.
        servers.append(start("wharf+router", router, router_port, workdir))
        wait_ready(servers[-1])
        for round_index in range(args.rounds):
            shift = round_index % len(servers)
            order = servers[shift:] + servers[:shift]
            for server in order:
                figures = asyncio.run(
                    cell(server.url, args.concurrency, args.duration, args.max_tokens)
                )
                results[server.name].append(figures)
                print(f"round {round_index + 1} {server.name}: {figures}", file=sys.stderr)
    finally:
        for server in servers:
            stop(server)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    summary: dict[str, Any] = {
        name: {key: median(name, key) for key in ("output_tokens_per_s", "ttft_median_ms")}
        for name in results
    }
    tps_v, ttft_v = summary["vllm"]["output_tokens_per_s"], summary["vllm"]["ttft_median_ms"]
    summary["overhead_pct"] = {
        name: {
            "output_tokens_per_s": 100 * (tps_v - summary[name]["output_tokens_per_s"]) / tps_v,
            "ttft_median_ms": 100 * (summary[name]["ttft_median_ms"] - ttft_v) / ttft_v,
        }
        for name in NAMES[1:]
    }
    summary["settings"] = {**vars(args), "json": str(args.json), "load_at_start": load_at_start}
    summary["rounds"] = results
    print("| server | output tokens/s | median TTFT (ms) | tokens/s cost | TTFT cost |")
    print("|---|---|---|---|---|")
    for name in NAMES:
        figures = summary[name]
        cost = summary["overhead_pct"].get(name)
        costs = (
            f"{cost['output_tokens_per_s']:+.1f}% | {cost['ttft_median_ms']:+.1f}%"
            if cost
            else "- | -"
        )
        print(
            f"| {name} | {figures['output_tokens_per_s']:.1f} | "
            f"{figures['ttft_median_ms']:.1f} | {costs} |"
        )
    print("costs against vllm: positive = Wharf slower")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
