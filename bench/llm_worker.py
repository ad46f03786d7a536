"""What the LLM worker costs: `wharf-llm-worker --role both`, alone and behind
`wharf-router gateway`, against vLLM's own server started the same way.

Both engines serve the tiny Llama of the tests (`wharf_e2e.tinyllm`, built here) from the same
engine environment (`scripts/install-llm-engine`). The `wharf` row is the worker's real command
line, which execs vLLM's server. The `vllm` row is that same launch without Wharf's middleware:
the argv and environment the worker's launcher builds (`build_launch`, what `wharf-llm-worker
--dry-run` prints; `--shutdown-timeout` and the worker's variables included), minus `--middleware
wharf_llm_worker.middleware.WharfMiddleware`, started directly with the engine's python. So the
two rows differ by exactly what Wharf puts on the token path. Neither pins anything: vLLM binds
its engine's OpenMP thread itself (the same in both), and the API servers float.
They are started at once, then measured one after the other in each round, the order rotating,
2 s apart: an idle vLLM server uses no CPU a second after its last request, so the one not
measured does not disturb the other. The third row, `wharf+router`, is the same Wharf worker
reached through a gateway process in front of it (`--endpoint URL=both`): what a client of an
LLMInferenceService with a router pays. The gateway runs only for its own cells (started before,
stopped after each), since it scrapes the worker's `/metrics` 5 times a second.

Each cell: C concurrent clients, each sending streamed chat completions (`max_tokens` M,
`ignore_eos`, greedy) back to back for D seconds. Output tokens/s is the completion tokens
(`usage` of each stream) over the cell's wall time; TTFT is the time from sending a request to
its first content chunk. Around each cell the engine's own `/metrics` are read, to say how the
engine ran: tokens per engine step (`vllm:iteration_tokens_total`; about C when the C streams
are batched together, about 1 when they run one at a time) and vLLM's own TTFT and queue time
(from the request reaching its engine client, after rendering and tokenization); and the CPU
each process used during the cell, in cores (`cpu_api_server`, `cpu_engine_core`, `cpu_worker`,
`cpu_clients` for this process, `cpu_gateway`), from /proc. Figures are medians over rounds;
overhead is Wharf against vLLM.

Run: `uv run python bench/llm_worker.py [--rounds 3] [--duration 20] [--concurrency 4]
[--max-tokens 64] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tooling import process_cpu_seconds, process_tree

from wharf_e2e.testing import die_with_parent, quiet_port
from wharf_e2e.tinyllm import build_tiny_llama
from wharf_e2e.vllm_servers import ENGINE_ARGS, ENGINE_ENV, metric_value
from wharf_llm_worker.cli import parse_command_line
from wharf_llm_worker.engine_env import engine_python
from wharf_llm_worker.launch import MIDDLEWARE, EngineLaunch, build_launch, process_env

MODEL = "tiny-llama"
# vLLM's own server first: the others are measured against it.
NAMES = ("vllm", "wharf", "wharf+router")
STARTUP_S = 900.0
# Between cells: vLLM's engine processes keep polling their queues for a second after their
# last step (on the same core as the next engine's, which vLLM binds there too), and the
# next cell should not share the machine with that.
SETTLE_S = 2.0
# vLLM's histograms read before and after each cell: (figure, histogram, scale). The cell's
# mean is the histogram's sum over its count, both as differences across the cell.
ENGINE_MEANS = (
    ("tokens_per_step", "vllm:iteration_tokens_total", 1.0),
    ("engine_ttft_ms", "vllm:time_to_first_token_seconds", 1000.0),
    ("engine_queue_ms", "vllm:request_queue_time_seconds", 1000.0),
    ("engine_e2e_ms", "vllm:e2e_request_latency_seconds", 1000.0),
)


# vLLM titles its processes (setproctitle): the engine core and its model worker. The API
# server is the process the row started (the worker execs into it).
PROCESS_ROLES = (("VLLM::EngineCore", "engine_core"), ("VLLM::Worker", "worker"))


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    # Where the engine's /metrics are: the server's own, or the worker's behind a gateway.
    metrics_url: str
    # The engine's API server: this process, or the worker's behind a gateway.
    engine_pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def worker_arguments(model: Path, port: int) -> list[str]:
    """`wharf-llm-worker`'s command line for the benchmark's combined worker on `port`."""
    return [
        "--role", "both", "--model", str(model), "--served-model-name", MODEL,
        "--host", "127.0.0.1", "--port", str(port), "--", *ENGINE_ARGS,
    ]  # fmt: skip


def bare_vllm_launch(worker: EngineLaunch) -> EngineLaunch:
    """vLLM's own server started the way the worker starts it: the worker's launch with Wharf's
    middleware left out, and nothing else changed (argv order, `--shutdown-timeout`, the
    environment the launcher adds). Raises ValueError if the launch has no Wharf middleware."""
    args = list(worker.args)
    for index in range(len(args) - 1):
        if args[index] == "--middleware" and args[index + 1] == MIDDLEWARE:
            del args[index : index + 2]
            return EngineLaunch(
                args=tuple(args), env=dict(worker.env), kill_timeout_s=worker.kill_timeout_s
            )
    raise ValueError(f"the worker's launch has no --middleware {MIDDLEWARE}: {worker.args}")


def engine_figures(before: str, after: str) -> dict[str, float]:
    """How the engine ran during a cell, from its `/metrics` read before and after it: the mean
    of each of `ENGINE_MEANS` over the requests (or steps) of the cell; NaN when the engine
    did not report that histogram or nothing was observed in between."""
    figures: dict[str, float] = {}
    for key, histogram, scale in ENGINE_MEANS:
        values = [
            metric_value(text, f"{histogram}{suffix}")
            for text in (before, after)
            for suffix in ("_sum", "_count")
        ]
        sum_before, count_before, sum_after, count_after = values
        if sum_before is None or count_before is None or sum_after is None or count_after is None:
            figures[key] = math.nan
            continue
        count = count_after - count_before
        figures[key] = scale * (sum_after - sum_before) / count if count > 0 else math.nan
    return figures


def process_role(pid: int, root: int, title: str) -> str:
    """Which part of a vLLM server a process of its tree is, from its title (`cmdline`)."""
    if pid == root:
        return "api_server"
    return next((role for prefix, role in PROCESS_ROLES if title.startswith(prefix)), "other")


def cpu_shares(
    before: Mapping[str, float], after: Mapping[str, float], wall: float
) -> dict[str, float]:
    """CPU each role used during a cell, in cores (CPU seconds over the cell's wall seconds); a
    role seen at only one end is left out."""
    return {
        f"cpu_{role}": (after[role] - before[role]) / wall
        for role in sorted(before.keys() & after.keys())
    }


def _tree(root: int) -> dict[int, str]:
    """The live processes under `root` (itself included) and their titles."""
    titles: dict[int, str] = {}
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            titles[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    return titles


def cpu_seconds(server: Server) -> dict[str, float]:
    """CPU seconds so far of the engine's processes by role, of the gateway when the row has
    one, and of this process (the clients)."""
    seconds: dict[str, float] = {}
    for pid, title in _tree(server.engine_pid).items():
        role = process_role(pid, server.engine_pid, title)
        seconds[role] = seconds.get(role, 0.0) + (process_cpu_seconds(pid) or 0.0)
    if server.proc.pid != server.engine_pid:
        seconds["gateway"] = process_cpu_seconds(server.proc.pid) or 0.0
    seconds["clients"] = process_cpu_seconds(os.getpid()) or 0.0
    return seconds


def start(
    name: str, command: list[str], port: int, log: Path, env: Mapping[str, str],
    engine: Server | None = None,
) -> Server:  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            # The engines go down with the benchmark if it is killed (an idle CPU engine spins).
            preexec_fn=die_with_parent,
        )
    if engine is None:
        return Server(name, port, proc, log, f"http://127.0.0.1:{port}/metrics", proc.pid)
    return Server(name, port, proc, log, engine.metrics_url, engine.engine_pid)


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


async def one_stream(client: httpx.AsyncClient, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first content chunk, seconds to the end, completion tokens) of one
    streamed chat."""
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
    done = time.perf_counter() - sent
    return (first if first is not None else float("nan")), done, tokens


async def scrape(url: str) -> str:
    # A client of its own: the cell's pool holds exactly its C connections to the server.
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.text


async def cell(
    server: Server, concurrency: int, duration: float, max_tokens: int
) -> dict[str, float]:
    ttfts: list[float] = []
    durations: list[float] = []
    tokens = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=300, limits=limits) as client:
        await one_stream(client, 4)  # warm the connection and the engine
        before = await scrape(server.metrics_url)
        cpu_before = cpu_seconds(server)
        end = time.perf_counter() + duration
        started = time.perf_counter()

        async def loop() -> None:
            nonlocal tokens
            while time.perf_counter() < end:
                ttft, took, count = await one_stream(client, max_tokens)
                ttfts.append(ttft)
                durations.append(took)
                tokens += count

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu_after = cpu_seconds(server)
    after = await scrape(server.metrics_url)
    return {
        "output_tokens_per_s": tokens / wall,
        "ttft_median_ms": statistics.median(ttfts) * 1000,
        "request_median_ms": statistics.median(durations) * 1000,
        "requests": float(len(ttfts)),
        **engine_figures(before, after),
        **cpu_shares(cpu_before, cpu_after, wall),
    }


def cell_order(round_index: int) -> tuple[str, ...]:
    """The rows in the order a round measures them: rotated by one each round."""
    shift = round_index % len(NAMES)
    return NAMES[shift:] + NAMES[:shift]


def summarize(results: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, Any]:
    """Medians over rounds of every figure a server has in all its rounds, and Wharf's cost
    against vLLM in % (positive: Wharf slower)."""
    summary: dict[str, Any] = {}
    for name, rounds in results.items():
        keys = sorted(set.intersection(*(set(r) for r in rounds))) if rounds else []
        summary[name] = {key: statistics.median(r[key] for r in rounds) for key in keys}
    tps_v, ttft_v = summary["vllm"]["output_tokens_per_s"], summary["vllm"]["ttft_median_ms"]
    summary["overhead_pct"] = {
        name: {
            "output_tokens_per_s": 100 * (tps_v - summary[name]["output_tokens_per_s"]) / tps_v,
            "ttft_median_ms": 100 * (summary[name]["ttft_median_ms"] - ttft_v) / ttft_v,
        }
        for name in NAMES[1:]
    }
    return summary


def print_table(summary: Mapping[str, Any]) -> None:
    print(
        "| server | output tokens/s | median TTFT (ms) | tokens/s cost | TTFT cost "
        "| tokens per engine step | vLLM's TTFT (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
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
            f"{figures['ttft_median_ms']:.1f} | {costs} | "
            f"{figures.get('tokens_per_step', math.nan):.2f} | "
            f"{figures.get('engine_ttft_ms', math.nan):.1f} |"
        )
    print("costs against vllm: positive = Wharf slower")


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
    vllm_port, wharf_port, router_port = quiet_port(), quiet_port(), quiet_port()
    environment = {**os.environ, **ENGINE_ENV}
    # The bare row's launch is decided by the worker's own code, as its CLI would for that port.
    options, _ = parse_command_line(worker_arguments(model, vllm_port))
    bare = bare_vllm_launch(build_launch(options))
    bare_command = [python, *bare.args]
    worker = [sys.executable, "-m", "wharf_llm_worker.cli", *worker_arguments(model, wharf_port)]
    router = [
        sys.executable, "-m", "wharf_router.cli", "gateway", "--host", "127.0.0.1",
        "--port", str(router_port), "--endpoint", f"http://127.0.0.1:{wharf_port}=both",
    ]  # fmt: skip
    servers = {
        "vllm": start(
            "vllm", bare_command, vllm_port, workdir / "vllm.log", process_env(bare, environment)
        ),
        "wharf": start("wharf", worker, wharf_port, workdir / "wharf.log", environment),
    }
    print(f"logs: {workdir}", file=sys.stderr)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
    load_at_start = os.getloadavg()
    try:
        for server in servers.values():
            wait_ready(server)
        for round_index in range(args.rounds):
            for name in cell_order(round_index):
                time.sleep(SETTLE_S)
                measured = servers.get(name)
                gateway: Server | None = None
                if measured is None:
                    # Up only for its own cells: its /metrics scrapes of the worker (every
                    # 0.2 s) would otherwise run during the other rows' cells too.
                    log = workdir / f"wharf+router-{round_index + 1}.log"
                    engine = servers["wharf"]
                    gateway = measured = start(name, router, router_port, log, environment, engine)
                try:
                    # The gateway's /health is 200 once it has seen its pod healthy.
                    wait_ready(measured)
                    figures = asyncio.run(
                        cell(measured, args.concurrency, args.duration, args.max_tokens)
                    )
                finally:
                    if gateway is not None:
                        stop(gateway)
                results[name].append(figures)
                print(f"round {round_index + 1} {name}: {figures}", file=sys.stderr)
    finally:
        for server in servers.values():
            stop(server)

    summary = summarize(results)
    summary["settings"] = {
        **vars(args),
        "json": str(args.json),
        "load_at_start": load_at_start,
        "load_at_end": os.getloadavg(),
        # What each row ran: the bare server's argv and the variables the launcher added (the
        # worker's are the same but for the middleware and the port).
        "vllm_command": bare_command,
        "launcher_env": bare.env,
        "logs": str(workdir),
    }
    summary["rounds"] = results
    print_table(summary)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
