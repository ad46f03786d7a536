"""One simulated vLLM engine: a waiting queue, a running batch of at most `max_num_seqs`,
KV blocks, a prefix cache, and steps of continuous batching whose length the cost model gives.

Time is simulated: the engine keeps its own clock, advanced by each step's cost, and sleeps
`cost * time_scale` real seconds per step (0: no sleep at all). TTFT and the other latencies it
reports are on that clock, so they do not depend on how busy the machine running it is.
Requests that arrive during a step are stamped with the simulated time inside that step.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from wharf_e2e.enginesim import tokens as tok
from wharf_e2e.enginesim.costmodel import CostModel
from wharf_e2e.enginesim.prefix_cache import PrefixCache

# vLLM's buckets for time_to_first_token_seconds.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
MAX_PENDING_TRANSFERS = 10_000  # prefill results kept for decode pods to pull


@dataclass(frozen=True)
class EngineConfig:
    model: str = "sim-model"
    block_size: int = 16
    num_gpu_blocks: int = 19_208  # 307,328 tokens of KV, llm-d's benchmark pods
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int = 32_768
    time_scale: float = 1.0
    cost: CostModel = field(default_factory=CostModel)

    def __post_init__(self) -> None:
        for name in ("block_size", "num_gpu_blocks", "max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {self.time_scale}")
        if self.max_model_len > self.num_gpu_blocks * self.block_size:
            raise ValueError(
                f"max_model_len {self.max_model_len} exceeds the KV cache "
                f"({self.num_gpu_blocks} blocks x {self.block_size} tokens)"
            )


@dataclass(frozen=True)
class Event:
    tokens: tuple[str, ...] = ()
    finish_reason: str | None = None  # set on the last event


@dataclass
class SimRequest:
    request_id: str
    prompt: list[str]
    max_tokens: int
    seed: str  # model name + cache salt: starts the block-hash chain
    external_tokens: int = 0  # prompt tokens whose KV a prefill pod sent (P/D)
    arrival: float = 0.0
    # Set by the engine.
    cached_tokens: int = 0
    computed: int = 0
    generated: int = 0
    blocks: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None
    aborted: bool = False
    hashes: list[bytes] = field(default_factory=list)  # the prompt's full blocks
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    def __post_init__(self) -> None:
        self.digest = tok.prompt_digest(self.prompt, self.seed)

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.arrival

    @property
    def prefill_done(self) -> bool:
        return self.computed >= len(self.prompt)

    def output(self) -> list[str]:
        return [tok.output_token(self.digest, i) for i in range(self.generated)]


@dataclass
class Counters:
    """vLLM's counters and histograms, kept as plain numbers for `metrics.render`."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    handshakes: int = 0  # first pulls from a prefill engine (`--handshake-delay`); not vLLM's
    prefix_queries: int = 0
    prefix_hits: int = 0
    external_queries: int = 0
    external_hits: int = 0
    by_source: dict[str, int] = field(
        default_factory=lambda: {
            "local_compute": 0,
            "local_cache_hit": 0,
            "external_kv_transfer": 0,
        }
    )
    success: dict[str, int] = field(default_factory=dict)
    failed_transfers: int = 0
    ttft_buckets: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKETS))
    ttft_count: int = 0
    ttft_sum: float = 0.0

    def observe_ttft(self, seconds: float) -> None:
        self.ttft_count += 1
        self.ttft_sum += seconds
        for i, bound in enumerate(TTFT_BUCKETS):
            if seconds <= bound:
                self.ttft_buckets[i] += 1


@dataclass(frozen=True)
class Transfer:
    num_tokens: int


class Engine:
    def __init__(self, config: EngineConfig, engine_id: str) -> None:
        self.config = config
        self.engine_id = engine_id
        self.cache = PrefixCache(config.num_gpu_blocks)
        self.counters = Counters()
        self.clock = 0.0
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.used_blocks = 0
        self.transfers: OrderedDict[str, Transfer] = OrderedDict()
        self._block_ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._step_real_start: float | None = None
        self._step_cost = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- requests --------------------------------------------------------------------------

    def now(self) -> float:
        """Simulated time now: inside a running step, the part of it that has passed."""
        start = self._step_real_start
        if start is None or self.config.time_scale == 0:
            return self.clock
        elapsed = (time.monotonic() - start) / self.config.time_scale
        return self.clock + min(elapsed, self._step_cost)

    def submit(self, request: SimRequest) -> SimRequest:
        request.arrival = self.now()
        request.hashes = tok.block_hashes(request.prompt, self.block_size, request.seed)
        self.waiting.append(request)
        self._wake.set()
        return request

    def abort(self, request: SimRequest) -> None:
        """The client went away: free its place (vLLM aborts the request)."""
        if request.finish_reason is not None:
            return
        request.aborted = True
        if request in self.waiting:
            self.waiting.remove(request)
        elif request in self.running:
            self._release(request)
        request.finish_reason = "abort"

    def reset_prefix_cache(self) -> None:
        self.cache.clear()

    @property
    def block_size(self) -> int:
        return self.config.block_size

    def kv_usage(self) -> float:
        return self.used_blocks / self.config.num_gpu_blocks

    # -- P/D -------------------------------------------------------------------------------

    def offer_transfer(self, request: SimRequest) -> dict[str, object]:
        """The `kv_transfer_params` a prefill pod returns, as vLLM's NixlConnector does; the
        KV stays here until a decode pod pulls it (`take_transfer`)."""
        self.transfers[request.request_id] = Transfer(len(request.prompt))
        while len(self.transfers) > MAX_PENDING_TRANSFERS:
            self.transfers.popitem(last=False)
        n_blocks = math.ceil(len(request.prompt) / self.block_size)
        return {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_block_ids": [[next(self._block_ids) for _ in range(n_blocks)]],
            "remote_engine_id": self.engine_id,
            "remote_request_id": request.request_id,
            "tp_size": 1,
            "remote_num_tokens": len(request.prompt),
            "transfer_mode": "pull",
            "remote_prefill_cached_tokens": request.cached_tokens,
        }

    def take_transfer(self, engine_id: str, request_id: str) -> Transfer | None:
        if engine_id != self.engine_id:
            return None
        return self.transfers.pop(request_id, None)

    # -- the step loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            if not self.waiting and not self.running:
                self._wake.clear()
                await self._wake.wait()
            self._admit()
            decodes, prefills = self._plan()
            cost = self.config.cost.step_seconds(len(decodes), sum(n for _, n in prefills))
            self._step_cost = cost
            self._step_real_start = time.monotonic()
            # Yield even when the step is free, so that HTTP handlers run between steps.
            await asyncio.sleep(cost * self.config.time_scale)
            self._step_real_start = None
            self.clock += cost
            self._apply(decodes, prefills)

    def _admit(self) -> None:
        cfg = self.config
        while self.waiting and len(self.running) < cfg.max_num_seqs:
            request = self.waiting[0]
            # Cached prefix blocks are shared with other requests (vLLM counts references):
            # a request reserves blocks for the rest of its prompt and for its answer.
            hit = self.cache.peek(request.hashes[: self._max_hit_blocks(request)])
            rest = len(request.prompt) - hit * self.block_size + request.max_tokens
            blocks = math.ceil(rest / self.block_size)
            if self.used_blocks + blocks > cfg.num_gpu_blocks and self.running:
                return  # waits for KV capacity
            self.waiting.popleft()
            request.blocks = blocks
            self.used_blocks += blocks
            self.running.append(request)
            self._count_prompt(request)
            self.cache.shrink_to(cfg.num_gpu_blocks - self.used_blocks)

    def _max_hit_blocks(self, request: SimRequest) -> int:
        # vLLM always computes the last prompt token, so a hit covers at most n-1 tokens.
        return (len(request.prompt) - 1) // self.block_size

    def _count_prompt(self, request: SimRequest) -> None:
        """Where the prompt's KV comes from: the local cache, a P/D transfer, or computing."""
        n = len(request.prompt)
        hit_blocks = self.cache.match(request.hashes[: self._max_hit_blocks(request)])
        local = hit_blocks * self.block_size
        offered = request.external_tokens
        external = max(0, min(offered, n) - local)
        request.external_tokens = external
        request.cached_tokens = local
        request.computed = local + external
        c = self.counters
        c.prompt_tokens += n
        c.prefix_queries += n
        c.prefix_hits += local
        if offered:
            c.external_queries += n - local
            c.external_hits += external
        c.by_source["local_cache_hit"] += local
        c.by_source["external_kv_transfer"] += external
        c.by_source["local_compute"] += n - local - external

    def _plan(self) -> tuple[list[SimRequest], list[tuple[SimRequest, int]]]:
        budget = self.config.max_num_batched_tokens
        decodes = [r for r in self.running if r.prefill_done]
        budget -= len(decodes)
        prefills: list[tuple[SimRequest, int]] = []
        for r in self.running:
            if budget <= 0:
                break
            if not r.prefill_done:
                n = min(len(r.prompt) - r.computed, budget)
                prefills.append((r, n))
                budget -= n
        return decodes, prefills

    def _apply(self, decodes: list[SimRequest], prefills: list[tuple[SimRequest, int]]) -> None:
        emitting = [r for r in decodes if not r.aborted]
        for r, n in prefills:
            if r.aborted:
                continue
            r.computed += n
            if r.prefill_done:
                self.cache.insert(r.hashes)
                emitting.append(r)
        for r in emitting:
            index = r.generated
            r.generated += 1
            self.counters.generation_tokens += 1
            if r.first_token_at is None:
                r.first_token_at = self.clock
                self.counters.observe_ttft(r.first_token_at - r.arrival)
            done = r.generated >= r.max_tokens
            token = tok.output_token(r.digest, index)
            r.events.put_nowait(Event((token,), "length" if done else None))
            if done:
                self._finish(r)

    def _finish(self, request: SimRequest) -> None:
        request.finish_reason = "length"
        request.finished_at = self.clock
        self.counters.success["length"] = self.counters.success.get("length", 0) + 1
        # The answer's full blocks are cached too: the next turn of a session reuses them.
        full = request.prompt + request.output()
        self.cache.insert(tok.block_hashes(full, self.block_size, request.seed))
        self._release(request)

    def _release(self, request: SimRequest) -> None:
        if request in self.running:
            self.running.remove(request)
            self.used_blocks -= request.blocks
