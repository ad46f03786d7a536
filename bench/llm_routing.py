"""LLM routing benchmark: Wharf's gateway against sglang-router and vllm-router on a simulated
fleet of 8 vLLM pods, with a placement oracle as the reference.

The fleet is `wharf-engine-sim` (docs/enginesim.md): 8 pods in one process, calibrated on
llm-d's Qwen3-32B/H100 benchmark, with a third of that KV cache per pod (6,000 blocks of 16
tokens) so that, as in llm-d's run, the shared prompts of all groups fill a pod's cache on their own. On
that same fleet, one after another, with the same requests:

- `oracle` — no proxy: every request of a prompt group goes straight to the pod `group % 8`
  (the control workload: pods in turn),
- `wharf-round-robin`, `wharf-least-load`, `wharf-default` — `wharf-router gateway --policy ...`,
- `wharf-default-x2` — two `wharf-router gateway --policy default` replicas side by side, peers
  of each other (`--peer-listen`/`--peer`: each tells the other its placements and per-pod load,
  docs/router.md), the requests sent to them in turn (so a session's turns alternate between
  replicas: the worst case for a replicated gateway); `wharf-default-x2-nopeers` (only when
  named in `--systems`): the same two without the exchange, each knowing only its own requests,
- `sglang-router` — `sglang-router launch --policy cache_aware` (PyPI `sglang-router`),
- `vllm-router` — `vllm-router --policy cache_aware` (PyPI `vllm-router`),

the two peers each in its own virtual environment under ~/.cache/wharf/bench (bench/tooling.py).

Workloads (chat completions, streamed, `stream_options.include_usage`):

- `shared-prefix`: G groups, each with its own long system prompt; each group's users hold
  multi-turn sessions (turn k+1 sends the whole conversation so far, answers included, plus a new
  question). Arrivals are Poisson; an arrival continues an idle session or starts a new one. Every
  request carries `x-session-id` (routers that do not use it ignore it).
- `random`: the control. Prompts of the same length with nothing shared.

For each QPS step the pods' prefix caches are emptied (`POST /reset_prefix_cache`) and the prompts
are new (the step's seed), so no router's memory of an earlier step helps. A system whose TTFT
p90 passes `--saturated-s` (simulated) is not run at the higher steps. Per step: TTFT p50/p90
(to the first streamed token, measured by the client), output tokens/s, requests that failed or
timed out, and the pods' prefix-cache hit rate (Δ`vllm:prefix_cache_hits_total` /
Δ`vllm:prefix_cache_queries_total` over all pods). Times are simulated: the pods run at
`--time-scale` real seconds per simulated second, so QPS in the tables is simulated QPS (real
QPS x time scale) and TTFT is real TTFT / time scale.

Then, unless `--no-overhead`: router overhead against an instant upstream (bench/router_overhead.py).

Run: `uv run python bench/llm_routing.py [--quick] [--systems a,b] [--qps 8,16,32]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import random
import secrets
import signal
import string
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tooling import (
    CACHE_DIR,
    SGLANG_ROUTER_VERSION,
    VLLM_ROUTER_VERSION,
    dev_version,
    ensure_sglang_router_venv,
    ensure_vllm_router_venv,
    free_port,
    markdown_table,
    percentile,
    serving,
    sglang_router_argv,
    vllm_router_argv,
)

from wharf_e2e.enginesim.fleet import SimFleet, metric, parse_metrics

MODEL = "sim-model"
PODS = 8
POD_BLOCKS = 6_000
SYSTEMS = (
    "oracle",
    "wharf-round-robin",
    "wharf-least-load",
    "wharf-default",
    "wharf-default-x2",
    "sglang-router",
    "vllm-router",
)
WHARF_ROUTER = Path(sys.executable).with_name("wharf-router")
# a system named `<system>-x2` runs two replicas of `<system>`, peers of each other;
# `<system>-x2-nopeers`, two that do not exchange
REPLICATED = "-x2"
NO_PEERS = "-nopeers"
KNOWN_SYSTEMS = (*SYSTEMS, "wharf-default-x2-nopeers")


# ---------------------------------------------------------------------------------------------
# Workload


@dataclass(frozen=True)
class Shape:
    groups: int
    users: int  # sessions per group before a group's sessions are reused
    turns: int
    system_tokens: int
    question_tokens: int
    output_tokens: int


def _vocabulary(size: int = 8192) -> list[str]:
    rng = random.Random("vocabulary")
    letters = string.ascii_lowercase
    return ["".join(rng.choices(letters, k=rng.randint(3, 8))) for _ in range(size)]


VOCABULARY = _vocabulary()


def words(rng: random.Random, n: int) -> str:
    """n tokens of the simulator's tokenizer (words of 3-8 letters; one token each)."""
    return " ".join(rng.choices(VOCABULARY, k=n))


@dataclass
class Session:
    sid: str
    group: int
    messages: list[dict[str, str]]
    turns_left: int
    busy: bool = False


class Workload:
    """The requests of one step: which group, which messages; pure apart from its own RNG."""

    def __init__(self, kind: str, shape: Shape, seed: int) -> None:
        self.kind = kind
        self.shape = shape
        self.rng = random.Random(seed)
        self.seed = seed
        self.systems = [
            words(random.Random(f"{seed}-system-{g}"), shape.system_tokens)
            for g in range(shape.groups)
        ]
        self.sessions: list[Session] = []
        self.counter = 0

    def next(self) -> Session:
        self.counter += 1
        s = self.shape
        if self.kind == "random":
            prompt = words(self.rng, s.system_tokens + s.question_tokens)
            return Session(f"{self.seed}-r{self.counter}", self.counter, [
                {"role": "user", "content": prompt}], turns_left=1)  # fmt: skip
        idle = [x for x in self.sessions if not x.busy and x.turns_left > 0]
        if idle and (len(self.sessions) >= s.groups * s.users or self.rng.random() < 0.7):
            session = self.rng.choice(idle)
        else:
            group = self.rng.randrange(s.groups)
            session = Session(f"{self.seed}-s{self.counter}", group,
                              [{"role": "system", "content": self.systems[group]}],
                              turns_left=s.turns)  # fmt: skip
            self.sessions.append(session)
        session.messages.append({"role": "user", "content": words(self.rng, s.question_tokens)})
        return session


# ---------------------------------------------------------------------------------------------
# Load generator


@dataclass
class Outcome:
    ok: bool
    ttft_s: float | None = None  # real seconds
    output_tokens: int = 0
    done_at: float = 0.0
    error: str = ""


async def one_request(
    client: httpx.AsyncClient, url: str, session: Session, shape: Shape, timeout_s: float
) -> Outcome:
    body = {
        "model": MODEL,
        "messages": session.messages,
        "max_tokens": shape.output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.monotonic()
    out = Outcome(ok=False)
    answer: list[str] = []
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                                     headers={"x-session-id": session.sid}) as response:  # fmt: skip
                if response.status_code != 200:
                    out.error = f"HTTP {response.status_code}"
                    return out
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text and out.ttft_s is None:
                            out.ttft_s = time.monotonic() - start
                        answer.append(text)
                    if chunk.get("usage"):
                        out.output_tokens = chunk["usage"]["completion_tokens"]
        out.ok = out.ttft_s is not None
        if not out.ok:
            out.error = "no token"
    except TimeoutError:
        out.error = "timeout"
    except httpx.HTTPError as exc:
        out.error = type(exc).__name__
    finally:
        out.done_at = time.monotonic()
        if out.ok:
            session.messages.append({"role": "assistant", "content": "".join(answer)})
            session.turns_left -= 1
        else:
            session.turns_left = 0  # a broken conversation is not continued
        session.busy = False
    return out


async def drive(
    target: Callable[[Session], str],
    workload: Workload,
    real_qps: float,
    duration_s: float,
    timeout_s: float,
) -> tuple[list[Outcome], float]:
    """Poisson arrivals at `real_qps` for `duration_s`; waits for the answers (each at most
    `timeout_s`). Returns the outcomes and the real seconds from the first send to the last
    answer."""
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=512)
    timeout = httpx.Timeout(timeout_s, connect=10.0)
    arrivals = random.Random(workload.seed + 1)
    tasks: list[asyncio.Task[Outcome]] = []
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.monotonic()
        at = 0.0
        while True:
            at += arrivals.expovariate(real_qps)
            if at > duration_s:
                break
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            session = workload.next()
            session.busy = True
            url = target(session)
            tasks.append(asyncio.create_task(
                one_request(client, url, session, workload.shape, timeout_s)))  # fmt: skip
        outcomes = list(await asyncio.gather(*tasks))
    end = max((o.done_at for o in outcomes), default=time.monotonic())
    return outcomes, end - start


# ---------------------------------------------------------------------------------------------
# Systems


def gateway_argv(policy: str, port: int, pods: Sequence[str]) -> list[str]:
    argv = [str(WHARF_ROUTER), "gateway", "--host", "127.0.0.1", "--port", str(port),
            "--policy", policy, "--log-level", "warning"]  # fmt: skip
    for url in pods:
        argv += ["--endpoint", url]
    return argv


def router_argv(system: str, port: int, pods: Sequence[str]) -> list[str]:
    if system.startswith("wharf-"):
        return gateway_argv(system.removeprefix("wharf-"), port, pods)
    metrics_port = free_port()
    if system == "sglang-router":
        return sglang_router_argv(port, metrics_port, pods)
    if system == "vllm-router":
        return vllm_router_argv(port, metrics_port, pods)
    raise ValueError(f"unknown system {system!r}")


@contextmanager
def system_target(
    system: str, kind: str, pods: Sequence[str], logs: Path
) -> Iterator[Callable[[Session], str]]:
    """Where each request of `system` goes: a pod (the oracle) or the router it starts."""
    if system == "oracle":
        yield lambda s: pods[s.group % len(pods)]
        return
    if system.removesuffix(NO_PEERS).endswith(REPLICATED):
        # Replicas behind a load balancer that spreads requests, not sessions.
        single = system.removesuffix(NO_PEERS).removesuffix(REPLICATED)
        peered = not system.endswith(NO_PEERS)
        peer_ports = [free_port(), free_port()]
        logs.mkdir(parents=True, exist_ok=True)
        token = logs / "peer-token"
        with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        with ExitStack() as stack:
            urls = []
            for i in range(2):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                argv = router_argv(single, port, pods)
                if peered:
                    argv += ["--peer-listen", f"127.0.0.1:{peer_ports[i]}",
                             "--peer", f"http://127.0.0.1:{peer_ports[1 - i]}",
                             "--peer-token-file", str(token), "--peer-name", f"replica-{i}"]  # fmt: skip
                stack.enter_context(serving(argv, f"{url}/health", logs / f"{system}-{i}.log"))
                urls.append(url)
            turn = itertools.count()
            yield lambda s: urls[next(turn) % len(urls)]
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(router_argv(system, port, pods), f"{url}/health", logs / f"{system}.log"):
        yield lambda s: url


# ---------------------------------------------------------------------------------------------
# Pods


def scrape_all(pods: Sequence[str]) -> list[dict[str, float]]:
    with httpx.Client(timeout=10.0) as client:
        return [parse_metrics(client.get(f"{u}/metrics").text) for u in pods]


def hit_rate(before: list[dict[str, float]], after: list[dict[str, float]]) -> float:
    hits = sum(metric(a, "vllm:prefix_cache_hits_total") - metric(b, "vllm:prefix_cache_hits_total")
               for b, a in zip(before, after, strict=True))  # fmt: skip
    queries = sum(
        metric(a, "vllm:prefix_cache_queries_total") - metric(b, "vllm:prefix_cache_queries_total")
        for b, a in zip(before, after, strict=True)
    )
    return hits / queries if queries else 0.0


def pod_ttft_mean(before: list[dict[str, float]], after: list[dict[str, float]]) -> float:
    def total(name: str) -> float:
        return sum(metric(a, name) - metric(b, name) for b, a in zip(before, after, strict=True))

    count = total("vllm:time_to_first_token_seconds_count")
    return total("vllm:time_to_first_token_seconds_sum") / count if count else 0.0


def quiesce(pods: Sequence[str], timeout_s: float = 120.0) -> None:
    """Wait until no pod runs or queues a request, then empty every prefix cache."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            values = [parse_metrics(client.get(f"{u}/metrics").text) for u in pods]
            busy = sum(metric(v, "vllm:num_requests_running") + metric(v, "vllm:num_requests_waiting")
                       for v in values)  # fmt: skip
            if busy == 0:
                break
            time.sleep(0.5)
        for u in pods:
            client.post(f"{u}/reset_prefix_cache").raise_for_status()


# ---------------------------------------------------------------------------------------------
# One step, one system


@dataclass
class Step:
    system: str
    workload: str
    qps: float  # simulated
    requests: int = 0
    failed: int = 0
    ttft_p50_s: float | None = None  # simulated
    ttft_p90_s: float | None = None
    output_tok_s: float = 0.0  # simulated
    hit_rate: float = 0.0
    pod_ttft_mean_s: float = 0.0  # the pods' own TTFT histogram: simulated, no proxy, no CPU noise
    errors: dict[str, int] = field(default_factory=dict)
    skipped: str = ""


def run_step(
    system: str,
    kind: str,
    qps: float,
    step_index: int,
    shape: Shape,
    pods: Sequence[str],
    args: argparse.Namespace,
    logs: Path,
) -> Step:
    scale = args.time_scale
    quiesce(pods)
    workload = Workload(kind, shape, seed=1000 * (step_index + 1) + (7 if kind == "random" else 0))
    before = scrape_all(pods)
    with system_target(system, kind, pods, logs) as target:
        if system == "oracle" and kind == "random":
            turn = iter(range(10**9))
            target = lambda s: pods[next(turn) % len(pods)]  # noqa: E731
        outcomes, wall = asyncio.run(
            drive(target, workload, qps / scale, args.step_seconds, args.request_timeout)
        )
    after = scrape_all(pods)
    step = Step(system, kind, qps, requests=len(outcomes))
    ttfts = [o.ttft_s / scale for o in outcomes if o.ok and o.ttft_s is not None]
    step.failed = len(outcomes) - len(ttfts)
    for o in outcomes:
        if not o.ok:
            step.errors[o.error] = step.errors.get(o.error, 0) + 1
    # A request that failed or timed out counts as slower than every answered one.
    ranked = sorted(ttfts) + [math.inf] * step.failed
    if len(ranked) >= 2:
        step.ttft_p50_s = _pct(ranked, 50)
        step.ttft_p90_s = _pct(ranked, 90)
    step.output_tok_s = sum(o.output_tokens for o in outcomes) / (wall / scale) if wall else 0.0
    step.hit_rate = hit_rate(before, after)
    step.pod_ttft_mean_s = pod_ttft_mean(before, after)
    return step


def _pct(ranked: list[float], q: int) -> float:
    if any(math.isinf(v) for v in ranked):
        index = min(len(ranked) - 1, math.ceil(q / 100 * len(ranked)) - 1)
        return ranked[index]
    return percentile(ranked, q)


# ---------------------------------------------------------------------------------------------
# Report


def fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return "timeout" if math.isinf(v) else f"{v:.3f}"


def table(steps: list[Step], kind: str) -> str:
    oracle = {s.qps: s for s in steps if s.system == "oracle" and s.workload == kind}
    rows = []
    for s in steps:
        if s.workload != kind:
            continue
        if s.skipped:
            rows.append([s.system, f"{s.qps:g}", "-", "-", "-", "-", "-", "-", "-", "-", s.skipped])
            continue
        o = oracle.get(s.qps)
        ratio_hit = f"{s.hit_rate / o.hit_rate:.2f}" if o and o.hit_rate else "-"
        ratio_p90 = (f"{s.ttft_p90_s / o.ttft_p90_s:.2f}"
                     if o and o.ttft_p90_s and s.ttft_p90_s is not None else "-")  # fmt: skip
        rows.append([s.system, f"{s.qps:g}", str(s.requests), fmt_s(s.ttft_p50_s),
                     fmt_s(s.ttft_p90_s), ratio_p90, f"{s.pod_ttft_mean_s:.3f}",
                     f"{s.output_tok_s:,.0f}",
                     f"{s.hit_rate:.1%}", ratio_hit,
                     ", ".join(f"{k}: {v}" for k, v in s.errors.items())])  # fmt: skip
    head = ["system", "QPS", "requests", "TTFT p50 s", "TTFT p90 s", "p90 / oracle",
            "pods' TTFT mean s", "output tok/s", "pod hit rate", "hit / oracle", "failed"]  # fmt: skip
    return markdown_table(head, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter steps (about 15 minutes)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    p.add_argument("--qps", help="simulated QPS ladder of the shared-prefix workload")
    p.add_argument("--control-qps", help="simulated QPS ladder of the random control")
    p.add_argument("--step-seconds", type=float, help="real seconds of arrivals per step")
    p.add_argument("--time-scale", type=float, default=4.0,
                   help="real seconds per simulated second (pods and arrivals)")  # fmt: skip
    p.add_argument("--request-timeout", type=float, default=60.0, help="real seconds")
    p.add_argument("--saturated-s", type=float, default=10.0,
                   help="TTFT p90 (simulated s) past which a system skips higher steps")  # fmt: skip
    p.add_argument("--groups", type=int, default=16)
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--system-tokens", type=int, default=6000)
    p.add_argument("--question-tokens", type=int, default=1200)
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--no-overhead", action="store_true", help="skip the router overhead part")
    p.add_argument("--json", type=Path, help="where to write the results (JSON)")
    args = p.parse_args(argv)
    quick = args.quick
    args.qps = [
        float(x) for x in (args.qps or ("8,32,64" if quick else "8,16,32,48,64,80")).split(",")
    ]
    # `--control-qps ""` runs no control step
    control = args.control_qps if args.control_qps is not None else ("16" if quick else "8,16")
    args.control_qps = [float(x) for x in control.split(",") if x]
    args.step_seconds = args.step_seconds or (20.0 if quick else 40.0)
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = set(args.systems) - set(KNOWN_SYSTEMS)
    if unknown:
        p.error(f"--systems: unknown {sorted(unknown)}; known: {', '.join(KNOWN_SYSTEMS)}")
    return args


def machine() -> dict[str, Any]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}  # fmt: skip


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds: routers and pods are stopped


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    started = datetime.now(UTC)
    shape = Shape(args.groups, args.users, args.turns, args.system_tokens,
                  args.question_tokens, args.output_tokens)  # fmt: skip
    if "sglang-router" in args.systems:
        ensure_sglang_router_venv()
    if "vllm-router" in args.systems or not args.no_overhead:
        ensure_vllm_router_venv()
    logs = CACHE_DIR / "logs" / f"llm_routing-{started:%Y%m%dT%H%M%SZ}"
    sim_args = ["--num-gpu-blocks", str(POD_BLOCKS), "--time-scale", str(args.time_scale),
                "--stream-interval", "16", "--model", MODEL]  # fmt: skip
    steps: list[Step] = []
    print(f"logs: {logs}", flush=True)
    with SimFleet(PODS, sim_args, log=_log(logs, "pods.log")) as fleet:
        for kind, ladder in (("shared-prefix", args.qps), ("random", args.control_qps)):
            saturated: dict[str, str] = {}
            # Step by step, every system in turn: on a shared machine the systems compared at one
            # step are measured minutes apart, not a whole ladder apart.
            for i, qps in enumerate(ladder):
                for system in args.systems:
                    if system in saturated:
                        steps.append(Step(system, kind, qps, skipped=saturated[system]))
                        continue
                    step = run_step(system, kind, qps, i, shape, fleet.urls, args, logs)
                    steps.append(step)
                    print(f"{kind:13} {system:18} qps {qps:4g}: p50 {fmt_s(step.ttft_p50_s)} "
                          f"p90 {fmt_s(step.ttft_p90_s)} pods' mean {step.pod_ttft_mean_s:.3f} "
                          f"hit {step.hit_rate:.1%} tok/s {step.output_tok_s:,.0f} "
                          f"failed {step.failed}/{step.requests}", flush=True)  # fmt: skip
                    p90 = step.ttft_p90_s
                    if p90 is None or p90 > args.saturated_s:
                        saturated[system] = f"saturated at {qps:g} QPS"
    overhead: dict[str, Any] | None = None
    if not args.no_overhead:
        import router_overhead

        overhead = router_overhead.measure(duration_s=3.0 if args.quick else 5.0, logs=logs)
    report = {
        "started": started.isoformat(),
        "command": " ".join(["uv run python bench/llm_routing.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "versions": {
            "wharf-router": dev_version("wharf-router"),
            "sglang-router": SGLANG_ROUTER_VERSION,
            "vllm-router": VLLM_ROUTER_VERSION,
        },
        "shape": asdict(shape),
        "pods": {"count": PODS, "num_gpu_blocks": POD_BLOCKS, "time_scale": args.time_scale},
        "steps": [asdict(s) for s in steps],
        "overhead": overhead,
    }
    print("\n## shared-prefix\n\n" + table(steps, "shared-prefix"))
    print("\n## random (control)\n\n" + table(steps, "random"))
    if overhead:
        import router_overhead

        print("\n## router overhead\n\n" + router_overhead.table(overhead))
    out = args.json or CACHE_DIR / "results" / f"llm_routing-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresults: {out}")
    return 0


def _log(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


if __name__ == "__main__":
    sys.exit(main())
