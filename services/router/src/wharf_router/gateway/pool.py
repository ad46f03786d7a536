"""The pods behind the gateway, their live state, and the background loop that keeps it fresh.

Per pod, one task: while the pod is healthy it scrapes `/metrics` every `scrape_interval`
(`lone_scrape_interval` while no other pod of its kind is listed: then its load decides no
pick) and `/v1/models` now and then; after `eject_after` failed scrapes in a row, or a request
that could not connect, the pod is ejected and the task probes `GET /health` until it answers
200, then brings it back. A scrape that only times out is not a failure until the pod has
answered none for `silent_eject_after` seconds: an engine busy with a batch answers `/metrics`
late, and ejecting it then would move its requests onto the others exactly when load is high. Nothing here runs on a request's path: requests read the last
snapshot and this gateway's own in-flight counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from wharf_datapath.upstream import UpstreamPool
from wharf_router.common.tasks import cancel_all
from wharf_router.gateway.endpoints import Endpoint, Role
from wharf_router.gateway.engine_metrics import (
    MAX_METRICS_BYTES,
    EngineMetrics,
    parse_engine_metrics,
)
from wharf_router.gateway.peers import NO_LOAD, PodLoad
from wharf_router.gateway.scheduling import PodView

log = logging.getLogger("wharf.router.gateway")

MAX_MODELS = 256


@dataclass(frozen=True, slots=True)
class Probing:
    scrape_interval: float = 0.2
    # a pod with no other pod of its kind (serving, or prefill) to be weighed against: its
    # load informs no pick, so it is scraped only this often (health and KV size); each
    # scrape costs the engine's API server a /metrics render (docs/benchmarks.md, issue 13)
    lone_scrape_interval: float = 1.0
    probe_interval: float = 1.0
    models_interval: float = 10.0
    timeout: float = 2.0
    eject_after: int = 2
    silent_eject_after: float = 30.0


@dataclass(slots=True)
class Pod:
    endpoint: Endpoint
    healthy: bool = True  # optimistic until a scrape or a request says otherwise
    in_flight: int = 0
    prefilling: int = 0  # of those, the ones with no first token yet (the whole of a non-stream)
    pending_blocks: int = 0  # of those, the prompt blocks the pod probably has to compute
    last_pick: int = 0  # the gateway's pick counter when it last chose this pod
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    has_metrics: bool = True  # False once /metrics answered 404: health comes from /health
    failures: int = 0
    silent_since: float | None = None  # when scrapes began to time out, until one answers
    models: dict[str, dict[str, Any]] | None = None  # model id -> its card, once known
    scraped_at: float = 0.0
    # a new number each time the pod is listed or comes back from an ejection: its engine may
    # have restarted, so what the gateway learned about it (a warm P/D pair) is of an old one
    incarnation: int = 0

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def role(self) -> Role:
        return self.endpoint.role


def kind_of(role: Role) -> str:
    """Pods of one kind are weighed against each other: a request's decode half goes to a
    `both` or `decode` pod, its prefill half to a `prefill` pod."""
    return "prefill" if role == "prefill" else "serving"


def scrape_interval(probing: Probing, pods_of_kind: int) -> float:
    """Seconds between a pod's `/metrics` scrapes, with `pods_of_kind` pods of its kind listed
    (itself included): its load is read for picks only when there is a choice."""
    if pods_of_kind > 1:
        return probing.scrape_interval
    return max(probing.scrape_interval, probing.lone_scrape_interval)


def view_of(pod: Pod, prefix_blocks: int, session: bool, extra: PodLoad = NO_LOAD) -> PodView:
    """What the scheduler sees of `pod` for one request; `extra`: what the gateway's peer
    replicas have on it (their last snapshots, peers.PeerLoads)."""
    return PodView(
        name=pod.name,
        in_flight=pod.in_flight + extra.in_flight,
        waiting=pod.metrics.waiting,
        running=pod.metrics.running,
        kv_usage=pod.metrics.kv_usage,
        prefix_blocks=prefix_blocks,
        session=session,
        prefilling=pod.prefilling + extra.prefilling,
        pending_blocks=pod.pending_blocks + extra.pending_blocks,
        last_pick=pod.last_pick,
    )


def own_load(pods: Iterable[Pod]) -> dict[str, PodLoad]:
    """This gateway's own counts per pod, for its peers (pods with none left out)."""
    return {
        p.name: PodLoad(p.in_flight, p.prefilling, p.pending_blocks)
        for p in pods
        if p.in_flight or p.prefilling or p.pending_blocks
    }


@dataclass(slots=True)
class Lease:
    """One request on a pod, from the pick to its answer's end: in flight all that time, and
    prefilling until its first token (an answer that is not streamed: until its end), with
    `blocks` prompt blocks the pod probably has to compute (not in its prefix cache)."""

    pod: Pod
    blocks: int = 0
    prefilling: bool = True
    ended: bool = False

    def __post_init__(self) -> None:
        self.pod.in_flight += 1
        self.pod.prefilling += 1
        self.pod.pending_blocks += self.blocks

    def first_token(self) -> None:
        if self.prefilling:
            self.prefilling = False
            self.pod.prefilling -= 1
            self.pod.pending_blocks -= self.blocks

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.first_token()
            self.pod.in_flight -= 1


class Pool:
    def __init__(
        self,
        probing: Probing,
        on_capacity: Callable[[str, int], None] | None = None,
        on_gone: Callable[[Pod], None] | None = None,
    ) -> None:
        self.probing = probing
        self.pods: dict[str, Pod] = {}
        self.roles: frozenset[Role] = frozenset()  # the roles of the listed pods
        self._kinds: dict[str, int] = {}  # listed pods per kind_of(role)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._http = UpstreamPool()
        self._on_capacity = on_capacity
        self._on_gone = on_gone
        self._incarnations = itertools.count(1)

    # -- the pod list -----------------------------------------------------------------------

    def update(self, endpoints: list[Endpoint]) -> None:
        """The endpoint source's current list: new pods start probing, gone ones stop."""
        wanted = {ep.name: ep for ep in endpoints}
        for name in list(self.pods):
            if name not in wanted or wanted[name] != self.pods[name].endpoint:
                self._remove(name)
        for name, ep in wanted.items():
            if name not in self.pods:
                self.pods[name] = Pod(ep, incarnation=next(self._incarnations))
                self._tasks[name] = asyncio.get_running_loop().create_task(
                    self._watch(self.pods[name]), name=f"probe {name}"
                )
        self.roles = frozenset(p.role for p in self.pods.values())
        kinds: dict[str, int] = {}
        for pod in self.pods.values():
            kinds[kind_of(pod.role)] = kinds.get(kind_of(pod.role), 0) + 1
        self._kinds = kinds

    def _remove(self, name: str) -> None:
        pod = self.pods.pop(name)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self._http.forget(*pod.endpoint.address)
        if self._on_gone is not None:
            self._on_gone(pod)

    async def aclose(self) -> None:
        await cancel_all(self._tasks.values())
        self._tasks.clear()
        await self._http.aclose()

    def candidates(
        self,
        roles: tuple[Role, ...],
        model: str | None,
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> list[Pod]:
        """Healthy pods of these roles that serve `model` (every pod, when none is known to)."""
        pods = [
            p for p in self.pods.values() if p.healthy and p.role in roles and p.name not in exclude
        ]
        if model is not None:
            # pods known to serve the model, and new pods whose list is not known yet;
            # when no pod is known to serve it, every pod (the engine answers 404 itself)
            serving = [p for p in pods if p.models is None or model in p.models]
            if serving:
                return serving
        return pods

    def scrape_interval_of(self, pod: Pod) -> float:
        return scrape_interval(self.probing, self._kinds.get(kind_of(pod.role), 1))

    def eject(self, pod: Pod, reason: str) -> None:
        if pod.healthy and pod.name in self.pods:
            log.warning("pod %s ejected: %s", pod.name, reason)
        pod.healthy = False

    # -- probing ----------------------------------------------------------------------------

    async def _get(self, pod: Pod, path: str) -> tuple[int, bytes]:
        host, port = pod.endpoint.address
        headers = [(b"host", f"{host}:{port}".encode()), (b"accept", b"*/*")]
        async with asyncio.timeout(self.probing.timeout):
            resp = await self._http.request(
                (host, port), "GET", pod.endpoint.base_path + path, headers, b""
            )
            if resp.stream is not None:
                body = bytearray()
                # closed when left early (too large, the timeout): the pod sees it at once
                async with contextlib.aclosing(resp.stream) as chunks:
                    async for chunk in chunks:
                        body += chunk
                        if len(body) > MAX_METRICS_BYTES:
                            raise ValueError(f"{path} larger than {MAX_METRICS_BYTES} bytes")
                return resp.status, bytes(body)
            return resp.status, bytes(resp.body)

    async def _watch(self, pod: Pod) -> None:
        p = self.probing
        next_models = 0.0
        while True:
            try:
                if pod.healthy:
                    await self._scrape(pod)
                    now = time.monotonic()
                    if now >= next_models:
                        await self._models(pod)
                        next_models = now + p.models_interval
                    await asyncio.sleep(self.scrape_interval_of(pod))
                else:
                    if await self._probe(pod):
                        log.info("pod %s is back", pod.name)
                        pod.incarnation = next(self._incarnations)
                        pod.healthy = True
                        pod.failures = 0
                        pod.silent_since = None
                        next_models = 0.0
                        continue
                    await asyncio.sleep(p.probe_interval)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the pod's probing for good
                log.exception("probing %s", pod.name)
                await asyncio.sleep(p.probe_interval)

    def _failed(self, pod: Pod, reason: str) -> None:
        pod.failures += 1
        if pod.failures >= self.probing.eject_after:
            self.eject(pod, reason)

    def _silent(self, pod: Pod) -> None:
        now = time.monotonic()
        if pod.silent_since is None:
            pod.silent_since = now
        elif now - pod.silent_since >= self.probing.silent_eject_after:
            self.eject(pod, f"/metrics timed out for {now - pod.silent_since:.0f} s")

    async def _scrape(self, pod: Pod) -> None:
        if not pod.has_metrics:
            if not await self._probe(pod):
                self._failed(pod, "/health failed")
            return
        try:
            status, body = await self._get(pod, "/metrics")
        except TimeoutError:
            self._silent(pod)
            return
        except (OSError, ValueError) as exc:
            self._failed(pod, f"/metrics: {exc or type(exc).__name__}")
            return
        pod.silent_since = None
        if status == 404:
            pod.has_metrics = False  # an engine without metrics: load from in-flight counts only
            return
        if status != 200:
            self._failed(pod, f"/metrics answered {status}")
            return
        pod.failures = 0
        pod.metrics = parse_engine_metrics(body)
        pod.scraped_at = time.monotonic()
        if pod.metrics.kv_capacity_tokens and self._on_capacity is not None:
            self._on_capacity(pod.name, pod.metrics.kv_capacity_tokens)

    async def _probe(self, pod: Pod) -> bool:
        try:
            status, _ = await self._get(pod, "/health")
        except (OSError, TimeoutError, ValueError):
            return False
        return status == 200

    async def _models(self, pod: Pod) -> None:
        try:
            status, body = await self._get(pod, "/v1/models")
            doc = orjson.loads(body) if status == 200 else None
        except (OSError, TimeoutError, ValueError):
            return
        data = doc.get("data") if isinstance(doc, dict) else None
        if isinstance(data, list):
            pod.models = {
                card["id"]: card
                for card in data[:MAX_MODELS]
                if isinstance(card, dict) and isinstance(card.get("id"), str)
            }
