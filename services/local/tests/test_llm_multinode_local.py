"""A multi-node LLMInferenceService under `wharf up`: every rank is `wharf-llm-worker multinode`
with the LeaderWorkerSet environment its pod would get, and what two Ray nodes on one machine
need. Each command line is checked by the worker's own CLI (`--dry-run`, which starts nothing:
no Ray, no engine)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from wharf_api import default, parse_object
from wharf_api.llm import LLMPlan, plan_llm_inference_service
from wharf_api.resources import LLMInferenceService
from wharf_local.llm_plan import (
    RAY_TEMP_ROOT,
    WorkerProcess,
    dry_run_argv,
    rank_in_ready_group,
    ray_temp_dir,
    worker_processes,
)
from wharf_local.llms import Unit, _rank_ready, _status_version

MODEL = "/home/u/.local/state/wharf/models/abc"
GROUPS = "/home/u/.local/state/wharf/logs/ns/m/multinode"


def plan_of(spec: dict[str, Any]) -> LLMPlan:
    doc = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"model": {"uri": "hf://org/tiny", "name": "tiny"}, **spec},
    }
    obj = default(parse_object(doc))
    assert isinstance(obj, LLMInferenceService)
    return plan_llm_inference_service(obj, {})


def processes(spec: dict[str, Any]) -> list[WorkerProcess]:
    counter = itertools.count(20000, 100)  # ports far apart, as free ports usually are
    return worker_processes(plan_of(spec), {"/mnt/models": MODEL}, lambda: next(counter), GROUPS)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


PIPELINE = {"replicas": 2, "parallelism": {"pipeline": 2}, "worker": {}}


def test_every_rank_runs_the_group_command_with_its_pods_environment() -> None:
    procs = processes(PIPELINE)
    assert [(p.replica, p.rank) for p in procs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for p in procs:
        assert p.argv[1] == "multinode"
        env = dict(p.env)
        assert (env["LWS_LEADER_ADDRESS"], env["LWS_GROUP_SIZE"]) == ("127.0.0.1", "2")
        assert env["LWS_WORKER_INDEX"] == str(p.rank)
        assert flag(p.argv, "--node-ip") == "127.0.0.1"
        assert flag(p.argv, "--log-dir").endswith(f"-{p.replica}/rank-{p.rank}")
    groups = [procs[:2], procs[2:]]
    for group in groups:
        leader, follower = group
        # the group's Ray head, vLLM's rendezvous, its Ray folder and token are shared ...
        for name in ("--ray-port", "--master-port", "--ray-temp-dir", "--auth-token-file"):
            assert flag(leader.argv, name) == flag(follower.argv, name)
        assert leader.ray_token_file == flag(leader.argv, "--auth-token-file")
        assert leader.ray_token_file is not None and leader.ray_token_file.startswith(GROUPS)
        # ... each node's Ray ports are its own: two Ray nodes on one machine
        assert flag(leader.argv, "--ports-base") != flag(follower.argv, "--ports-base")
    # and two groups share nothing
    for name in ("--ray-port", "--master-port", "--ray-temp-dir", "--auth-token-file"):
        assert flag(groups[0][0].argv, name) != flag(groups[1][0].argv, name)


def test_a_follower_reads_the_group_state_where_its_leader_writes_it() -> None:
    leader, follower = processes(PIPELINE)[:2]
    expected = flag(leader.argv, "--log-dir") + "/group-status.json"
    assert follower.group_status_file == leader.group_status_file == expected
    assert processes({"replicas": 1})[0].group_status_file is None


@pytest.mark.parametrize(
    ("state", "now", "at_start", "ready"),
    [
        ("ready", (7, 200), None, True),  # the leader formed the group after the rank started
        ("ready", (8, 300), (7, 200), True),  # ... and again since
        # the status the rank found when it started: the group it described lost this rank (it
        # was restarted), or it is from an earlier run; the leader's /health may still answer
        ("ready", (7, 200), (7, 200), False),
        ("restarting", (8, 300), (7, 200), False),
        ("waiting-for-nodes", (8, 300), None, False),
        (None, None, None, False),  # no status yet
    ],
)
def test_a_follower_is_ready_only_in_a_group_formed_after_it_started(
    state: str | None,
    now: tuple[int, int] | None,
    at_start: tuple[int, int] | None,
    ready: bool,
) -> None:
    assert rank_in_ready_group(state, now, at_start) is ready


def test_ray_temp_dirs_are_short_enough_for_rays_socket_paths() -> None:
    path = ray_temp_dir("/home/u/.local/state/wharf/logs/" + "a" * 63 + "/" + "b" * 80)
    assert path.startswith(RAY_TEMP_ROOT) and len(path) <= 36  # the multinode command's limit


def test_each_home_gives_a_group_its_own_ray_temp_dir() -> None:
    (leader, follower) = processes(PIPELINE)[:2]
    counter = itertools.count(20000, 100)
    other_home = worker_processes(
        plan_of(PIPELINE), {"/mnt/models": MODEL}, lambda: next(counter), "/home/v/wharf/multinode"
    )[0]
    assert flag(leader.argv, "--ray-temp-dir") == flag(follower.argv, "--ray-temp-dir")
    assert flag(leader.argv, "--ray-temp-dir") != flag(other_home.argv, "--ray-temp-dir")


def test_a_data_parallel_group_gets_its_own_rpc_port() -> None:
    procs = processes({"replicas": 1, "parallelism": {"data": 2, "dataLocal": 1}, "worker": {}})
    leader, follower = procs
    assert flag(leader.argv, "--data-parallel-rpc-port") == flag(
        follower.argv, "--data-parallel-rpc-port"
    )


def _worker_cli() -> str:
    path = shutil.which("wharf-llm-worker")
    if path is None:
        pytest.fail("wharf-llm-worker is not installed in the workspace environment (uv sync)")
    return path


@pytest.mark.parametrize(
    "spec",
    [
        PIPELINE,
        {"replicas": 1, "parallelism": {"data": 2, "dataLocal": 1}, "worker": {}},
        {
            "replicas": 1,
            "parallelism": {"pipeline": 2},
            "worker": {},
            "prefill": {"parallelism": {"pipeline": 2}, "worker": {}},
        },
    ],
    ids=["pipeline", "data", "pd"],
)
def test_the_worker_parses_every_ranks_command_line(spec: dict[str, Any]) -> None:
    cli = _worker_cli()
    for p in processes(spec):
        argv = [cli, *dry_run_argv(p.argv)[1:]]
        done = subprocess.run(
            argv,
            env={**os.environ, **dict(p.env)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert document["leader"] is (p.rank == 0) and document["node_rank"] == p.rank
        assert document["role"] == p.role and document["served_model_name"] == "tiny"
        if p.rank == 0:
            serving = document["ranks"][0]["args"]
            assert flag(tuple(serving), "--port") == str(p.port)
            assert serving[1] == MODEL
            if p.role != "both":
                assert "--kv-transfer-config" in serving


def test_the_runtime_reads_the_leaders_status_file_for_a_follower(tmp_path: Path) -> None:
    follower = dataclasses.replace(processes(PIPELINE)[1], group_dir=str(tmp_path))
    unit = Unit("m-kserve-mn-0-1", [], {}, tmp_path / "log", 0, 30.0, follower)
    status = tmp_path / "rank-0" / "group-status.json"

    def write(state: str) -> None:  # as the leader does: a new file replaces the old
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"state": state, "restarts": 0}))
        os.replace(tmp, status)

    assert not _rank_ready(unit)  # the leader has written nothing yet
    status.parent.mkdir()
    write("waiting-for-nodes")
    assert not _rank_ready(unit)
    write("ready")
    assert _rank_ready(unit)
    # the rank is restarted while the file still says ready: that group is not its own ...
    unit.group_status_at_start = _status_version(unit)[0]
    assert not _rank_ready(unit)
    write("restarting")
    assert not _rank_ready(unit)
    write("ready")  # ... until the leader has formed the group again
    assert _rank_ready(unit)
    # even when the new status carries an older time (the wall clock went back)
    unit.group_status_at_start = _status_version(unit)[0]
    old = time.time() - 3600
    write("ready")
    os.utime(status, (old, old))
    assert _rank_ready(unit)
    status.write_text("{not json")
    assert not _rank_ready(unit)
    # a rank of a group that is not `wharf-llm-worker multinode` is ready while it runs
    other = dataclasses.replace(follower, group_dir=None)
    assert _rank_ready(Unit("x", [], {}, tmp_path / "log", 0, 30.0, other))
