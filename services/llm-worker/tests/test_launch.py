"""Role and options -> vLLM's command line and environment (pure)."""

from __future__ import annotations

import json

import pytest

from wharf_llm_worker.launch import (
    ENGINE_MODULE,
    MIDDLEWARE,
    EngineLaunch,
    LaunchError,
    LoraAdapter,
    WorkerOptions,
    build_launch,
    kill_timeout_s,
    process_env,
)


def _options(**changes: object) -> WorkerOptions:
    base: dict[str, object] = {
        "role": "both",
        "model": "/models/tiny",
        "served_model_name": "tiny",
        "port": 8000,
    }
    base.update(changes)
    return WorkerOptions(**base)  # type: ignore[arg-type]


def _flag(launch: EngineLaunch, flag: str) -> str:
    args = list(launch.args)
    return args[args.index(flag) + 1]


def _kv_config(launch: EngineLaunch) -> dict[str, object]:
    loaded = json.loads(_flag(launch, "--kv-transfer-config"))
    assert isinstance(loaded, dict)
    return loaded


def test_combined_worker_runs_vllm_with_wharf_middleware_and_no_connector() -> None:
    launch = build_launch(_options())
    assert launch.args[:2] == ("-m", ENGINE_MODULE)
    assert _flag(launch, "--model") == "/models/tiny"
    assert _flag(launch, "--served-model-name") == "tiny"
    assert _flag(launch, "--port") == "8000"
    assert _flag(launch, "--middleware") == MIDDLEWARE
    assert "--kv-transfer-config" not in launch.args
    assert "VLLM_NIXL_SIDE_CHANNEL_PORT" not in launch.env
    assert "WHARF_NIXL_PROGRESS_DELAY_US" not in launch.env
    assert launch.env["WHARF_LLM_WORKER_ROLE"] == "both"


@pytest.mark.parametrize(
    ("role", "kv_role"), [("prefill", "kv_producer"), ("decode", "kv_consumer")]
)
def test_pd_roles_default_to_nixl_on_cpu_buffers(role: str, kv_role: str) -> None:
    launch = build_launch(_options(role=role, kv_side_channel_port=5601))
    assert _kv_config(launch) == {
        "kv_connector": "NixlConnector",
        "kv_role": kv_role,
        "kv_buffer_device": "cpu",
        # the handshake with a prefill engine is never evicted: a warmed pair stays warm
        "kv_connector_extra_config": {"engine_ttl": 0},
    }
    assert launch.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5601"
    assert launch.env["WHARF_LLM_WORKER_KV_CONNECTOR"] == "NixlConnector"
    # NIXL's progress thread sleeps between polls instead of spinning (wharf_llm_worker.vllm_plugin)
    assert launch.env["WHARF_NIXL_PROGRESS_DELAY_US"] == "1000"


def test_combined_worker_with_a_connector_both_produces_and_consumes() -> None:
    launch = build_launch(_options(kv_transfer="nixl"))
    assert _kv_config(launch)["kv_role"] == "kv_both"


def test_example_connector_uses_the_shared_folder() -> None:
    launch = build_launch(_options(role="decode", kv_transfer="example", kv_shared_path="/kv"))
    assert _kv_config(launch) == {
        "kv_connector": "ExampleConnector",
        "kv_role": "kv_consumer",
        "kv_connector_extra_config": {"shared_storage_path": "/kv"},
    }


def test_example_connector_without_a_folder_is_refused() -> None:
    with pytest.raises(LaunchError, match="--kv-shared-path"):
        build_launch(_options(role="prefill", kv_transfer="example"))


def test_pd_role_can_opt_out_of_kv_transfer() -> None:
    launch = build_launch(_options(role="decode", kv_transfer="none"))
    assert "--kv-transfer-config" not in launch.args


def test_side_channel_port_needs_nixl() -> None:
    with pytest.raises(LaunchError, match="--kv-side-channel-port"):
        build_launch(_options(kv_side_channel_port=5601))


def test_side_channel_host_is_passed_to_nixl() -> None:
    launch = build_launch(_options(role="prefill", kv_side_channel_host="10.0.0.7"))
    assert launch.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "10.0.0.7"


def test_lora_adapters_enable_lora_and_are_listed() -> None:
    adapters = (LoraAdapter.parse("sql=/adapters/sql"), LoraAdapter.parse("chat=/adapters/chat"))
    args = list(build_launch(_options(lora=adapters)).args)
    assert "--enable-lora" in args
    start = args.index("--lora-modules") + 1
    assert args[start : start + 2] == ["sql=/adapters/sql", "chat=/adapters/chat"]


@pytest.mark.parametrize("text", ["noequals", "=path", "name=", "bad name=/p", "../x=/p"])
def test_malformed_lora_is_refused(text: str) -> None:
    with pytest.raises(LaunchError, match="--lora"):
        LoraAdapter.parse(text)


def test_lora_names_must_be_unique_and_not_the_model() -> None:
    twice = (LoraAdapter("a", "/x"), LoraAdapter("a", "/y"))
    with pytest.raises(LaunchError, match="unique"):
        build_launch(_options(lora=twice))
    with pytest.raises(LaunchError, match="unique"):
        build_launch(_options(lora=(LoraAdapter("tiny", "/x"),)))


def test_drain_timeout_reaches_vllm_and_sets_the_kill_timeout() -> None:
    launch = build_launch(_options(drain_timeout_s=50))
    assert _flag(launch, "--shutdown-timeout") == "50"
    assert launch.kill_timeout_s == kill_timeout_s(50) > 50


def test_extra_args_come_last_and_may_not_override_owned_flags() -> None:
    launch = build_launch(_options(extra_args=("--dtype", "bfloat16")))
    assert launch.args[-2:] == ("--dtype", "bfloat16")
    with pytest.raises(LaunchError, match="--port"):
        build_launch(_options(extra_args=("--port=9000",)))
    with pytest.raises(LaunchError, match="--kv-transfer-config"):
        build_launch(_options(extra_args=("--kv-transfer-config", "{}")))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"role": "leader"}, "--role"),
        ({"port": 0}, "--port"),
        ({"port": 70000}, "--port"),
        ({"served_model_name": "has space"}, "--served-model-name"),
        ({"served_model_name": ""}, "--served-model-name"),
        ({"model": ""}, "--model"),
        ({"drain_timeout_s": -1}, "--drain-timeout"),
        ({"role": "prefill", "kv_side_channel_port": 8000}, "--kv-side-channel-port"),
        ({"extra_args": ("x" * 5000,)}, "extra vLLM arguments"),
    ],
)
def test_invalid_options_name_the_option(changes: dict[str, object], field: str) -> None:
    with pytest.raises(LaunchError, match=field):
        build_launch(_options(**changes))


def test_two_cpus_with_a_connector_keep_one_cpu_off_the_engine() -> None:
    launch = build_launch(_options(role="decode", cpu_count=2))
    assert launch.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"


@pytest.mark.parametrize(
    "changes",
    [
        {"role": "both", "cpu_count": 2},  # no connector: vLLM's own reservation fits
        {"role": "decode", "cpu_count": 8},  # enough CPUs for vLLM's own reservation
        {"role": "decode", "cpu_count": None},  # unknown: leave vLLM to decide
    ],
)
def test_vllm_keeps_its_own_cpu_reservation_otherwise(changes: dict[str, object]) -> None:
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in build_launch(_options(**changes)).env


def test_process_env_adds_the_launch_but_keeps_the_operators_reservation() -> None:
    launch = build_launch(_options(role="prefill", cpu_count=2))
    env = process_env(launch, {"PATH": "/bin", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"})
    assert env["PATH"] == "/bin"
    assert env["WHARF_LLM_WORKER_ROLE"] == "prefill"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
