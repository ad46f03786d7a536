"""A multi-node LLMInferenceService under `wharf up`: every rank is `wharf-llm-worker multinode`
with the LeaderWorkerSet environment its pod would get, and what two Ray nodes on one machine
need. Each command line is checked by the worker's own CLI (`--dry-run`, which starts nothing:
no Ray, no engine)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from wharf_api import default, parse_object
from wharf_api.llm import LLMPlan, plan_llm_inference_service
from wharf_api.resources import LLMInferenceService
from wharf_local.llm_plan import (
    RAY_TEMP_ROOT,
    WorkerProcess,
    dry_run_argv,
    ray_temp_dir,
    worker_processes,
)

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


def test_ray_temp_dirs_are_short_enough_for_rays_socket_paths() -> None:
    path = ray_temp_dir("a" * 63, "b" * 63, "c" * 80, 63)
    assert path.startswith(RAY_TEMP_ROOT) and len(path) <= 40


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
