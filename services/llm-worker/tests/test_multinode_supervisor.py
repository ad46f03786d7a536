"""The leader's watch over its ranks (`GroupSupervisor._check_ranks`): which failure restarts the
group, and what the restart's message says. Ray is replaced by a stand-in module with the calls
the check makes (`ray.get` on the rank actors' `poll` and `tail`, Ray's exception types): the
real Ray runs in the engine environment, and its two-node run is
e2e/local/test_llm_multinode_wharf_up.py, which kills a whole node (the other path below)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from wharf_llm_worker.multinode.ranks import RankPlan
from wharf_llm_worker.multinode.spec import GroupSpec
from wharf_llm_worker.multinode.supervisor import (
    GroupSupervisor,
    RankFailure,
    SupervisorConfig,
    _Running,
)


class RayActorError(Exception):
    pass


class GetTimeoutError(Exception):
    pass


class RayError(Exception):
    pass


class _Call:
    def __init__(self, result: Any) -> None:
        self.result = result

    def remote(self) -> Any:
        return self.result


class Actor:
    """A rank actor: `poll` gives its process's exit status (None while it runs), or raises
    as Ray does when the actor's node is gone."""

    def __init__(self, status: int | Exception | None, tail: list[str] | None = None) -> None:
        self.poll = _Call(status)
        self.tail = _Call(tail or [])


def _get(ref: Any, timeout: float | None = None) -> Any:
    if isinstance(ref, Exception):
        raise ref
    return ref


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    exceptions = types.SimpleNamespace(
        RayActorError=RayActorError, GetTimeoutError=GetTimeoutError, RayError=RayError
    )
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(get=_get, exceptions=exceptions))


def supervisor(tmp_path: Path, *actors: Actor) -> GroupSupervisor:
    spec = GroupSpec(model="/m", nnodes=len(actors))
    sup = GroupSupervisor(SupervisorConfig(spec, "127.0.0.1:6379", tmp_path, "g1"))
    plans = [RankPlan(rank, (), rank == 0) for rank in range(len(actors))]
    sup._running = _Running(None, list(actors), plans, [])
    return sup


def test_ranks_that_run_keep_the_group(fake_ray: None, tmp_path: Path) -> None:
    supervisor(tmp_path, Actor(None), Actor(None))._check_ranks()


def test_a_rank_that_exited_restarts_the_group_with_its_status_and_last_lines(
    fake_ray: None, tmp_path: Path
) -> None:
    sup = supervisor(tmp_path, Actor(None), Actor(-9, [f"line {i}" for i in range(20)]))
    with pytest.raises(RankFailure) as failure:
        sup._check_ranks()
    message = str(failure.value)
    assert message.startswith("rank 1 exited with status -9; its last lines:")
    assert "line 19" in message and "line 12" in message and "line 11" not in message


def test_a_lost_node_restarts_the_group_and_every_dead_rank_is_named(
    fake_ray: None, tmp_path: Path
) -> None:
    sup = supervisor(tmp_path, Actor(1, ["Traceback"]), Actor(RayActorError("actor died")))
    with pytest.raises(RankFailure) as failure:
        sup._check_ranks()
    first, second = str(failure.value).split("\n", 1)[0], str(failure.value).splitlines()[-1]
    assert first == "rank 0 exited with status 1; its last lines:"
    assert second == (
        "rank 1's node stopped answering (RayActorError): the node died or left the cluster"
    )


def test_a_node_that_does_not_answer_in_time_counts_as_lost(fake_ray: None, tmp_path: Path) -> None:
    sup = supervisor(tmp_path, Actor(None), Actor(GetTimeoutError("30 s")))
    with pytest.raises(RankFailure, match=r"rank 1's node stopped answering \(GetTimeoutError\)"):
        sup._check_ranks()
