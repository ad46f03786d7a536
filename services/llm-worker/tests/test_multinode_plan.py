"""Multi-node decisions, pure: each rank's engine command per layout, the placement group, which
nodes are missing, when the group restarts, and the `ray start` command of each node."""

from __future__ import annotations

import json

import pytest

from wharf_llm_worker.multinode.placement import (
    STRATEGY,
    NodeView,
    describe_missing,
    gpu_shortfall,
    membership,
    node_rank_resource,
    placement_bundles,
)
from wharf_llm_worker.multinode.ranks import group_plan, multiprocess_rank
from wharf_llm_worker.multinode.rayargs import (
    RayArgsError,
    RayNodeConfig,
    ray_env,
    ray_start_args,
    split_address,
)
from wharf_llm_worker.multinode.restart import RestartPolicy, decide_restart
from wharf_llm_worker.multinode.spec import (
    DEFAULT_PP_COMPILATION_CONFIG,
    Device,
    GroupSpec,
    Layout,
    SpecError,
)


def _flag(args: tuple[str, ...] | list[str], name: str) -> str:
    return args[list(args).index(name) + 1]


# -- vLLM's own multi-node ranks (the CPU-capable layout) ---------------------------------------


def test_multiprocess_ranks_share_the_world_and_only_rank_zero_serves() -> None:
    spec = GroupSpec(model="/m", nnodes=3, tensor_parallel_size=2, port=8100, master_port=29600)
    plans = group_plan(spec, master_addr="10.0.0.1", ray_address="10.0.0.1:6379")
    assert [p.rank for p in plans] == [0, 1, 2]
    for plan in plans:
        assert plan.args[:2] == ("serve", "/m")
        assert _flag(plan.args, "--nnodes") == "3"
        assert _flag(plan.args, "--node-rank") == str(plan.rank)
        assert _flag(plan.args, "--master-addr") == "10.0.0.1"
        assert _flag(plan.args, "--master-port") == "29600"
        # Tensor parallel inside a node, one pipeline stage per node.
        assert _flag(plan.args, "--tensor-parallel-size") == "2"
        assert _flag(plan.args, "--pipeline-parallel-size") == "3"
        assert "--distributed-executor-backend" not in plan.args
    leader, *followers = plans
    assert leader.serves_api and _flag(leader.args, "--port") == "8100"
    assert "--headless" not in leader.args
    for plan in followers:
        assert not plan.serves_api and "--headless" in plan.args and "--port" not in plan.args


def test_cpu_pipeline_stages_compile_instead_of_running_eager() -> None:
    spec = GroupSpec(model="/m", nnodes=2, engine_args=("--dtype", "bfloat16"))
    args = multiprocess_rank(spec, 1, "127.0.0.1").args
    assert _flag(args, "--compilation-config") == DEFAULT_PP_COMPILATION_CONFIG
    assert args[-2:] == ("--dtype", "bfloat16")
    # A user's own compilation config wins; a GPU build needs none.
    own = GroupSpec(model="/m", nnodes=2, engine_args=("--compilation-config", '{"mode":3}'))
    assert multiprocess_rank(own, 0, "h").args.count("--compilation-config") == 1
    gpu = GroupSpec(model="/m", nnodes=2, device=Device.GPU)
    assert "--compilation-config" not in multiprocess_rank(gpu, 0, "h").args


def test_enforce_eager_is_refused_for_cpu_pipeline_stages_with_the_reason() -> None:
    with pytest.raises(SpecError, match="--enforce-eager breaks pipeline parallelism"):
        GroupSpec(model="/m", nnodes=2, engine_args=("--enforce-eager",))
    # One node has no pipeline stages to break; GPUs are not affected.
    GroupSpec(model="/m", nnodes=1, engine_args=("--enforce-eager",))
    GroupSpec(model="/m", nnodes=2, device=Device.GPU, engine_args=("--enforce-eager",))


# -- vLLM's Ray executor (the GPU layout: argv and placement only, nothing runs here) ------------


def test_ray_executor_is_one_process_on_the_leader_pointed_at_the_group_cluster() -> None:
    spec = GroupSpec(
        model="/m", nnodes=2, layout=Layout.RAY_EXECUTOR, device=Device.GPU, tensor_parallel_size=8
    )
    (plan,) = group_plan(spec, master_addr="10.0.0.1", ray_address="10.0.0.1:6379")
    assert plan.rank == 0 and plan.serves_api
    assert _flag(plan.args, "--distributed-executor-backend") == "ray"
    assert _flag(plan.args, "--tensor-parallel-size") == "8"
    assert _flag(plan.args, "--pipeline-parallel-size") == "2"
    assert "--nnodes" not in plan.args and "--headless" not in plan.args
    assert dict(plan.env)["RAY_ADDRESS"] == "10.0.0.1:6379"


def test_ray_executor_on_cpu_is_refused_because_vllm_refuses_it() -> None:
    with pytest.raises(SpecError, match="vLLM refuses its Ray executor on the CPU"):
        GroupSpec(model="/m", nnodes=2, layout=Layout.RAY_EXECUTOR, device=Device.CPU)


@pytest.mark.parametrize(
    "arg", ["--tensor-parallel-size=4", "-pp", "--headless", "--port", "--nnodes", "--master-addr"]
)
def test_flags_the_group_sets_cannot_come_from_engine_args(arg: str) -> None:
    with pytest.raises(SpecError, match="set by the multi-node group itself"):
        GroupSpec(model="/m", nnodes=2, engine_args=(arg, "1"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"nnodes": 0}, "--nnodes"),
        ({"nnodes": 65}, "--nnodes"),
        ({"tensor_parallel_size": 0}, "--tensor-parallel-size"),
        ({"port": 70000}, "--port"),
        ({"port": 29500}, "--master-port must differ"),
        ({"host": "bad host"}, "--host"),
        ({"model": ""}, "--model"),
        ({"engine_args": ("x",) * 300}, "engine arguments"),
    ],
)
def test_invalid_specs_name_the_flag(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"model": "/m", "nnodes": 2}
    with pytest.raises(SpecError, match=field):
        GroupSpec(**{**base, **kwargs})  # type: ignore[arg-type]


# -- placement ---------------------------------------------------------------------------------


def _node(
    rank: int | None, address: str = "10.0.0.1", alive: bool = True, gpus: int = 0
) -> NodeView:
    resources: dict[str, float] = {"CPU": 2.0}
    if rank is not None:
        resources[node_rank_resource(rank)] = 1.0
    if gpus:
        resources["GPU"] = float(gpus)
    return NodeView(node_id=f"n{rank}{address}", address=address, alive=alive, resources=resources)


def test_one_bundle_per_node_rank_strictly_spread() -> None:
    spec = GroupSpec(model="/m", nnodes=3)
    assert STRATEGY == "STRICT_SPREAD"
    assert placement_bundles(spec) == [
        {"wharf-node-rank-0": 1.0},
        {"wharf-node-rank-1": 1.0},
        {"wharf-node-rank-2": 1.0},
    ]
    # No GPUs in the bundles for the Ray executor: vLLM reserves its own one-GPU bundles.
    gpu = GroupSpec(model="/m", nnodes=2, layout=Layout.RAY_EXECUTOR, device=Device.GPU)
    assert all("GPU" not in b and "CPU" not in b for b in placement_bundles(gpu))
    # vLLM's own ranks on GPUs hold their node's stage, so Ray hands them those GPUs.
    ranks = GroupSpec(model="/m", nnodes=2, device=Device.GPU, tensor_parallel_size=4)
    assert placement_bundles(ranks)[1] == {"wharf-node-rank-1": 1.0, "GPU": 4.0}


def test_membership_names_missing_dead_and_duplicate_ranks() -> None:
    nodes = [
        _node(0, "10.0.0.1"),
        _node(1, "10.0.0.2", alive=False),  # died: counts as missing
        _node(2, "10.0.0.3"),
        _node(2, "10.0.0.4"),  # a second node claiming rank 2
        _node(None, "10.0.0.5"),  # a Ray node that is not part of any group
        _node(7, "10.0.0.6"),  # outside this group's size
    ]
    member = membership(nodes, nnodes=4)
    assert not member.complete
    assert member.missing == [1, 3]
    assert member.duplicates == {2: ["10.0.0.3", "10.0.0.4"]}
    message = describe_missing(member, 4, waited_s=30)
    assert message.startswith("2 of 4 nodes joined the Ray cluster within 30 s")
    assert "missing node rank(s): 1, 3" in message
    assert "node rank 2 joined twice (from 10.0.0.3, 10.0.0.4)" in message
    assert "present: 0@10.0.0.1, 2@10.0.0.3" in message


def test_complete_membership() -> None:
    member = membership([_node(1, "b"), _node(0, "a")], nnodes=2)
    assert member.complete and member.joined[0].address == "a"


def test_gpu_shortfall_only_for_gpu_groups() -> None:
    spec = GroupSpec(
        model="/m", nnodes=2, layout=Layout.RAY_EXECUTOR, device=Device.GPU, tensor_parallel_size=4
    )
    member = membership([_node(0, "a", gpus=4), _node(1, "b", gpus=2)], nnodes=2)
    assert gpu_shortfall(member, spec) == ["node rank 1 (b) has 2 GPU(s), a node needs 4"]
    assert gpu_shortfall(member, GroupSpec(model="/m", nnodes=2)) == []


# -- restart policy ----------------------------------------------------------------------------


def test_restarts_back_off_then_give_up_within_the_window() -> None:
    policy = RestartPolicy(max_restarts=2, window_s=100, backoff_s=2, max_backoff_s=3)
    first = decide_restart(policy, [10.0], now=10.0, cause="rank 1 exited")
    assert first.restart and first.delay_s == 2 and "rank 1 exited" in first.reason
    second = decide_restart(policy, [10.0, 20.0], now=20.0, cause="x")
    assert second.restart and second.delay_s == 3  # doubled, capped
    third = decide_restart(policy, [10.0, 20.0, 30.0], now=30.0, cause="rank 1 exited")
    assert not third.restart
    assert "failed 3 times within 100 s" in third.reason and "giving up" in third.reason
    # Old failures leave the window.
    later = decide_restart(policy, [10.0, 20.0, 300.0], now=300.0, cause="x")
    assert later.restart and later.delay_s == 2


def test_restart_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="--max-restarts"):
        RestartPolicy(max_restarts=-1)


# -- ray start ---------------------------------------------------------------------------------


def test_head_and_join_commands_with_distinct_ports_for_one_machine() -> None:
    head = ray_start_args(
        RayNodeConfig(node_rank=0, ray_port=7000, ports_base=20000, temp_dir="/tmp/wr-x/ray")
    )
    join = ray_start_args(
        RayNodeConfig(
            node_rank=1, head_address="10.0.0.1:7000", ports_base=20100, temp_dir="/tmp/wr-x/ray"
        )
    )
    assert "--block" in head and "--head" in head and "--port=7000" in head
    assert "--address=10.0.0.1:7000" in join and "--head" not in join
    assert "--include-dashboard=false" in head
    # Ray makes its temp root 0777: it gets a child of the folder the command keeps 0700
    assert "--temp-dir=/tmp/wr-x/ray/ray" in head and "--temp-dir=/tmp/wr-x/ray/ray" in join
    # `ray start` refuses --include-dashboard without --head: the node would never join.
    assert not any(a.startswith("--include-dashboard") for a in join)

    def ports(args: list[str]) -> set[int]:
        return {
            int(a.split("=", 1)[1])
            for a in args
            if a.split("=", 1)[0].endswith("-port") and a.split("=", 1)[0] != "--port"
        }

    assert ports(head) and not ports(head) & ports(join)
    assert json.loads(_resources(head)) == {"wharf-node-rank-0": 1}
    assert json.loads(_resources(join)) == {"wharf-node-rank-1": 1}


def _resources(args: list[str]) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith("--resources="))


def test_without_a_ports_base_ray_picks_its_own_ports() -> None:
    args = ray_start_args(RayNodeConfig(node_rank=0))
    assert not [a for a in args if a.startswith(("--node-manager-port", "--min-worker-port"))]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"temp_dir": "/tmp/" + "x" * 60}, "--ray-temp-dir"),
        ({"temp_dir": "relative"}, "--ray-temp-dir"),
        ({"temp_dir": "/tmp"}, "a folder of its own inside another"),
        ({"temp_dir": "/tmp/x/.."}, "no '.' or '..' parts"),
        ({"temp_dir": "/tmp/./x"}, "no '.' or '..' parts"),
        ({"temp_dir": "/tmp/" + "x" * 32}, "at most 36"),
        ({"ports_base": 80}, "--ports-base"),
        ({"object_store_mb": 10}, "--object-store-memory-mb"),
        ({"node_ip": "a b"}, "--node-ip"),
        ({"head_address": "bad host:1"}, "--join"),
    ],
)
def test_ray_node_config_is_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(RayArgsError, match=field):
        RayNodeConfig(node_rank=1, **kwargs)  # type: ignore[arg-type]


def test_addresses() -> None:
    assert split_address("leader.ns.svc") == ("leader.ns.svc", 6379)
    assert split_address("10.0.0.1:7000") == ("10.0.0.1", 7000)
    assert split_address("[fd00::1]:7000") == ("fd00::1", 7000)
    with pytest.raises(RayArgsError):
        split_address("h:99999")


def test_every_ray_process_presents_the_group_token_and_skips_uv_run() -> None:
    env = ray_env("/secrets/token")
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == "/secrets/token"
    assert env["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] == "0"
    # A stopped node tears down at once instead of draining towards a GCS that may be gone.
    assert env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] == "0"
