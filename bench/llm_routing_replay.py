"""The LLM routing workload replayed in simulated time: no processes, no sockets, no clock.

`bench/llm_routing.py` measures the real gateway against real routers, one QPS step after
another, in real time (about 40 minutes on the development machine, which must be quiet). This
script replays the same workload (the same `Workload`, seeds and arrivals) through the same
engine model (`wharf_e2e.enginesim.engine.Engine`, stepped by a discrete-event loop instead of
asyncio) and the same scheduling code as the gateway (`wharf_router.gateway.scheduling`, its
prefix index, its `Pod` records with their `Lease` counts and `view_of`), in a few seconds per
step, with no noise.
It is the tool for tuning the scheduler; the real benchmark remains the measurement.

What it leaves out: HTTP, the proxies' own time, and the gateway's scrape jitter (the pods'
queue, running and KV metrics are sampled every `--scrape-interval` simulated seconds).

Run: `uv run python bench/llm_routing_replay.py [--systems oracle,wharf-default] [--qps 48,64,80]`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llm_routing import MODEL, POD_BLOCKS, PODS, Session, Shape, Workload

from wharf_e2e.enginesim import tokens as tok
from wharf_e2e.enginesim.engine import Engine, EngineConfig, SimRequest
from wharf_router.gateway.endpoints import Endpoint
from wharf_router.gateway.engine_metrics import EngineMetrics
from wharf_router.gateway.peers import NO_LOAD, Outbox, PeerLoads, decode, encode, merge, rank
from wharf_router.gateway.pool import Lease, Pod, own_load, view_of
from wharf_router.gateway.prefix import (
    DEFAULT_BLOCK_TOKENS,
    DEFAULT_BYTES_PER_TOKEN,
    DEFAULT_MAX_BLOCKS,
    PrefixIndex,
    SessionTable,
    block_hashes,
    prompt_bytes,
)
from wharf_router.gateway.scheduling import (
    PodView,
    Tuning,
    Weights,
    blocks_to_compute,
    least_loaded,
    pick_default,
    pick_round_robin,
)

FULL_LADDER = {"shared-prefix": (8.0, 16.0, 32.0, 48.0, 64.0, 80.0), "random": (8.0, 16.0)}
SYSTEMS = ("oracle", "wharf-round-robin", "wharf-least-load", "wharf-default", "wharf-default-x2",
           "wharf-default-x2-nopeers")  # fmt: skip
# `-x2`: two replicas that exchange placements and load (gateway/peers.py); `-x2-nopeers`: two
# that do not, each knowing only its own requests


@dataclass
class Gateway:
    """One gateway replica's memory: its counts, its prefix index, its sessions."""

    policy: str
    pods: list[Pod]  # the gateway's own records: counts (through leases) and scraped metrics
    outbox: Outbox | None = None  # None: this replica has no peers
    prefix: PrefixIndex = field(default_factory=PrefixIndex)
    sessions: SessionTable = field(default_factory=SessionTable)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    picks: int = 0
    turn: int = 0
    pick_blocks: int = 0  # the last pick's uncached prompt blocks
    peer_loads: PeerLoads = field(default_factory=PeerLoads)

    def choose(
        self, hashes: list[int], session: str, weights: Weights, tuning: Tuning, now: float
    ) -> int:
        if self.policy == "round-robin":
            self.turn += 1
            name = pick_round_robin([PodView(p.name) for p in self.pods], self.turn).name
            index = next(i for i, p in enumerate(self.pods) if p.name == name)
        else:
            session_pod = self.sessions.get(session)
            names = [p.name for p in self.pods]
            matched = self.prefix.match(hashes, names) if hashes else {}
            extra = self.peer_loads.extra(now)
            place = rank(self.outbox.sender, self.peer_loads.peers(now)) if self.outbox else None
            views = [
                view_of(
                    p, matched.get(p.name, 0), p.name == session_pod, extra.get(p.name, NO_LOAD)
                )
                for p in self.pods
            ]
            if self.policy == "least-load":
                view = least_loaded(views, self.rng, place)
            else:
                view = pick_default(views, len(hashes), weights, tuning, self.rng, place)
            index = names.index(view.name)
        self.picks += 1
        chosen = self.pods[index]
        chosen.last_pick = self.picks
        self.pick_blocks = 0
        if self.policy == "default":
            if hashes:
                held = self.prefix.match(hashes, [chosen.name]).get(chosen.name, 0)
                self.pick_blocks = blocks_to_compute(len(hashes), held)
                self.prefix.insert(chosen.name, hashes)
                if self.outbox is not None:
                    self.outbox.placed(chosen.name, hashes)
            self.sessions.set(session, chosen.name)
        return index


@dataclass
class Flight:
    session: Session
    request: SimRequest
    pod: int
    lease: Lease | None  # None for the oracle, which has no gateway
    sent_at: float
    first_at: float | None = None


@dataclass
class StepResult:
    system: str
    kind: str
    qps: float
    requests: int = 0
    ttft_p50_s: float = math.nan
    ttft_p90_s: float = math.nan
    hit_rate: float = 0.0
    unanswered: int = 0


def _pct(values: Sequence[float], q: int) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, math.ceil(q / 100 * len(ranked)) - 1))]


class Replay:
    """One system, one step: arrivals, engines and gateways on one simulated clock."""

    def __init__(self, system: str, kind: str, qps: float, step_index: int,
                 shape: Shape, args: argparse.Namespace) -> None:  # fmt: skip
        self.system = system
        self.kind = kind
        self.qps = qps
        self.args = args
        self.shape = shape
        self.workload = Workload(
            kind, shape, seed=1000 * (step_index + 1) + (7 if kind == "random" else 0)
        )
        config = EngineConfig(model=MODEL, num_gpu_blocks=POD_BLOCKS, time_scale=0.0)
        self.engines = [Engine(config, f"pod-{i}") for i in range(PODS)]
        self.busy_until: list[float | None] = [None] * PODS
        self.plans: list[tuple[list[SimRequest], list[tuple[SimRequest, int]]] | None] = [
            None
        ] * PODS
        self.by_request: list[dict[str, Flight]] = [{} for _ in range(PODS)]
        self.events: list[tuple[float, int, str, int]] = []
        self.seq = itertools.count()
        replicas = 2 if "-x2" in system else (0 if system == "oracle" else 1)
        policy = system.removeprefix("wharf-").removesuffix("-nopeers").removesuffix("-x2")
        self.exchange = replicas > 1 and not system.endswith("-nopeers")
        self.in_transit: dict[int, tuple[int, bytes]] = {}  # message id -> (sender, encoded)
        capacity = POD_BLOCKS * 16 // DEFAULT_BLOCK_TOKENS
        self.gateways = []
        for r in range(replicas):
            pods = [Pod(Endpoint(f"pod-{i}", f"http://127.0.0.1:{i + 1}")) for i in range(PODS)]
            outbox = Outbox(f"replica-{r}") if self.exchange else None
            gw = Gateway(policy, pods, outbox=outbox, rng=random.Random(r))
            for p in gw.pods:
                gw.prefix.set_capacity(p.name, capacity)
            self.gateways.append(gw)
        self.turn = 0
        self.ttfts: list[float] = []
        self.sent = 0
        self.ids = itertools.count()
        self.messages = itertools.count()

    def push(self, at: float, kind: str, arg: int) -> None:
        heapq.heappush(self.events, (at, next(self.seq), kind, arg))

    def run(self) -> StepResult:
        scale = self.args.time_scale
        arrivals = random.Random(self.workload.seed + 1)
        at = 0.0
        while True:
            at += arrivals.expovariate(self.qps / scale)
            if at > self.args.step_seconds:
                break
            self.push(at / scale, "arrive", 0)
        horizon = self.args.step_seconds / scale
        for i in range(int(horizon / self.args.scrape_interval) + 1):
            self.push(i * self.args.scrape_interval, "scrape", 0)
        if self.exchange:
            for i in range(1, int(horizon / self.args.exchange_delay) + 1):
                self.push(i * self.args.exchange_delay, "exchange", 0)
        while self.events:
            now, _, kind, arg = heapq.heappop(self.events)
            if kind == "arrive":
                self.arrive(now)
            elif kind == "step":
                self.step_end(arg, now)
            elif kind == "scrape" and self.gateways:
                self.scrape()
            elif kind == "exchange":
                self.send_news(now)
            elif kind == "deliver":
                self.deliver(arg, now)
        hits = sum(e.counters.prefix_hits for e in self.engines)
        queries = sum(e.counters.prefix_queries for e in self.engines)
        out = StepResult(self.system, self.kind, self.qps, requests=self.sent)
        out.unanswered = self.sent - len(self.ttfts)
        timeout = self.args.request_timeout / scale
        ranked = [t if t <= timeout else math.inf for t in self.ttfts] + [math.inf] * out.unanswered
        out.ttft_p50_s = _pct(ranked, 50)
        out.ttft_p90_s = _pct(ranked, 90)
        out.hit_rate = hits / queries if queries else 0.0
        return out

    def scrape(self) -> None:
        for gw in self.gateways:
            for p, e in zip(gw.pods, self.engines, strict=True):
                p.metrics = EngineMetrics(len(e.waiting), len(e.running), e.kv_usage())

    def send_news(self, now: float) -> None:
        """Each replica's message, through the real encoding, arriving one delay later (a
        message every `--exchange-delay`: what a peer knows is one to two delays old)."""
        for r, gw in enumerate(self.gateways):
            assert gw.outbox is not None
            message = gw.outbox.take(own_load(gw.pods), now)
            if message is not None:
                key = next(self.messages)
                self.in_transit[key] = (r, encode(message))
                self.push(now + self.args.exchange_delay, "deliver", key)

    def deliver(self, key: int, now: float) -> None:
        sender, data = self.in_transit.pop(key)
        message = decode(data)
        for r, gw in enumerate(self.gateways):
            if r != sender:
                pods = {p.name: p for p in gw.pods}
                for name in merge(message, gw.prefix, gw.peer_loads, pods, now):
                    # a peer's pick counts as a pick: ties go to the pod no replica took lately
                    gw.picks += 1
                    pods[name].last_pick = gw.picks

    def arrive(self, now: float) -> None:
        session = self.workload.next()
        session.busy = True
        self.sent += 1
        pairs = [(m["role"], m["content"]) for m in session.messages]
        prompt = tok.tokenize(tok.render_chat(pairs))
        request = SimRequest(f"r{next(self.ids)}", prompt, self.shape.output_tokens, MODEL)
        lease: Lease | None = None
        if self.system == "oracle":
            if self.kind == "random":
                self.turn += 1
                pod = self.turn % PODS
            else:
                pod = session.group % PODS
        else:
            gateway = self.gateways[self.turn % len(self.gateways)]
            self.turn += 1
            hashes: list[int] = []
            if gateway.policy == "default":
                body = {"model": MODEL, "messages": session.messages}
                data = prompt_bytes(body) or b""
                hashes = block_hashes(MODEL, data,
                                      block_bytes=DEFAULT_BLOCK_TOKENS * DEFAULT_BYTES_PER_TOKEN,
                                      max_blocks=DEFAULT_MAX_BLOCKS)  # fmt: skip
            pod = gateway.choose(hashes, session.sid, self.args.weights, self.args.tuning, now)
            lease = Lease(gateway.pods[pod], gateway.pick_blocks)
        flight = Flight(session, request, pod, lease, now)
        engine = self.engines[pod]
        engine.clock = max(engine.clock, now) if self.busy_until[pod] is None else engine.clock
        engine.submit(request)
        request.arrival = now
        self.by_request[pod][request.request_id] = flight
        if self.busy_until[pod] is None:
            self.start_step(pod, now)

    def start_step(self, pod: int, now: float) -> None:
        engine = self.engines[pod]
        engine.clock = max(engine.clock, now)
        engine._admit()
        decodes, prefills = engine._plan()
        cost = engine.config.cost.step_seconds(len(decodes), sum(n for _, n in prefills))
        if cost == 0.0:
            self.busy_until[pod] = None
            return
        self.plans[pod] = (decodes, prefills)
        self.busy_until[pod] = engine.clock + cost
        self.push(engine.clock + cost, "step", pod)

    def step_end(self, pod: int, now: float) -> None:
        engine = self.engines[pod]
        plan = self.plans[pod]
        assert plan is not None
        decodes, prefills = plan
        engine.clock = now
        engine._apply(decodes, prefills)
        for r in [*decodes, *(r for r, _ in prefills)]:
            flight = self.by_request[pod].get(r.request_id)
            if flight is None:
                continue
            if flight.first_at is None and r.first_token_at is not None:
                flight.first_at = r.first_token_at
                self.ttfts.append(r.first_token_at - flight.sent_at)
                if flight.lease is not None:
                    flight.lease.first_token()
            if r.finish_reason is not None:
                self.finish(pod, flight)
        self.busy_until[pod] = None
        if engine.waiting or engine.running:
            self.start_step(pod, now)

    def finish(self, pod: int, flight: Flight) -> None:
        del self.by_request[pod][flight.request.request_id]
        if flight.lease is not None:
            flight.lease.end()
        session = flight.session
        session.messages.append({"role": "assistant", "content": "".join(flight.request.output())})
        session.turns_left -= 1
        session.busy = False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from wharf_router.gateway.scheduling import parse_weights

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--qps", default="8,16,32,48,64,80")
    p.add_argument("--control-qps", default="8,16")
    p.add_argument("--step-seconds", type=float, default=30.0, help="real seconds of arrivals")
    p.add_argument("--time-scale", type=float, default=4.0)
    p.add_argument("--request-timeout", type=float, default=60.0, help="real seconds")
    p.add_argument("--scrape-interval", type=float, default=0.05, help="simulated seconds")
    p.add_argument("--exchange-delay", type=float, default=0.0005,
                   help="simulated seconds between a replica's messages to its peer, and each "
                   "message's delay (-x2 systems; 0.0005 = 2 ms real at time scale 4)")  # fmt: skip
    p.add_argument("--weights", default="", help="as the gateway's --weights")
    p.add_argument("--tuning", default="", help="NAME=NUMBER,... of scheduling.Tuning")
    args = p.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    args.qps = [float(x) for x in args.qps.split(",") if x]
    args.control_qps = [float(x) for x in args.control_qps.split(",") if x]
    args.weights = parse_weights(args.weights)
    values = {k: float(v) for k, _, v in (i.partition("=") for i in args.tuning.split(",") if i)}
    args.tuning = Tuning(**values)
    return args


def main(argv: Sequence[str] | None = None, report: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    shape = Shape(16, 4, 3, 6000, 1200, 64)
    report(
        "| workload | QPS | system | TTFT p50 s | TTFT p90 s | p90 / oracle | hit rate | hit / oracle | unanswered |"
    )
    report("|---|---|---|---|---|---|---|---|---|")
    for kind, ladder in (("shared-prefix", args.qps), ("random", args.control_qps)):
        for i, qps in enumerate(ladder):
            # the real benchmark's seed for this step, when it is one of its default steps
            full = FULL_LADDER[kind]
            i = full.index(qps) if qps in full else i
            base: StepResult | None = None
            for system in args.systems:
                r = Replay(system, kind, qps, i, shape, args).run()
                if system == "oracle":
                    base = r
                ratio = r.ttft_p90_s / base.ttft_p90_s if base else math.nan
                hit = r.hit_rate / base.hit_rate if base and base.hit_rate else math.nan
                report(f"| {kind} | {qps:g} | {system} | {r.ttft_p50_s:.3f} | {r.ttft_p90_s:.3f} | "
                       f"{ratio:.2f} | {r.hit_rate:.1%} | {hit:.2f} | {r.unanswered}/{r.requests} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
