"""`wharf-llm-worker multinode` flags and the LeaderWorkerSet environment."""

from __future__ import annotations

import json

import pytest

from wharf_llm_worker.launch import MIDDLEWARE
from wharf_llm_worker.multinode import cli as multinode_cli
from wharf_llm_worker.multinode.ranks import group_plan
from wharf_llm_worker.multinode.settings import SettingsError, parse_settings
from wharf_llm_worker.multinode.spec import Device, Layout


def test_leader_flags() -> None:
    s = parse_settings(
        ["--leader", "--nnodes", "2", "--model", "/m", "--port", "8100", "--", "--dtype", "bf16"],
        {},
    )
    assert s.is_leader and s.node.node_rank == 0 and s.node.is_head
    assert s.spec is not None and s.spec.nnodes == 2 and s.spec.port == 8100
    assert s.spec.layout is Layout.MULTIPROCESS and s.spec.device is Device.CPU
    assert s.spec.engine_args == ("--dtype", "bf16")


def test_join_flags() -> None:
    s = parse_settings(["--join", "leader:7000", "--node-rank", "1"], {})
    assert not s.is_leader and s.spec is None
    assert s.node.head_address == "leader:7000" and s.node.node_rank == 1


def test_lws_environment_decides_the_role() -> None:
    env = {"LWS_LEADER_ADDRESS": "grp-0.grp.ns", "LWS_GROUP_SIZE": "3", "LWS_WORKER_INDEX": "0"}
    leader = parse_settings(["--model", "/m"], env)
    assert leader.is_leader and leader.spec is not None and leader.spec.nnodes == 3
    worker = parse_settings([], {**env, "LWS_WORKER_INDEX": "2"})
    assert not worker.is_leader and worker.node.node_rank == 2
    assert worker.node.head_address == "grp-0.grp.ns:6379"


def test_the_ray_executor_layout_defaults_to_gpus() -> None:
    s = parse_settings(
        ["--leader", "--nnodes", "2", "--model", "/m", "--layout", "ray-executor"], {}
    )
    assert s.spec is not None and s.spec.device is Device.GPU


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "give --leader or --join"),
        (["--join", "h"], {}, "--node-rank is required"),
        (["--join", "h", "--node-rank", "0"], {}, "above 0"),
        (["--leader", "--model", "/m"], {}, "--nnodes is required"),
        (["--leader", "--nnodes", "2"], {}, "--model is required"),
        (["--leader", "--nnodes", "2", "--node-rank", "1", "--model", "/m"], {}, "rank 0"),
        ([], {"LWS_WORKER_INDEX": "1"}, "LWS_LEADER_ADDRESS is unset"),
        ([], {"LWS_WORKER_INDEX": "x"}, "LWS_WORKER_INDEX must be"),
        (["--join", "h", "--node-rank", "3", "--nnodes", "2"], {}, "outside a group of 2"),
        (["--leader", "--nnodes", "2", "--model", "/m", "--wait-timeout", "0"], {}, "--wait"),
        (["--leader", "--nnodes", "2", "--model", "/m", "--ray-temp-dir", "rel"], {}, "temp-dir"),
        (
            ["--leader", "--nnodes", "2", "--model", "/m", "--", "--enforce-eager"],
            {},
            "enforce-eager",
        ),
    ],
)
def test_errors_name_the_flag_or_variable(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(argv, env)


# -- the worker's role flags, as the LLM presets give every pod of a group ------------------------

LWS = {"LWS_LEADER_ADDRESS": "grp-0.grp.ns", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "0"}
PRESET = [
    "--role", "decode", "--model", "/mnt/models", "--served-model-name", "llama",
    "--host", "0.0.0.0", "--port", "8000", "--drain-timeout", "55", "--kv-transfer", "nixl",
    "--lora", "sql=/mnt/lora/sql",
]  # fmt: skip


def _flag(args: tuple[str, ...], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_role_flags_reach_the_ranks_through_the_workers_decisions() -> None:
    s = parse_settings([*PRESET, "--", "--tensor-parallel-size", "4", "--dtype", "bf16"], LWS)
    assert s.spec is not None and s.role == "decode" and s.served_model_name == "llama"
    assert s.spec.tensor_parallel_size == 4 and s.spec.pipeline_parallel_size == 2
    assert s.spec.engine_args == ("--dtype", "bf16")  # the lifted flag is the group's now
    leader, follower = group_plan(s.spec, master_addr="10.0.0.1", ray_address="10.0.0.1:6379")
    # the serving rank runs the worker's server flags: name, middleware, drain
    assert _flag(leader.args, "--served-model-name") == "llama"
    assert _flag(leader.args, "--shutdown-timeout") == "55"
    assert _flag(leader.args, "--middleware") == MIDDLEWARE
    assert "--middleware" not in follower.args
    for rank in (leader, follower):
        # every engine rank builds the same KV connector and LoRA configuration
        kv = json.loads(_flag(rank.args, "--kv-transfer-config"))
        assert kv["kv_connector"] == "NixlConnector" and kv["kv_role"] == "kv_consumer"
        assert _flag(rank.args, "--lora-modules") == "sql=/mnt/lora/sql"
        assert dict(rank.env)["WHARF_LLM_WORKER_ROLE"] == "decode"
    # the supervisor waits out the drain, the teardown and the Ray node's stop
    assert s.kill_timeout_s == 55 + 15 + 15


def test_a_joining_pod_takes_the_same_command_line() -> None:
    s = parse_settings(
        [*PRESET, "--", "--tensor-parallel-size", "4"], {**LWS, "LWS_WORKER_INDEX": "1"}
    )
    assert not s.is_leader and s.node.node_rank == 1 and s.role == "decode"
    assert s.node.head_address == "grp-0.grp.ns:6379"


def test_data_parallel_flags_make_a_data_parallel_group() -> None:
    argv = ["--model", "/m", "--", "--data-parallel-size=16", "--data-parallel-size-local", "8",
            "--data-parallel-rpc-port", "6000", "--enable-expert-parallel"]  # fmt: skip
    s = parse_settings(argv, LWS)
    assert s.spec is not None and s.spec.data_parallel and s.spec.pipeline_parallel_size == 1
    assert s.spec.ranks_per_node == 8
    leader, follower = group_plan(s.spec, master_addr="10.0.0.1", ray_address="unused")
    assert _flag(follower.args, "--data-parallel-start-rank") == "8"
    assert _flag(follower.args, "--data-parallel-address") == "10.0.0.1"
    assert _flag(leader.args, "--data-parallel-rpc-port") == "6000"
    assert "--headless" in follower.args and "--nnodes" not in leader.args
    assert "--enable-expert-parallel" in leader.args


@pytest.mark.parametrize(
    ("engine_args", "message"),
    [
        (["--pipeline-parallel-size", "3"], "runs one stage per node, so 2"),
        (["--data-parallel-size", "3", "--data-parallel-size-local", "1"], "times the 2 nodes"),
        (["--data-parallel-size", "4", "--pipeline-parallel-size", "2"], "data parallel, so 1"),
        (["--tensor-parallel-size", "x"], "--tensor-parallel-size needs a whole number"),
        (["--served-model-name", "other"], "--served-model-name is set by the worker"),
    ],
)
def test_parallelism_that_contradicts_the_group_is_refused(
    engine_args: list[str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(["--model", "/m", "--", *engine_args], LWS)


def test_the_groups_own_flag_and_the_engine_args_must_agree() -> None:
    with pytest.raises(SettingsError, match="--tensor-parallel-size is 2 but the engine"):
        parse_settings(["--model", "/m", "--tensor-parallel-size", "2", "--", "-tp", "4"], LWS)


def test_dry_run_prints_every_rank_without_ray(capsys: pytest.CaptureFixture[str]) -> None:
    code = multinode_cli.main([*PRESET, "--dry-run", "--nnodes", "2", "--leader"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["leader"] and document["role"] == "decode"
    assert document["kill_timeout_s"] == 85
    assert [r["rank"] for r in document["ranks"]] == [0, 1]
