"""`wharf-llm-worker multinode` flags and the LeaderWorkerSet environment."""

from __future__ import annotations

import pytest

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
