"""What the LLM worker costs: `wharf-llm-worker --role both`, alone and behind
`wharf-router gateway`, against vLLM's own server started the same way.

Both engines serve the tiny Llama of the tests (`wharf_e2e.tinyllm`, built here; `--model
small` builds a larger one of the same kind, whose first token takes as long as a real model's
on a GPU, where the tiny one's takes a few milliseconds) from the same engine environment (`scripts/install-llm-engine`). The `wharf` row is the worker's real command
line, which execs vLLM's server. The `vllm` row is that same launch without Wharf's middleware:
the argv and environment the worker's launcher builds (`build_launch`, what `wharf-llm-worker
--dry-run` prints; `--shutdown-timeout` and the worker's variables included), minus `--middleware
wharf_llm_worker.middleware.WharfMiddleware`, started directly with the engine's python. So the
two rows differ by exactly what Wharf puts on the token path. The third row, `wharf+router`, is
the same Wharf worker reached through a gateway process in front of it (`--endpoint URL=both`):
what a client of an LLMInferenceService with a router pays. The gateway runs only for its own
cells (started before, stopped after them), since it scrapes the worker's `/metrics` (once a
second for a lone pod, `--lone-scrape-interval`). The fourth row, `vllm+relay`, is the floor
of that hop: vLLM's own server behind `tcp_relay.py`, a uvloop process that moves the bytes
both ways and does nothing else. What `wharf+router` costs over `vllm+relay` is what the
worker and the gateway add on top of any proxy hop in Python on this machine.

Where Wharf costs anything, it costs CPU in the API server's process (the middleware runs there)
and in the gateway's. So every cell reads, from /proc, the CPU seconds each process used
(`api_server`, vLLM's `engine_core` and model `worker`, the `gateway` (the relay in the
`vllm+relay` row), this process's `clients`)
and divides them by the cell's output tokens and requests: the middleware's share is the API
server's CPU per token with Wharf minus without, against the CPU per token of all the server's
processes (the benchmark's clients left out; the proxy rows add their proxy's). On a
shared 2-CPU machine these figures hold still where tokens/s do not: vLLM's engine core and
model worker busy-poll and take most of the machine, and the API server and the clients get
what is left.

Tokens/s and TTFT are measured in many short cells: each round runs every row at every
concurrency (`--concurrency 1,4`), a row's cells back to back, the rows' order rotating each
round, 2 s apart where the engine changes (an idle vLLM engine stops polling a second after its
last step), after an unmeasured cell per server. `--go-file` holds the started, warm servers
until the file exists, so their start need not wait for a quiet machine. Each round
gives a paired ratio per figure (a row's cell over vLLM's of the same round, and the router
row's over the relay's, so slow spells of
the machine cancel out), and the cost is the median of those ratios with a distribution-free
95% interval (order statistics of the binomial; 6 rounds at least). `--placement` decides where
the processes run once started, the same for every row: `split` (default) gives the API
servers, the gateway and the clients the last CPU and vLLM's engine core and model worker the
others (vLLM binds its model worker's OpenMP thread to CPU 0 itself), `front` moves only the API
servers, the gateway and the clients, `float` pins nothing. Nothing about how a row is started
changes with it.

Each cell: C concurrent clients, each sending streamed chat completions (`max_tokens` M,
`ignore_eos`, greedy) back to back for D seconds on its own keep-alive connection. The clients
are `sse_client.py`'s (asyncio streams; JSON parsed only up to the first content and for the
usage), since the run of 2026-12-03 21:07 UTC: httpx's took more CPU per token than the API server on the
CPU the two share, and a proxy's small extra CPU became longer waits for every process there
(`--client httpx`: the runs before). Output tokens/s is the completion tokens
(`usage` of each stream) over the cell's wall time; TTFT is the time from sending a request to
its first content chunk. Around each cell the engine's own `/metrics` are read, to say how the
engine ran: tokens per engine step (`vllm:iteration_tokens_total`; about C when the C streams
are batched together, about 1 when they run one at a time) and vLLM's own TTFT and queue time
(from the request reaching its engine client, after rendering and tokenization).

The `vllm` and `wharf` rows run on two engine processes, and two instances of the same engine
can decode more than the 5% target apart with nothing of Wharf's on that path (their own
decode time per token, from vLLM's `/metrics`, is in the analysis: `engine_decode_ms`). So
the analysis also pairs each proxy row with its own engine reached directly (`same_engine`),
and `--restart-every K` starts fresh engines every K rounds, in the other order each time,
so that the across-engine pairs hold many pairs of instances instead of one (each block's
own cost and decode times: `blocks`).

Run: `uv run python bench/llm_worker.py [--rounds 12] [--budget S] [--duration 4]
[--concurrency 1,4] [--max-tokens 64] [--model tiny|small] [--placement split|front|float]
[--restart-every K] [--json PATH]`;
`--quick` is a smoke run (2 rounds of 1 s cells). `--pool A.json B.json ...` runs nothing and
analyses earlier runs' rounds together, as one run's (more rounds: narrower intervals).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sse_client import ChatStreamClient, median_first_token_s
from tooling import process_cpu_seconds, process_tree

from wharf_e2e.testing import die_with_parent, quiet_port
from wharf_e2e.tinyllm import SMALL, TINY, LlamaShape, build_tiny_llama
from wharf_e2e.vllm_servers import ENGINE_ARGS, ENGINE_ENV, metric_value
from wharf_llm_worker.cli import parse_command_line
from wharf_llm_worker.engine_env import engine_python
from wharf_llm_worker.launch import MIDDLEWARE, EngineLaunch, build_launch, process_env

MODEL = "tiny-llama"
# The model's size: `tiny`, the tests' (a first token in about 7 ms here, a token a
# millisecond: every proxy's fixed cost is large beside it), or `small` (8 layers, hidden 1024:
# a decode step of about 10 ms on one core here, about what a model of a few billion
# parameters takes on a GPU).
SHAPES: dict[str, LlamaShape] = {"tiny": TINY, "small": SMALL}
# vLLM's own server first: the others are measured against it.
# The engines alternate in this order, so that under the rotation every row's first cell
# follows the same pause (`SETTLE_S`) in every round: no row is always or never the first
# after the other engine's cells.
NAMES = ("vllm", "wharf", "vllm+relay", "wharf+router")
# The rows reached through a proxy process (counted as the `gateway` role).
HOP_ROWS = frozenset({"wharf+router", "vllm+relay"})
# (proxied row, the row of the same engine reached directly)
SAME_ENGINE_PAIRS = (("wharf+router", "wharf"), ("vllm+relay", "vllm"))
STARTUP_S = 900.0
# Between cells: vLLM's engine processes keep polling their queues for a second after their
# last step (on the same core as the next engine's, which vLLM binds there too), and the
# next cell should not share the machine with that.
SETTLE_S = 2.0
# Which engine each row's cells run on: the pause is needed only where the engine changes.
ENGINE_OF = {"vllm": "vllm", "wharf": "wharf", "wharf+router": "wharf", "vllm+relay": "vllm"}
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
    # Where the engine's /metrics are: the server's own, or the engine's behind a proxy.
    metrics_url: str
    # The engine's API server: this process, or the engine's behind a proxy (gateway, relay).
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


def cpu_costs(
    before: Mapping[str, float], after: Mapping[str, float], tokens: int, requests: int
) -> dict[str, float]:
    """CPU each role spent during a cell: seconds (`cpu_s_*`, to be summed over rounds), and
    milliseconds per output token and per request; a role seen at only one end is left out,
    and the per-token and per-request figures when the cell had none."""
    costs: dict[str, float] = {}
    for role in sorted(before.keys() & after.keys()):
        used = after[role] - before[role]
        costs[f"cpu_s_{role}"] = used
        if tokens > 0:
            costs[f"cpu_ms_per_token_{role}"] = 1000 * used / tokens
        if requests > 0:
            costs[f"cpu_ms_per_request_{role}"] = 1000 * used / requests
    return costs


# Where each part runs under each `--placement`, on a machine with `cpus` CPUs: "front" is the
# last CPU (vLLM keeps its model worker's OpenMP thread off it: it binds that thread to CPU 0
# and reserves the rest for its engine core), "engine" the others. None: left where it is.
PLACEMENTS = {
    "split": {
        "api_server": "front", "gateway": "front", "clients": "front",
        "engine_core": "engine", "worker": "engine",
    },
    "front": {"api_server": "front", "gateway": "front", "clients": "front"},
    "float": {},
}  # fmt: skip


def placement_cpus(placement: str, role: str, cpus: int) -> frozenset[int] | None:
    """The CPUs a process of `role` is given under `placement` (None: not moved). Nothing is
    moved on a one-CPU machine. Raises ValueError for an unknown placement."""
    if placement not in PLACEMENTS:
        raise ValueError(f"--placement must be one of {sorted(PLACEMENTS)}, not {placement!r}")
    side = PLACEMENTS[placement].get(role)
    if side is None or cpus < 2:
        return None
    return frozenset({cpus - 1}) if side == "front" else frozenset(range(cpus - 1))


def pin_process(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of `pid` on `cpus` (sched_setaffinity acts on one thread; the threads a
    process starts later inherit their creator's)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


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


@contextlib.contextmanager
def stopped_on_failure(servers: Iterable[Server]) -> Iterator[None]:
    """Stops `servers` (read when the block fails) if the block raises: servers started but not
    yet handed to whoever stops them at the end."""
    try:
        yield
    except BaseException:
        for server in servers:
            stop(server)
        raise


def chat_body(max_tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "the router sends requests to the workers"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def one_stream(client: httpx.AsyncClient, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first content chunk, seconds to the end, completion tokens) of one
    streamed chat, through httpx (`--client httpx`, the client of the runs before
    2026-12-03 21:07 UTC)."""
    sent = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream(
        "POST", "/v1/chat/completions", json=chat_body(max_tokens)
    ) as response:
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


class LightClients:
    """`concurrency` light clients (`sse_client.ChatStreamClient`), one connection each."""

    def __init__(self, server: Server, concurrency: int) -> None:
        self.free = [ChatStreamClient("127.0.0.1", server.port) for _ in range(concurrency)]
        self.all = list(self.free)
        self._requests: dict[int, bytes] = {}

    async def one_stream(self, max_tokens: int) -> tuple[float, float, int]:
        # the loops take turns on the free list: nothing awaits between a pop and its append
        client = self.free.pop()
        request = self._requests.get(max_tokens)
        if request is None:
            request = self._requests[max_tokens] = client.request_bytes(chat_body(max_tokens))
        try:
            first, done, tokens = await client.chat(request)
        finally:
            self.free.append(client)
        return (first if first is not None else float("nan")), done, tokens

    async def aclose(self) -> None:
        for client in self.all:
            await client.aclose()


async def scrape(url: str) -> str:
    # A client of its own: the cell's pool holds exactly its C connections to the server.
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.text


async def cell(
    server: Server, concurrency: int, duration: float, max_tokens: int, client_kind: str = "light"
) -> dict[str, float]:
    ttfts: list[float] = []
    durations: list[float] = []
    tokens = 0
    limits = httpx.Limits(max_connections=concurrency)
    light = LightClients(server, concurrency) if client_kind == "light" else None
    async with httpx.AsyncClient(base_url=server.url, timeout=300, limits=limits) as client:

        async def stream(max_tokens: int) -> tuple[float, float, int]:
            if light is not None:
                return await light.one_stream(max_tokens)
            return await one_stream(client, max_tokens)

        try:
            # warm every client's connection (a connection opened in the measured window would
            # count its proxy's accept in a first token) and the engine
            await asyncio.gather(*(stream(4) for _ in range(concurrency)))
            before = await scrape(server.metrics_url)
            cpu_before = cpu_seconds(server)
            end = time.perf_counter() + duration
            started = time.perf_counter()

            async def loop() -> None:
                nonlocal tokens
                while time.perf_counter() < end:
                    ttft, took, count = await stream(max_tokens)
                    ttfts.append(ttft)
                    durations.append(took)
                    tokens += count

            await asyncio.gather(*(loop() for _ in range(concurrency)))
            wall = time.perf_counter() - started
            cpu_after = cpu_seconds(server)
        finally:
            if light is not None:
                await light.aclose()
    after = await scrape(server.metrics_url)
    return {
        "output_tokens_per_s": tokens / wall,
        "ttft_median_ms": median_first_token_s(ttfts) * 1000,
        "streams_without_content": float(sum(1 for t in ttfts if math.isnan(t))),
        "request_median_ms": statistics.median(durations) * 1000,
        "requests": float(len(ttfts)),
        "tokens": float(tokens),
        "wall_s": wall,
        **engine_figures(before, after),
        **cpu_shares(cpu_before, cpu_after, wall),
        **cpu_costs(cpu_before, cpu_after, tokens, len(ttfts)),
    }


def cell_order(round_index: int) -> tuple[str, ...]:
    """The rows in the order a round measures them: rotated by one each round."""
    shift = round_index % len(NAMES)
    return NAMES[shift:] + NAMES[:shift]


def cell_plan(round_index: int, concurrencies: Sequence[int]) -> list[tuple[str, int]]:
    """The cells of a round, in order: the rows rotated by one each round (`cell_order`), each
    row's concurrencies back to back (so the gateway starts once per round), their order
    reversed every other round (so no concurrency always follows the row change)."""
    levels = list(concurrencies) if round_index % 2 == 0 else list(reversed(concurrencies))
    return [(name, level) for name in cell_order(round_index) for level in levels]


def another_round(done: int, most: int, rounds_s: float, left_s: float | None) -> bool:
    """Whether to start another round: below `most` rounds and, with a budget, if one more
    round as long as the mean so far (`rounds_s` over `done`) fits in the `left_s` seconds
    left of it. The first round always runs."""
    if done >= most:
        return False
    if done == 0 or left_s is None:
        return True
    return rounds_s / done <= left_s


def block_of(round_index: int, restart_every: int) -> int:
    """Which block of fresh engines a round runs on: a new one every `restart_every` rounds
    (0: the run's engines throughout)."""
    return round_index // restart_every if restart_every > 0 else 0


def launch_order(block: int) -> tuple[str, str]:
    """The order in which a block starts its two engines: swapped every block, so that neither
    row's engine is always the first one started."""
    return ("vllm", "wharf") if block % 2 == 0 else ("wharf", "vllm")


def block_costs(
    results: Mapping[str, Sequence[Mapping[str, float]]], base: str, other: str
) -> list[dict[str, Any]]:
    """`other`'s paired cost over `base` within each block of fresh engines (the cells'
    `block`), with each block's engine decode time per token for both rows: whether the
    across-engine costs hold from one pair of engine processes to the next. Cells from before
    blocks (no `block`) count as block 0."""
    blocks = sorted({int(cell.get("block", 0.0)) for cell in results[base]})
    out = []
    for block in blocks:
        pairs = [
            (b, o)
            for b, o in zip(results[base], results[other], strict=True)
            if int(b.get("block", 0.0)) == block
        ]
        base_cells, other_cells = [b for b, _ in pairs], [o for _, o in pairs]
        decode = {
            name: statistics.median(values) if (values := engine_decode_ms(cells)) else math.nan
            for name, cells in ((base, base_cells), (other, other_cells))
        }
        out.append(
            {"block": block, "engine_decode_ms": decode, **paired_costs(base_cells, other_cells)}
        )
    return out


def median_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """The median of `values` and a distribution-free interval for it: the k-th smallest and
    k-th largest values, k the largest for which the interval covers the true median with at
    least `confidence` (from the binomial distribution of how many values fall below it); NaN
    ends when there are too few values (fewer than 6 for 95%). `coverage` is the interval's
    exact confidence."""
    ordered = sorted(v for v in values if not math.isnan(v))
    n = len(ordered)
    result = {
        "n": float(n),
        "median": statistics.median(ordered) if ordered else math.nan,
        "low": math.nan,
        "high": math.nan,
        "coverage": math.nan,
    }
    # P(fewer than k of n values fall below the median) for k = 1, 2, ...; the interval
    # [x_k, x_(n+1-k)] misses the median with twice that probability.
    below = 0.0
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) / 2**n
        coverage = 1 - 2 * below
        if coverage < confidence:
            break
        result.update(low=ordered[k - 1], high=ordered[n - k], coverage=coverage)
    return result


# The figures compared round by round, and how a ratio of Wharf's to vLLM's becomes a cost in %
# (positive: Wharf worse): fewer tokens/s, or a longer TTFT.
def _fewer_tokens_pct(ratio: float) -> float:
    return 100 * (1 - ratio)


def _longer_ttft_pct(ratio: float) -> float:
    return 100 * (ratio - 1)


PAIRED: dict[str, Callable[[float], float]] = {
    "output_tokens_per_s": _fewer_tokens_pct,
    "ttft_median_ms": _longer_ttft_pct,
}


def paired_costs(
    base: Sequence[Mapping[str, float]], other: Sequence[Mapping[str, float]]
) -> dict[str, dict[str, Any]]:
    """A row's cost against a base row (vLLM's, or the relay's for the router row) from rounds
    measured side by side: per figure of `PAIRED`, the ratio of each round's cell to the base's
    cell of the same round, and the median of those ratios with its interval
    (`median_interval`), turned into a cost in %: `low`/`high` are the best and worst ends of
    the cost."""
    costs: dict[str, dict[str, Any]] = {}
    for key, to_cost in PAIRED.items():
        ratios = [o[key] / b[key] for b, o in zip(base, other, strict=True) if b[key] > 0]
        interval = median_interval(ratios)
        ends = sorted((to_cost(interval["low"]), to_cost(interval["high"])))
        costs[key] = {
            "n": interval["n"],
            "cost_pct": to_cost(interval["median"]),
            "low_pct": ends[0],
            "high_pct": ends[1],
            "coverage": interval["coverage"],
            "ratios": ratios,
        }
    return costs


ROLES = ("api_server", "engine_core", "worker", "gateway", "clients")
# The server's side of a row: what a deployment runs (the clients are the benchmark's).
SERVER_ROLES = ("api_server", "engine_core", "worker", "other", "gateway")


def cpu_per_token(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """A row's CPU milliseconds per output token and per request, by role, over all its rounds
    (the CPU seconds summed, over the tokens summed: /proc counts in 10 ms ticks, which one
    short cell does not resolve), and `server` for the server's roles together."""
    tokens = sum(r["tokens"] for r in rounds)
    requests = sum(r["requests"] for r in rounds)
    totals: dict[str, float] = {}
    for role in (*ROLES, "other"):
        key = f"cpu_s_{role}"
        if rounds and all(key in r for r in rounds):
            totals[role] = sum(r[key] for r in rounds)
    totals["server"] = sum(v for role, v in totals.items() if role in SERVER_ROLES)
    per: dict[str, float] = {}
    for role, seconds in totals.items():
        if tokens > 0:
            per[f"ms_per_token_{role}"] = 1000 * seconds / tokens
        if requests > 0:
            per[f"ms_per_request_{role}"] = 1000 * seconds / requests
    return per


def wharf_cpu_share(
    vllm: Mapping[str, float], wharf: Mapping[str, float], gateway: bool = False
) -> dict[str, float]:
    """What a row adds in CPU per output token (ms) to vLLM's, from two rows' `cpu_per_token`:
    the API server's difference (Wharf's middleware; with `gateway`, also the proxy's
    /metrics scrapes), plus the gateway process's when the row has one; and that as % of the
    vLLM row's server CPU per token."""
    if "ms_per_token_api_server" not in vllm or "ms_per_token_api_server" not in wharf:
        return {"added_ms_per_token": math.nan, "added_pct": math.nan}  # rounds without CPU
    added = wharf["ms_per_token_api_server"] - vllm["ms_per_token_api_server"]
    if gateway:
        added += wharf.get("ms_per_token_gateway", 0.0)
    return {
        "added_ms_per_token": added,
        "added_pct": 100 * added / vllm["ms_per_token_server"],
    }


TARGET_PCT = 5.0


def verdict(costs: Mapping[str, Mapping[str, Any]], target: float = TARGET_PCT) -> str:
    """Whether the paired costs show Wharf under `target` %: "met" when the worst end of every
    interval is below it, "missed" when the best end of one is at or above it, "not shown"
    otherwise (an interval that straddles the target, or too few rounds for one)."""
    highs = [c["high_pct"] for c in costs.values()]
    lows = [c["low_pct"] for c in costs.values()]
    if any(low >= target for low in lows):
        return "missed"
    if highs and all(high < target for high in highs):  # NaN compares False: not shown
        return "met"
    return "not shown"


def summarize(results: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, Any]:
    """Medians over rounds of every figure a server has in all its rounds, and Wharf's cost
    against vLLM in % (positive: the row slower)."""
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
        if name in summary
    }
    return summary


def analyse(results: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, Any]:
    """Everything one concurrency's rounds show: the medians (`summarize`), the paired costs
    of every row against vLLM's with their verdicts, each row's CPU per token and what it adds,
    and what `wharf+router` costs over the relay's hop (`over_floor`)."""
    analysis = summarize(results)
    # a run from before a row was added lacks it
    cpu = {name: cpu_per_token(results[name]) for name in NAMES if name in results}
    analysis["cpu_per_token"] = cpu
    analysis["paired"] = {}
    for name in NAMES[1:]:
        if name not in results:
            continue
        costs = paired_costs(results["vllm"], results[name])
        analysis["paired"][name] = {
            **costs,
            "verdict": verdict(costs),
            "cpu": wharf_cpu_share(cpu["vllm"], cpu[name], gateway=name in HOP_ROWS),
            "api_server_ms_per_token_diff": paired_differences(
                results["vllm"], results[name], "cpu_ms_per_token_api_server"
            ),
        }
    analysis["engine_decode_ms"] = {
        name: statistics.median(decode) if (decode := engine_decode_ms(results[name])) else math.nan
        for name in NAMES
        if name in results
    }
    # Each proxy row against the row of the same engine without the proxy: these pairs share
    # the engine process, so they hold no difference between two engine instances (`vllm`
    # and `wharf` run on two, and their decode steps can differ by more than the target with
    # nothing of Wharf's on that path: `engine_decode_ms`).
    analysis["same_engine"] = {}
    for proxied, direct in SAME_ENGINE_PAIRS:
        if {proxied, direct} <= results.keys():
            costs = paired_costs(results[direct], results[proxied])
            analysis["same_engine"][proxied] = {"over": direct, **costs, "verdict": verdict(costs)}
    if {"vllm", "wharf"} <= results.keys():
        analysis["blocks"] = block_costs(results, "vllm", "wharf")
    if not {"vllm+relay", "wharf+router"} <= results.keys():
        return analysis
    over = paired_costs(results["vllm+relay"], results["wharf+router"])
    hop_ms = {name: cpu[name].get("ms_per_token_gateway", math.nan) for name in HOP_ROWS}
    analysis["over_floor"] = {
        **over,
        "verdict": verdict(over),
        "gateway_minus_relay_ms_per_token": hop_ms["wharf+router"] - hop_ms["vllm+relay"],
    }
    return analysis


# What must be alike for two runs' rounds to be pooled: the cells measure the same thing.
POOLED_SETTINGS = ("model", "max_tokens", "duration", "client", "concurrency", "placement")


def pool_runs(
    runs: Sequence[tuple[str, Mapping[str, Any]]],
) -> dict[tuple[str, str, int], list[dict[str, float]]]:
    """The rounds of earlier runs (`--json` files, named for errors), as one run's: every row's
    cells in run order, each run's blocks of fresh engines renumbered after the previous run's
    (two runs' engines are never the same processes). Refuses, naming the file and the
    setting, a file that is not a finished run or whose cells were measured otherwise
    (`POOLED_SETTINGS`)."""
    pooled: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    first: tuple[str, Mapping[str, Any]] | None = None
    first_rows: set[str] = set()
    blocks_before = 0
    for name, run in runs:
        if not isinstance(run, Mapping) or "settings" not in run or "rounds" not in run:
            raise ValueError(
                f"{name}: not a finished run of this benchmark (no settings or rounds)"
            )
        settings = run["settings"]
        if first is None:
            first, first_rows = (name, settings), set(run["rounds"])
        for key in POOLED_SETTINGS:
            if settings.get(key) != first[1].get(key):
                raise ValueError(
                    f"{name}: {key} is {settings.get(key)!r}, but {first[0]} has "
                    f"{first[1].get(key)!r}: only runs that measured alike can be pooled"
                )
        if set(run["rounds"]) != first_rows:
            raise ValueError(
                f"{name}: its rows and concurrencies ({', '.join(sorted(run['rounds']))}) are not "
                f"{first[0]}'s: only runs that measured alike can be pooled"
            )
        blocks = 0
        for key, cells in run["rounds"].items():
            placement, _, rest = key.partition(" ")
            row, _, level = rest.rpartition(" c=")
            if row not in NAMES or not level.isdigit():
                raise ValueError(f"{name}: {key!r} is not a row of this benchmark")
            for cell in cells:
                block = int(cell.get("block", 0.0))
                blocks = max(blocks, block + 1)
                pooled.setdefault((placement, row, int(level)), []).append(
                    {**cell, "block": float(blocks_before + block)}
                )
        blocks_before += blocks
    if not any(row == NAMES[0] and cells for (_, row, _), cells in pooled.items()):
        raise ValueError("no rounds of vLLM's own server in these runs: nothing to compare with")
    if missing := sorted(
        {f"{p} {row} c={c}" for p, _, c in pooled for row in NAMES if (p, row, c) not in pooled}
    ):
        raise ValueError(f"these runs have no rounds for {', '.join(missing)}")
    return pooled


def engine_decode_ms(rounds: Sequence[Mapping[str, float]]) -> list[float]:
    """Per cell, the engine's own time per output token after the first: vLLM's mean
    end-to-end latency minus its mean TTFT (both from its /metrics, measured inside the
    engine's server after a request arrived) over the tokens of a request but the first. Wharf
    adds nothing on this path (its middleware sees only a response's first message), so two
    rows on one engine should agree, and rows on two engines show how far apart those run."""
    out = []
    for cell in rounds:
        requests, tokens = cell.get("requests", 0.0), cell.get("tokens", 0.0)
        decode = cell.get("engine_e2e_ms", math.nan) - cell.get("engine_ttft_ms", math.nan)
        if requests and tokens / requests > 1 and not math.isnan(decode):
            out.append(decode / (tokens / requests - 1))
    return out


def paired_differences(
    base: Sequence[Mapping[str, float]], other: Sequence[Mapping[str, float]], key: str
) -> dict[str, float]:
    """`key` of each round's cell minus the base's of the same round: the median difference
    and its interval (`median_interval`); rounds without the figure are left out."""
    return median_interval(
        [o[key] - b[key] for b, o in zip(base, other, strict=True) if key in b and key in o]
    )


def _interval(cost: Mapping[str, float]) -> str:
    if math.isnan(cost["low_pct"]):
        return f"{cost['cost_pct']:+.1f}% (n={cost['n']:.0f}, too few for an interval)"
    return (
        f"{cost['cost_pct']:+.1f}% [{cost['low_pct']:+.1f}, {cost['high_pct']:+.1f}] "
        f"(n={cost['n']:.0f}, {100 * cost['coverage']:.0f}%)"
    )


def _spread(rounds: Sequence[Mapping[str, float]], key: str) -> str:
    values = [r[key] for r in rounds]
    return f"{min(values):.0f}-{max(values):.0f}" if values else "-"


def print_tables(
    analyses: Mapping[tuple[str, int], Mapping[str, Any]],
    results: Mapping[tuple[str, str, int], Sequence[Mapping[str, float]]],
) -> None:
    for (placement, level), analysis in analyses.items():
        print(f"\nplacement {placement}, concurrency {level}")
        print(
            "| server | output tokens/s (median, range) | TTFT ms (median, range) "
            "| tokens/s cost (paired) | TTFT cost (paired) | target "
            "| server CPU ms/token | API server | engine core | worker | gateway or relay "
            "| added |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name in NAMES:
            figures, rounds = analysis[name], results[(placement, name, level)]
            cpu = analysis["cpu_per_token"][name]
            paired = analysis["paired"].get(name)
            costs = (
                f"{_interval(paired['output_tokens_per_s'])} | "
                f"{_interval(paired['ttft_median_ms'])} | {paired['verdict']}"
                if paired
                else "- | - | -"
            )
            added = (
                f"{paired['cpu']['added_ms_per_token']:+.3f} ({paired['cpu']['added_pct']:+.1f}%)"
                if paired
                else "-"
            )
            print(
                f"| {name} | {figures['output_tokens_per_s']:.1f} "
                f"({_spread(rounds, 'output_tokens_per_s')}) | "
                f"{figures['ttft_median_ms']:.1f} ({_spread(rounds, 'ttft_median_ms')}) | "
                f"{costs} | {cpu.get('ms_per_token_server', math.nan):.3f} | "
                + " | ".join(
                    f"{cpu[f'ms_per_token_{role}']:.3f}" if f"ms_per_token_{role}" in cpu else "-"
                    for role in ("api_server", "engine_core", "worker", "gateway")
                )
                + f" | {added} |"
            )
        for name in NAMES[1:]:
            diff = analysis["paired"][name]["api_server_ms_per_token_diff"]
            print(
                f"{name}: API server CPU ms/token minus vllm's, paired by round: "
                f"{diff['median']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"
            )
        decode = analysis["engine_decode_ms"]
        print(
            "engine's own decode ms per token (vLLM's e2e minus its TTFT, median of cells): "
            + ", ".join(f"{name} {value:.3f}" for name, value in decode.items())
        )
        for block in analysis.get("blocks", []) if len(analysis.get("blocks", [])) > 1 else []:
            print(
                f"block {block['block'] + 1} (fresh engines): wharf over vllm, paired: tokens/s "
                f"{_interval(block['output_tokens_per_s'])}, TTFT "
                f"{_interval(block['ttft_median_ms'])}; engine decode ms/token "
                + ", ".join(f"{n} {v:.3f}" for n, v in block["engine_decode_ms"].items())
            )
        for name, pair in analysis["same_engine"].items():
            print(
                f"{name} over {pair['over']} (the same engine), paired: tokens/s "
                f"{_interval(pair['output_tokens_per_s'])}, TTFT "
                f"{_interval(pair['ttft_median_ms'])}, {pair['verdict']}"
            )
        over = analysis["over_floor"]
        print(
            "wharf+router over vllm+relay (the hop's floor), paired: tokens/s "
            f"{_interval(over['output_tokens_per_s'])}, TTFT {_interval(over['ttft_median_ms'])}"
            f", {over['verdict']}; gateway CPU minus the relay's: "
            f"{over['gateway_minus_relay_ms_per_token']:+.3f} ms/token"
        )
    print(
        "costs against vllm, paired by round: median [95% interval]; positive = the row is "
        "worse; CPU in ms per output token over all rounds"
    )


def thread_affinities(servers: Mapping[str, Server]) -> dict[int, set[int]]:
    """The CPUs every thread of the servers' processes and of this one may run on now (to put
    them back between placements: vLLM binds its model worker's OpenMP thread itself)."""
    pids = [pid for server in servers.values() for pid in _tree(server.engine_pid)]
    pids += [s.proc.pid for s in servers.values() if s.proc.pid != s.engine_pid]
    found: dict[int, set[int]] = {}
    for pid in (*pids, os.getpid()):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    found[int(task.name)] = os.sched_getaffinity(int(task.name))
    return found


def apply_placement(
    placement: str, servers: Mapping[str, Server], original: Mapping[int, set[int]]
) -> None:
    """Puts every thread back where it was at the start (`original`), then moves the servers'
    processes and this one (the clients) per `placement`."""
    for tid, where in original.items():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, where)
    cpus = os.cpu_count() or 1
    for server in servers.values():
        for pid, title in _tree(server.engine_pid).items():
            place = placement_cpus(placement, process_role(pid, server.engine_pid, title), cpus)
            if place is not None:
                pin_process(pid, place)
        if server.proc.pid != server.engine_pid:  # a proxy in front of the engine (the relay)
            place = placement_cpus(placement, "gateway", cpus)
            if place is not None:
                pin_process(server.proc.pid, place)
    clients = placement_cpus(placement, "clients", cpus)
    if clients is not None:
        pin_process(os.getpid(), clients)


def hold_and_warm(
    servers: Mapping[str, Server], concurrency: int, args: argparse.Namespace
) -> tuple[tuple[float, float, float], float]:
    """Waits for `--go-file` when there is one, then runs an unmeasured cell per server;
    returns the load average when the measurement begins and the seconds the warm-up took."""
    go_file: Path | None = args.go_file
    if go_file is not None:
        # Started, warm and idle (an idle engine stops polling within a second) until told to
        # measure: the servers' start need not wait for a quiet machine, the cells do.
        print(f"waiting for {go_file}", file=sys.stderr)
        while not go_file.exists():
            time.sleep(1)
    load = os.getloadavg()
    warming = time.monotonic()
    # An engine's first requests after its start are slow (a whole second to the first token
    # in a smoke run), which is not what is measured.
    for server in servers.values():
        asyncio.run(cell(server, concurrency, args.duration, args.max_tokens, args.client))
    return load, time.monotonic() - warming


def restart(
    servers: Mapping[str, Server],
    launch: Callable[[int], dict[str, Server]],
    block: int,
    placement: str,
    levels: Sequence[int],
    args: argparse.Namespace,
) -> tuple[dict[str, Server], dict[int, set[int]]]:
    """Stops `servers` and starts `block`'s fresh ones, placed and warmed as the run's first
    were; returns them and where their threads were before they were placed."""
    for server in servers.values():
        stop(server)
    fresh = launch(block)
    with stopped_on_failure(fresh.values()):  # the caller still holds the stopped ones
        for server in fresh.values():
            wait_ready(server)
        original = thread_affinities(fresh)
        apply_placement(placement, fresh, original)
        for server in fresh.values():  # unmeasured, as at the start
            asyncio.run(cell(server, max(levels), args.duration, args.max_tokens, args.client))
    return fresh, original


def run_round(
    servers: Mapping[str, Server],
    plan: Sequence[tuple[str, int]],
    placement: str,
    gateway_for: Callable[[str, str], Server],
    args: argparse.Namespace,
) -> list[tuple[tuple[str, int], dict[str, float]]]:
    """A round's cells in `plan`'s order, each with its figures: a row without a server of its
    own (the router's) is measured through the gateway `gateway_for` starts, which runs only
    for that row's cells. A pause (`SETTLE_S`) before each cell where the engine changes, and
    before the first (the round before ended on the engine this one starts on)."""
    out: list[tuple[tuple[str, int], dict[str, float]]] = []
    last_engine = ""
    gateway: Server | None = None
    try:
        for name, level in plan:
            if ENGINE_OF[name] != last_engine:
                time.sleep(SETTLE_S)
            last_engine = ENGINE_OF[name]
            measured = servers.get(name)
            if measured is None and gateway is None:
                gateway = gateway_for(name, placement)
            elif measured is not None and gateway is not None:
                stop(gateway)
                gateway = None
            target = measured if measured is not None else gateway
            assert target is not None
            figures = asyncio.run(cell(target, level, args.duration, args.max_tokens, args.client))
            out.append(((name, level), figures))
    finally:
        if gateway is not None:
            stop(gateway)
    return out


def parse_arguments(argv: list[str] | None) -> tuple[argparse.Namespace, list[int], list[str]]:
    """The options, the concurrency levels and the placements."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="most rounds")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for the whole run, the servers' "
        "start included: no round starts that would end past it"
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per cell")
    parser.add_argument(
        "--concurrency", default="1,4", help="concurrent streams per cell, comma-separated"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--model", choices=sorted(SHAPES), default="tiny", help="the size of the model both "
        "engines serve (built here): tiny, the tests' (default), or small (about 100M "
        "parameters, a decode step of about 10 ms on one CPU core)"
    )  # fmt: skip
    parser.add_argument(
        "--client",
        choices=("light", "httpx"),
        default="light",
        help="the benchmark's client: light (sse_client.py, the default since 2026-12-03 "
        "21:07 UTC) or httpx (the runs before)",
    )
    parser.add_argument(
        "--placement", default="split", help="where the processes run once started: "
        f"{', '.join(sorted(PLACEMENTS))}; several, comma-separated, take turns by round"
    )  # fmt: skip
    parser.add_argument(
        "--restart-every", type=int, default=0, metavar="K", help="start fresh engines every K "
        "rounds, in the other order each time (0: the same engines all run long): two engine "
        "processes can run more than the target apart for reasons of their own"
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 1 s cells")
    parser.add_argument(
        "--go-file", type=Path, default=None, help="start the servers, then measure only once "
        "this file exists (to hold a run until the machine is quiet)"
    )  # fmt: skip
    parser.add_argument(
        "--pool", type=Path, nargs="+", default=None, metavar="RUN_JSON", help="run nothing: "
        "analyse the rounds of these earlier runs' --json files together (each run's blocks "
        "of fresh engines kept apart; the runs must have measured alike)"
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 2, 1.0
    try:
        levels = [int(level) for level in args.concurrency.split(",")]
    except ValueError:
        parser.error(f"--concurrency takes numbers separated by commas, not {args.concurrency!r}")
    if not levels or min(levels) < 1:
        parser.error("--concurrency: every level must be at least 1")
    if args.restart_every < 0:
        parser.error("--restart-every must be 0 (never) or a number of rounds")
    placements = args.placement.split(",")
    for placement in placements:
        if placement not in PLACEMENTS:
            parser.error(f"--placement: {placement!r} is not one of {sorted(PLACEMENTS)}")
    return args, levels, placements


def pool_main(files: Sequence[Path], out: Path | None) -> int:
    """`--pool`: earlier runs' rounds analysed and printed as one run's."""
    runs = []
    for path in files:
        try:
            runs.append((str(path), json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            print(f"--pool: {path}: {error}", file=sys.stderr)
            return 2
    try:
        results = pool_runs(runs)
    except ValueError as error:
        print(f"--pool: {error}", file=sys.stderr)
        return 2
    levels = sorted({level for _, _, level in results})
    placements = sorted({placement for placement, _, _ in results})
    analyses = {
        # pool_runs has every row at every placement and level
        (placement, level): analyse({name: results[(placement, name, level)] for name in NAMES})
        for placement in placements
        for level in levels
        if results.get((placement, NAMES[0], level))
    }
    print_tables(analyses, results)
    rounds = len(results[(placements[0], NAMES[0], levels[0])])
    print(f"pooled {len(runs)} runs: {', '.join(map(str, files))}; rounds {rounds}")
    if out is not None:
        summary = {
            "settings": {
                **{key: runs[0][1]["settings"].get(key) for key in POOLED_SETTINGS},
                "pooled": [str(path) for path in files],
                "rounds_done": rounds,
            },
            "analyses": {f"{p} c={c}": a for (p, c), a in analyses.items()},
            "rounds": {f"{p} {n} c={c}": cells for (p, n, c), cells in results.items()},
        }
        out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args, levels, placements = parse_arguments(argv)
    if args.pool:
        return pool_main(args.pool, args.json)
    return run_benchmark(args, levels, placements)


def run_benchmark(args: argparse.Namespace, levels: list[int], placements: list[str]) -> int:
    """Start the servers, run the rounds, print and write what they show."""
    run_start = time.monotonic()
    python = str(engine_python())
    workdir = Path(tempfile.mkdtemp(prefix="wharf-bench-llm-"))
    model = build_tiny_llama(workdir / "model", SHAPES[args.model])
    vllm_port, wharf_port, router_port = quiet_port(), quiet_port(), quiet_port()
    relay_port = quiet_port()
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
    relay = [
        sys.executable, str(Path(__file__).resolve().parent / "tcp_relay.py"),
        "--port", str(relay_port), "--upstream", f"127.0.0.1:{vllm_port}",
    ]  # fmt: skip
    load_at_start = os.getloadavg()
    commands = {
        "vllm": (bare_command, vllm_port, process_env(bare, environment)),
        "wharf": (worker, wharf_port, environment),
    }

    def launch(block: int) -> dict[str, Server]:
        """A block's fresh engines, started in its order (`launch_order`), and the relay."""
        fresh: dict[str, Server] = {}
        with stopped_on_failure(fresh.values()):
            for name in launch_order(block):
                command, port, env = commands[name]
                fresh[name] = start(name, command, port, workdir / f"{name}-{block + 1}.log", env)
            # idle between its cells (it reads nothing on its own), so it stays up all along
            fresh["vllm+relay"] = start(
                "vllm+relay", relay, relay_port, workdir / f"relay-{block + 1}.log", environment,
                fresh["vllm"],
            )  # fmt: skip
        return {name: fresh[name] for name in ("vllm", "wharf", "vllm+relay")}

    print(f"logs: {workdir}", file=sys.stderr)
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {
        (placement, name, level): []
        for placement in placements
        for name in NAMES
        for level in levels
    }
    rounds_done = 0
    block = 0
    servers = launch(block)
    started_s = time.monotonic() - run_start
    try:
        for server in servers.values():
            wait_ready(server)
        # Once started, so that vLLM places its own processes as it always does.
        original = thread_affinities(servers)
        load_at_ready = os.getloadavg()
        startup_s = time.monotonic() - run_start - started_s
        # The first placement before the warm-up, so that no measured cell is the first
        # after its processes moved.
        apply_placement(placements[0], servers, original)
        load_at_go, warm_s = hold_and_warm(servers, max(levels), args)
        # what a restart costs before it is first measured: the start and the warm-up
        startup_s += warm_s
        began = time.monotonic()
        gateway_starts = itertools.count(1)

        def gateway_run(name: str, placement: str) -> Server:
            """The gateway in front of this block's worker, started for the router row's cells
            (its /metrics scrapes of the worker, every second, would otherwise run during the
            other rows' cells too)."""
            log = workdir / f"wharf+router-{next(gateway_starts)}.log"
            gateway = start(name, router, router_port, log, environment, servers["wharf"])
            with stopped_on_failure([gateway]):  # run_round gets only a gateway that is up
                where = placement_cpus(placement, "gateway", os.cpu_count() or 1)
                if where is not None:
                    pin_process(gateway.proc.pid, where)
                # The gateway's /health is 200 once it has seen its pod healthy.
                wait_ready(gateway)
            return gateway

        def left_s() -> float | None:
            return None if args.budget is None else args.budget - (time.monotonic() - run_start)

        while another_round(rounds_done, args.rounds, time.monotonic() - began, left_s()):
            round_index = rounds_done
            if block_of(round_index, args.restart_every) != block:
                # Fresh engines: the two engine processes' own pace (which differs between
                # instances by more than the target) averages out over blocks.
                left = left_s()
                if left is not None and left < startup_s + (time.monotonic() - began) / max(
                    rounds_done, 1
                ):
                    break
                block = block_of(round_index, args.restart_every)
                restarted = time.monotonic()
                servers, original = restart(
                    servers, launch, block, placements[round_index % len(placements)], levels, args
                )
                startup_s = time.monotonic() - restarted
                # to the budget's check again, the restart now in the rounds' mean time: it may
                # have taken longer than foreseen
                continue
            placement = placements[round_index % len(placements)]
            if len(placements) > 1:
                apply_placement(placement, servers, original)
            # Placements take turns by round; each one's rounds rotate as a run's would.
            plan = cell_plan(round_index // len(placements), levels)
            for (name, level), figures in run_round(servers, plan, placement, gateway_run, args):
                figures["block"] = float(block)
                results[(placement, name, level)].append(figures)
                print(
                    f"{time.monotonic() - run_start:.0f} s: "
                    f"round {round_index + 1} (block {block + 1}) {placement} {name} "
                    f"c={level}: {figures['output_tokens_per_s']:.1f} tok/s, "
                    f"TTFT {figures['ttft_median_ms']:.1f} ms",
                    file=sys.stderr,
                )
            rounds_done += 1
            if args.json is not None:
                # The cells so far, in case the run is cut short; replaced by the summary.
                partial = {f"{p} {n} c={c}": r for (p, n, c), r in results.items()}
                args.json.write_text(json.dumps({"partial_rounds": partial}, indent=2) + "\n")
    finally:
        for server in servers.values():
            stop(server)

    analyses = {
        (placement, level): analyse({name: results[(placement, name, level)] for name in NAMES})
        for placement in placements
        for level in levels
        if results[(placement, NAMES[0], level)]
    }
    summary: dict[str, Any] = {
        "settings": {
            **vars(args),
            "json": str(args.json),
            "go_file": str(args.go_file),
            "concurrency": levels,
            "rounds_done": rounds_done,
            "cpus": os.cpu_count(),
            "load_at_start": load_at_start,
            "load_at_ready": load_at_ready,
            "load_at_go": load_at_go,
            "load_at_end": os.getloadavg(),
            # What each row ran: the bare server's argv and the variables the launcher added
            # (the worker's are the same but for the middleware and the port).
            "vllm_command": bare_command,
            "launcher_env": bare.env,
            "logs": str(workdir),
        },
        "analyses": {f"{placement} c={level}": a for (placement, level), a in analyses.items()},
        "rounds": {
            f"{placement} {name} c={level}": rounds
            for (placement, name, level), rounds in results.items()
        },
    }
    print_tables(analyses, results)
    print(
        f"rounds {rounds_done}, model {args.model}, placements {args.placement}, load {load_at_start[0]:.1f} at the "
        f"start, {summary['settings']['load_at_end'][0]:.1f} at the end",
    )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
