"""The leader's loop: wait for the nodes, place the ranks, watch them, restart the group together.

Runs in the engine environment (it imports Ray). The decisions are pure functions elsewhere in
this package (placement, ranks, restart); this module only talks to Ray and to the leader's
``/health``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wharf_llm_worker.multinode.placement import (
    STRATEGY,
    Membership,
    NodeView,
    describe_missing,
    gpu_shortfall,
    membership,
    node_rank_resource,
    placement_bundles,
    rank_gpus,
)
from wharf_llm_worker.multinode.rankproc import RankProcess
from wharf_llm_worker.multinode.ranks import VLLM_ENTRY_MODULE, RankPlan, group_plan
from wharf_llm_worker.multinode.restart import RestartPolicy, decide_restart
from wharf_llm_worker.multinode.spec import GroupSpec

log = logging.getLogger("wharf_llm_worker.multinode")

GROUP_ENV = "WHARF_MULTINODE_GROUP"
POLL_S = 1.0
ACTOR_CALL_TIMEOUT_S = 30.0


class GroupError(RuntimeError):
    """The group cannot run; the message says why (missing nodes, a rank that keeps dying)."""


class RankFailure(Exception):
    """A rank ended or its node went away: the group restarts."""


@dataclass
class SupervisorConfig:
    spec: GroupSpec
    ray_address: str
    log_dir: Path
    group_id: str
    wait_timeout_s: float = 300.0
    ready_timeout_s: float = 900.0
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_grace_s: float = 20.0


@dataclass
class _Running:
    placement_group: Any
    actors: list[Any]
    plans: list[RankPlan]
    ranks: list[dict[str, object]]


class GroupSupervisor:
    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.restarts = 0
        self._running: _Running | None = None
        self.status_path = config.log_dir / "group-status.json"

    # -- status ---------------------------------------------------------------------------
    def _status(self, state: str, message: str = "") -> None:
        ranks = self._running.ranks if self._running else []
        body = {
            "group": self.config.group_id,
            "state": state,
            "restarts": self.restarts,
            "nnodes": self.config.spec.nnodes,
            "layout": str(self.config.spec.layout),
            "ranks": ranks,
            "message": message,
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1))
        os.replace(tmp, self.status_path)
        if message:
            log.info("group %s: %s", state, message)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        """Runs until stopped (0) or until the group cannot run (raises GroupError)."""
        import ray

        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        failures: list[float] = []
        while not self.stopping.is_set():
            try:
                member = self._wait_for_nodes()
                if self.stopping.is_set():
                    break
                self._start_group(member)
                self._wait_ready()
                if self.stopping.is_set():
                    break
                self._status("ready", f"serving on port {self.config.spec.port}")
                self._watch()
            except RankFailure as failure:
                failures.append(time.monotonic())
                decision = decide_restart(
                    self.config.policy, failures, time.monotonic(), str(failure)
                )
                self._stop_group()
                if not decision.restart:
                    self._status("failed", decision.reason)
                    raise GroupError(decision.reason) from None
                self.restarts += 1
                self._status("restarting", decision.reason)
                self.stopping.wait(decision.delay_s)
            except (GroupError, ray.exceptions.RayError) as exc:
                self._stop_group()
                self._status("failed", str(exc))
                raise GroupError(str(exc)) from exc
        self._stop_group()
        self._status("stopped", "stopped")
        return 0

    def _nodes(self) -> list[NodeView]:
        import ray

        return [
            NodeView(
                node_id=str(n.get("NodeID", "")),
                address=str(n.get("NodeManagerAddress", "")),
                alive=bool(n.get("Alive")),
                resources=dict(n.get("Resources") or {}),
            )
            for n in ray.nodes()
        ]

    def _wait_for_nodes(self) -> Membership:
        nnodes = self.config.spec.nnodes
        started = time.monotonic()
        last: tuple[int, ...] | None = None
        while True:
            member = membership(self._nodes(), nnodes)
            if member.complete:
                short = gpu_shortfall(member, self.config.spec)
                if short:
                    raise GroupError("; ".join(short))
                return member
            waited = time.monotonic() - started
            if tuple(member.missing) != last:
                last = tuple(member.missing)
                self._status("waiting-for-nodes", describe_missing(member, nnodes, waited))
            if waited >= self.config.wait_timeout_s:
                raise GroupError(describe_missing(member, nnodes, waited))
            if self.stopping.wait(POLL_S):
                return member

    def _start_group(self, member: Membership) -> None:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        spec = self.config.spec
        pg = placement_group(
            placement_bundles(spec), strategy=STRATEGY, name=f"wharf-{self.config.group_id}"
        )
        try:
            ray.get(pg.ready(), timeout=self.config.wait_timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.util.remove_placement_group(pg)
            raise GroupError(
                f"Ray could not place {spec.nnodes} bundles ({STRATEGY}) on the joined nodes "
                f"within {self.config.wait_timeout_s:.0f} s; is another group holding them?"
            ) from None
        master_addr = member.joined[0].address
        plans = group_plan(spec, master_addr, self.config.ray_address)
        actor_class = ray.remote(num_cpus=0, num_gpus=rank_gpus(spec), max_restarts=0)(RankProcess)
        actors = [
            actor_class.options(
                # The whole of its bundle's rank resource: the actor is that node's, explicitly.
                resources={node_rank_resource(plan.rank): 1.0},
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=plan.rank
                ),
            ).remote(plan.rank, str(self.config.log_dir))
            for plan in plans
        ]
        self._running = _Running(placement_group=pg, actors=actors, plans=plans, ranks=[])
        env_base = {GROUP_ENV: self.config.group_id}
        calls = [
            actor.start.remote(VLLM_ENTRY_MODULE, list(plan.args), {**env_base, **dict(plan.env)})
            for actor, plan in zip(actors, plans, strict=True)
        ]
        try:
            started = ray.get(calls, timeout=ACTOR_CALL_TIMEOUT_S * 4)
            # Bundle r holds node rank r's resource, so rank r runs on that node.
            self._running.ranks = [
                {**info, "node_ip": member.joined[plan.rank].address}
                for info, plan in zip(started, plans, strict=True)
            ]
        except ray.exceptions.RayError as exc:
            raise RankFailure(f"a rank could not start: {exc}") from exc
        self._status("starting", f"ranks started: {self._describe_ranks()}")

    def _describe_ranks(self) -> str:
        assert self._running is not None
        return ", ".join(
            f"rank {r['rank']} pid {r['pid']} on {r['node_ip']}" for r in self._running.ranks
        )

    def _check_ranks(self) -> None:
        """Raise RankFailure when a rank has ended or its actor (its node) is gone. Every rank
        is asked, so the message names the one that died first and those that followed it."""
        import ray

        assert self._running is not None
        problems: list[str] = []
        for plan, actor in zip(self._running.plans, self._running.actors, strict=True):
            try:
                code = ray.get(actor.poll.remote(), timeout=ACTOR_CALL_TIMEOUT_S)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                problems.append(
                    f"rank {plan.rank}'s node stopped answering ({type(exc).__name__}): "
                    "the node died or left the cluster"
                )
                continue
            if code is not None:
                tail: list[str] = []
                with contextlib.suppress(ray.exceptions.RayError):
                    tail = ray.get(actor.tail.remote(), timeout=ACTOR_CALL_TIMEOUT_S)
                last = "\n    ".join(tail[-8:])
                problems.append(
                    f"rank {plan.rank} exited with status {code}; its last lines:\n    {last}"
                )
        if problems:
            raise RankFailure("\n".join(problems))

    def _health_url(self) -> str:
        host = self.config.spec.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{host}:{self.config.spec.port}/health"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self._health_url(), timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        started = time.monotonic()
        while not self.stopping.is_set():
            self._check_ranks()
            if self._healthy():
                log.info("group ready after %.0f s", time.monotonic() - started)
                return
            if time.monotonic() - started > self.config.ready_timeout_s:
                raise RankFailure(
                    f"the leader's /health was not ready within {self.config.ready_timeout_s:.0f} s"
                )
            self.stopping.wait(POLL_S * 2)

    def _watch(self) -> None:
        while not self.stopping.wait(POLL_S * 2):
            self._check_ranks()

    def _stop_group(self) -> None:
        import ray

        running, self._running = self._running, None
        if running is None:
            return
        stops = [actor.stop.remote(self.config.stop_grace_s) for actor in running.actors]
        for ref in stops:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(ref, timeout=self.config.stop_grace_s + ACTOR_CALL_TIMEOUT_S)
        for actor in running.actors:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.kill(actor)
        with contextlib.suppress(ray.exceptions.RayError):
            ray.util.remove_placement_group(running.placement_group)
