"""Warm-up hand-offs for prefill/decode pairs, so that no request waits for a pair's first one.

vLLM's NIXL connector makes the first hand-off between a prefill and a decode engine slow: the
decode engine handshakes with the prefill engine in the background and reads the KV only on a
later step (on a small CPU host, only once the prefill engine's KV lease runs out, about 30 s;
docs/llm.md). Every later hand-off of the pair is immediate. vLLM has no way to handshake without
a request, so the gateway sends one itself: for each healthy (prefill, decode) pair of one model
it hands a short fixed prompt off once, in the background, and discards the answer. Until that
completed, the pair is cold, and a request whose decode pod has no warm prefill pod is computed
by the decode pod alone (no prefill request). A pod that is ejected and comes back, or that
leaves the list, starts over: its engine may have restarted, with a new engine id and no
handshake.

Decisions are pure functions over `PodSide` snapshots and the `PairState` table; `PairWarmer`
is the adapter that runs the hand-offs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wharf_datapath.upstream import UpstreamPool
from wharf_protocol.openai import decode_body, prefill_body
from wharf_router.common.tasks import cancel_all
from wharf_router.gateway.endpoints import Role
from wharf_router.gateway.pool import Pod

log = logging.getLogger("wharf.router.gateway")

# More than two of vLLM CPU's 128-token KV blocks of plain words, so that the hand-off moves
# whole blocks as a real prompt's does (a prompt inside one partial block moves none).
_TEXT = (
    "the river runs past the old mill and the children watch the boats go by while the baker "
    "sets out bread on the long table near the open window of the quiet house"
)
WARMUP_WORDS = 320
WARMUP_PROMPT = " ".join(itertools.islice(itertools.cycle(_TEXT.split()), WARMUP_WORDS))
WARMUP_PATH = "/v1/completions"

DEFAULT_TIMEOUT_S = 180.0  # a first hand-off on a small CPU host takes the 30 s lease and more
DEFAULT_CONCURRENCY = 2
RECONCILE_INTERVAL_S = 0.5
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 60.0
MAX_ANSWER_BYTES = 1024 * 1024
# answers that retrying cannot change: the pair is left unwarmed and hands off as before
_FINAL_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 422})

SERVING_ROLES: tuple[Role, ...] = ("both", "decode")

# prefill name, its incarnation, decode name, its incarnation
Pair = tuple[str, int, str, int]
# what a request may do with a pair: hand off (warm), not yet (cold), or hand off without
# gating because the gateway cannot warm it (its model is unknown, or the warm-up was refused)
Gate = Literal["warm", "cold", "ungated"]


@dataclass(frozen=True, slots=True)
class PodSide:
    """What the decisions need to know of a pod."""

    name: str
    incarnation: int
    role: Role
    healthy: bool
    models: frozenset[str] | None  # None until the pod's /v1/models answered


@dataclass(slots=True)
class PairState:
    model: str
    warm: bool = False
    running: bool = False
    refused: bool = False  # the warm-up got an answer that retrying cannot change
    failures: int = 0
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    start: list[Pair]
    drop: list[Pair]


def side(pod: Pod) -> PodSide:
    models = frozenset(pod.models) if pod.models is not None else None
    return PodSide(pod.name, pod.incarnation, pod.role, pod.healthy, models)


def pair_of(prefill: PodSide, decode: PodSide) -> Pair:
    return (prefill.name, prefill.incarnation, decode.name, decode.incarnation)


def pair_model(prefill: frozenset[str] | None, decode: frozenset[str] | None) -> str | None:
    """The model a warm-up of the pair asks for: one both serve (the first by name); with one
    side's list unknown, one the other serves; None when there is none to ask for."""
    if prefill is not None and decode is not None:
        common = prefill & decode
        return min(common) if common else None
    known = prefill if prefill is not None else decode
    return min(known) if known else None


def wanted_pairs(pods: Iterable[PodSide]) -> dict[Pair, str]:
    """Every healthy (prefill, decode-or-both) pair that has a model to warm, with that model."""
    listed = [p for p in pods if p.healthy]
    prefills = [p for p in listed if p.role == "prefill"]
    decodes = [p for p in listed if p.role in SERVING_ROLES]
    out: dict[Pair, str] = {}
    for pre in prefills:
        for dec in decodes:
            model = pair_model(pre.models, dec.models)
            if model is not None:
                out[pair_of(pre, dec)] = model
    return out


def backoff_s(failures: int) -> float:
    """How long after its `failures`-th failure in a row a pair's warm-up is tried again."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, failures - 1)))


def plan(
    wanted: Mapping[Pair, str],
    states: Mapping[Pair, PairState],
    now: float,
    concurrency: int,
) -> Plan:
    """Which warm-ups to start now (at most `concurrency` running in all, in a stable order), and
    which states to forget: pairs no longer wanted (a pod gone, unhealthy, or back as a new
    incarnation) and pairs whose model changed."""
    drop = [pair for pair, state in states.items() if wanted.get(pair) != state.model]
    running = sum(1 for pair, s in states.items() if s.running and pair not in drop)
    start: list[Pair] = []
    for pair in sorted(wanted):
        if running + len(start) >= concurrency:
            break
        state = None if pair in drop else states.get(pair)
        if state is None or (
            not (state.warm or state.running or state.refused) and state.retry_at <= now
        ):
            start.append(pair)
    return Plan(start=start, drop=drop)


def gate(prefill: PodSide, decode: PodSide, states: Mapping[Pair, PairState]) -> Gate:
    """Whether a request may hand off from `prefill` to `decode` now."""
    if pair_model(prefill.models, decode.models) is None:
        return "ungated"
    state = states.get(pair_of(prefill, decode))
    if state is None:
        return "cold"
    if state.warm:
        return "warm"
    return "ungated" if state.refused else "cold"


def usable_prefills(gates: Mapping[str, Gate]) -> tuple[frozenset[str], frozenset[str]]:
    """The prefill pods a request may hand off from, and the cold ones it must not use."""
    cold = frozenset(name for name, g in gates.items() if g == "cold")
    return frozenset(gates) - cold, cold


class WarmupError(Exception):
    def __init__(self, reason: str, final: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final


HandOff = Callable[[Pod, Pod, str], Awaitable[None]]


async def hand_off_once(
    upstream: UpstreamPool, prefill: Pod, decode: Pod, model: str, timeout_s: float
) -> None:
    """One discarded hand-off of `WARMUP_PROMPT` from `prefill` to `decode`; WarmupError when a
    step gives no usable answer."""
    body = {"model": model, "prompt": WARMUP_PROMPT, "max_tokens": 1, "temperature": 0.0}
    # one id for both halves, as a request's hand-off has
    request_id = b"wharf-pd-warmup-%d" % time.time_ns()
    try:
        async with asyncio.timeout(timeout_s):
            doc = await _post(upstream, prefill, prefill_body(body), "prefill", request_id)
            params = doc.get("kv_transfer_params")
            if not isinstance(params, dict):
                raise WarmupError("prefill: no kv_transfer_params", final=True)
            await _post(upstream, decode, decode_body(body, params), "decode", request_id)
    except TimeoutError:
        raise WarmupError(f"no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise WarmupError(f"unreachable: {type(exc).__name__}") from None


async def _post(
    upstream: UpstreamPool, pod: Pod, body: dict[str, Any], step: str, request_id: bytes
) -> Any:
    address = pod.endpoint.address
    headers = [
        (b"host", b"%s:%d" % (address[0].encode(), address[1])),
        (b"content-type", b"application/json"),
        (b"x-request-id", request_id),
    ]
    resp = await upstream.request(
        address, "POST", pod.endpoint.base_path + WARMUP_PATH, headers, orjson.dumps(body)
    )
    if resp.stream is None:
        data = bytes(resp.body)
    else:
        chunks = bytearray()
        async with contextlib.aclosing(resp.stream) as stream:  # closed when left early
            async for chunk in stream:
                chunks += chunk
                if len(chunks) > MAX_ANSWER_BYTES:
                    raise WarmupError(f"{step}: answer larger than {MAX_ANSWER_BYTES} bytes")
        data = bytes(chunks)
    if resp.status != 200:
        raise WarmupError(f"{step}: status {resp.status}", final=resp.status in _FINAL_STATUSES)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise WarmupError(f"{step}: the answer is not JSON") from None
    if not isinstance(doc, dict):
        raise WarmupError(f"{step}: the answer is not a JSON object")
    return doc


class PairWarmer:
    """Runs the warm-ups the decisions above ask for, and answers `gate` for requests."""

    def __init__(
        self,
        pods: Callable[[], Iterable[Pod]],
        hand_off: HandOff,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._pods = pods
        self._hand_off = hand_off
        self._concurrency = concurrency
        self._on_outcome = on_outcome
        self.states: dict[Pair, PairState] = {}
        self._tasks: dict[Pair, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="pd warm-up")

    async def aclose(self) -> None:
        await cancel_all([self._loop_task, *self._tasks.values()])
        self._tasks.clear()

    def kick(self) -> None:
        """Look at the pairs now rather than at the next tick (a request met a cold pair)."""
        self._wake.set()

    def gate(self, prefill: Pod, decode: Pod) -> Gate:
        return gate(side(prefill), side(decode), self.states)

    def handed_off(self, prefill: Pod, decode: Pod) -> None:
        """A request's hand-off between the two completed: the pair is warm."""
        state = self.states.get(pair_of(side(prefill), side(decode)))
        if state is not None:
            state.warm = True

    def warm_pairs(self) -> int:
        current = wanted_pairs(side(p) for p in self._pods())
        return sum(1 for pair in current if (s := self.states.get(pair)) is not None and s.warm)

    async def _run(self) -> None:
        while True:
            try:
                self.reconcile(time.monotonic())
            except Exception:  # a bug here must not stop warm-ups for good
                log.exception("P/D warm-up")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONCILE_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()

    def reconcile(self, now: float) -> None:
        pods = {p.name: p for p in self._pods()}
        wanted = wanted_pairs(side(p) for p in pods.values())
        decided = plan(wanted, self.states, now, self._concurrency)
        for pair in decided.drop:
            del self.states[pair]
            task = self._tasks.pop(pair, None)
            if task is not None:
                task.cancel()  # a hand-off to a pod that left, or to its former engine
        for pair in decided.start:
            state = self.states.setdefault(pair, PairState(model=wanted[pair]))
            state.running = True
            task = asyncio.get_running_loop().create_task(
                self._warm(pair, state, pods[pair[0]], pods[pair[2]])
            )
            self._tasks[pair] = task
            task.add_done_callback(functools.partial(self._forget_task, pair))

    def _forget_task(self, pair: Pair, task: asyncio.Task[None]) -> None:
        if self._tasks.get(pair) is task:
            del self._tasks[pair]

    async def _warm(self, pair: Pair, state: PairState, prefill: Pod, decode: Pod) -> None:
        started = time.monotonic()
        log.info("P/D warm-up %s -> %s (%s) started", prefill.name, decode.name, state.model)
        outcome = "ok"
        try:
            await self._hand_off(prefill, decode, state.model)
        except Exception as exc:  # any failure is retried later; none may stop the others
            final = isinstance(exc, WarmupError) and exc.final
            reason = exc.reason if isinstance(exc, WarmupError) else type(exc).__name__
            outcome = "refused" if final else "failed"
            state.failures += 1
            state.refused = final
            state.retry_at = time.monotonic() + backoff_s(state.failures)
            if final:
                log.warning(
                    "P/D warm-up %s -> %s refused (%s); the pair hands off unwarmed",
                    prefill.name, decode.name, reason,
                )  # fmt: skip
            else:
                log.warning(
                    "P/D warm-up %s -> %s failed (%s); next try in %.0f s",
                    prefill.name, decode.name, reason, backoff_s(state.failures),
                )  # fmt: skip
        else:
            state.warm = True
            state.failures = 0
            log.info(
                "P/D warm-up %s -> %s done in %.1f s",
                prefill.name, decode.name, time.monotonic() - started,
            )  # fmt: skip
        finally:
            state.running = False
        if self.states.get(pair) is not state:
            return  # a pod left or came back meanwhile: this outcome is about an old pair
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        if outcome == "ok":
            self._wake.set()
