"""An LLMInferenceService's plan as local processes (pure): ports, model folder, $(VAR), LWS
environment for multi-node, P/D roles for the gateway, and the conditions."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_api import default, parse_object
from wharf_api.llm import LLMPlan, plan_llm_inference_service, scheduler_weights
from wharf_api.resources import LLMInferenceService
from wharf_local.llm_plan import (
    LocalPlanError,
    WorkloadView,
    cpu_binding,
    drain_timeout_s,
    dry_run_argv,
    expand,
    gateway_args,
    llm_conditions,
    local_argv,
    uses_gateway,
    with_cpu_binding,
    worker_processes,
)

REPO = Path(__file__).resolve().parents[3]
MODEL = "/home/u/.local/state/wharf/models/abc"


def plan_of(spec: dict[str, Any], name: str = "m") -> LLMPlan:
    doc = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"model": {"uri": "hf://org/tiny", "name": "tiny"}, **spec},
    }
    return plan_llm_inference_service(llmisvc(doc), {})


def llmisvc(doc: dict[str, Any]) -> LLMInferenceService:
    obj = default(parse_object(doc))
    assert isinstance(obj, LLMInferenceService)
    return obj


def ports() -> Any:
    counter = itertools.count(9000)
    return lambda: next(counter)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_example_runs_two_workers_on_loopback_with_the_cached_model() -> None:
    doc = yaml.safe_load((REPO / "examples" / "llm-local.yaml").read_text())
    plan = plan_llm_inference_service(llmisvc(doc), {})
    procs = worker_processes(plan, {"/mnt/models": MODEL}, ports())
    assert [p.name for p in procs] == ["tiny-llama-kserve-0", "tiny-llama-kserve-1"]
    for p in procs:
        own = p.argv[: p.argv.index("--")]
        assert own[0] == "wharf-llm-worker"
        assert flag(own, "--host") == "127.0.0.1"
        assert flag(own, "--model") == MODEL
        assert flag(own, "--port") == str(p.port)
        assert flag(own, "--role") == "both"
        assert "/mnt/models" not in " ".join(p.argv)
        # the user's vLLM args come after `--`, untouched
        assert p.argv[p.argv.index("--") + 1 :][:2] == ("--dtype", "bfloat16")
        assert dict(p.env)["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert procs[0].port != procs[1].port
    assert uses_gateway(plan)
    assert gateway_args(8080, procs, with_roles=False) == [
        "--host", "127.0.0.1", "--port", "8080",
        "--endpoint", f"http://127.0.0.1:{procs[0].port}",
        "--endpoint", f"http://127.0.0.1:{procs[1].port}",
    ]  # fmt: skip


def test_without_a_scheduler_there_is_no_router() -> None:
    assert not uses_gateway(plan_of({"router": {"route": {}}}))
    assert not uses_gateway(plan_of({}))


def test_prefill_and_decode_get_roles_and_their_own_side_channel_ports() -> None:
    plan = plan_of({"replicas": 1, "prefill": {"replicas": 2}, "router": {"scheduler": {}}})
    procs = worker_processes(plan, {"/mnt/models": MODEL}, ports())
    roles = sorted((p.component, p.role) for p in procs)
    assert roles == [("main", "decode"), ("prefill", "prefill"), ("prefill", "prefill")]
    side = [flag(p.argv, "--kv-side-channel-port") for p in procs]
    assert len(set(side)) == 3 and not set(side) & {str(p.port) for p in procs}
    args = gateway_args(8080, procs, with_roles=True)
    assert {a.rsplit("=", 1)[1] for a in args if a.startswith("http")} == {"decode", "prefill"}


def test_an_inline_scheduler_config_sets_the_local_gateways_weights_as_on_a_cluster() -> None:
    inline = {
        "plugins": [{"type": "queue-scorer"}, {"type": "prefix-cache-scorer"}],
        "schedulingProfiles": [
            {
                "name": "default",
                "plugins": [
                    {"pluginRef": "queue-scorer", "weight": 1},
                    {"pluginRef": "prefix-cache-scorer", "weight": 6},
                ],
            }
        ],
    }
    plan = plan_of({"replicas": 1, "router": {"scheduler": {"config": {"inline": inline}}}})
    procs = worker_processes(plan, {"/mnt/models": MODEL}, ports())
    weights = scheduler_weights(plan)
    assert weights == "prefix=6,queue=1,active=0,kv=0,session=0"
    args = gateway_args(8080, procs, with_roles=False, weights=weights)
    assert args[args.index("--weights") + 1] == weights
    # without an inline config the gateway keeps its own defaults
    assert scheduler_weights(plan_of({"replicas": 1, "router": {"scheduler": {}}})) is None


def test_multi_node_ranks_get_the_leaderworkerset_environment_expanded() -> None:
    plan = plan_of({"replicas": 2, "parallelism": {"data": 4, "dataLocal": 2}, "worker": {}})
    procs = worker_processes(plan, {"/mnt/models": MODEL}, ports())
    assert [(p.replica, p.rank) for p in procs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for p in procs:
        env = dict(p.env)
        assert env["LWS_LEADER_ADDRESS"] == "127.0.0.1"
        assert env["LWS_GROUP_SIZE"] == "2"
        assert env["LWS_WORKER_INDEX"] == str(p.rank)
        assert not any("$(LWS_" in a for a in p.argv)
        if "--node-rank" in p.argv:
            assert flag(p.argv, "--node-rank") == str(p.rank)
    assert [p.leader for p in procs] == [True, False, True, False]
    assert procs[1].port == 0 and procs[0].port > 0


def test_expand_is_the_kubelets() -> None:
    env = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)", env) == "1-x"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"


def test_a_flag_given_as_key_equals_value_is_replaced_and_mount_paths_mapped() -> None:
    argv = local_argv(
        ["wharf-llm-worker", "--port=8000", "--model", "/mnt/models", "--lora", "a=/mnt/lora/a"],
        ["--", "--served-model-name", "x"],
        port=9001,
        mounts={"/mnt/models": "/cache/m", "/mnt/lora/a": "/cache/a"},
        side_channel_port=None,
    )
    assert argv == [
        "wharf-llm-worker", "--port=9001", "--model", "/cache/m", "--lora", "a=/cache/a",
        "--host", "127.0.0.1", "--", "--served-model-name", "x",
    ]  # fmt: skip


def test_drain_timeout_and_dry_run_argv() -> None:
    argv = ("wharf-llm-worker", "--drain-timeout", "55", "--", "--drain-timeout", "1")
    assert drain_timeout_s(argv) == 55
    assert drain_timeout_s(("wharf-llm-worker", "--")) == 30
    assert dry_run_argv(argv) == [
        "wharf-llm-worker", "--drain-timeout", "55", "--dry-run", "--", "--drain-timeout", "1",
    ]  # fmt: skip


def test_too_many_processes_is_refused_with_the_reason() -> None:
    with pytest.raises(LocalPlanError, match="at most 64"):
        worker_processes(plan_of({"replicas": 65}), {"/mnt/models": MODEL}, ports())


def test_conditions() -> None:
    main = WorkloadView("m-kserve", "main", 2, 2, None)
    ready = {c.type: c.status for c in llm_conditions([main], True, None, None, False)}
    assert ready == {
        "MainWorkloadReady": "True",
        "WorkloadsReady": "True",
        "RouterReady": "True",
        "Ready": "True",
    }
    starting = WorkloadView("m-kserve", "main", 2, 1, None)
    last = llm_conditions([starting], True, None, None, False)[-1]
    assert (last.status, last.reason) == ("False", "Starting")
    router_down = llm_conditions([main], False, "exited with code 1", None, False)[-1]
    assert (router_down.status, router_down.reason) == ("False", "RouterCrashed")
    crash = WorkloadView("m-kserve", "main", 2, 0, "exited with code 3", crashes=1)
    last = llm_conditions([crash], None, None, None, False)[-1]
    assert last.reason == "BackOff" and "code 3" in (last.message or "")
    loop = WorkloadView("m-kserve", "main", 2, 0, "exited with code 3", crashes=3)
    assert llm_conditions([loop], None, None, None, False)[-1].reason == "CrashLoopBackOff"
    failed = llm_conditions([main], None, None, "model.uri: not found", True)[-1]
    assert failed.reason == "ModelDownloadFailed"


def test_each_engine_gets_its_own_cores_unless_the_user_chose() -> None:
    assert [cpu_binding(i, 2, 2) for i in range(2)] == ["0", "1"]
    assert [cpu_binding(i, 2, 8) for i in range(2)] == ["0-3", "4-7"]
    assert [cpu_binding(i, 3, 2) for i in range(3)] == ["0", "1", "0"]
    procs = worker_processes(plan_of({"replicas": 2}), {"/mnt/models": MODEL}, ports())
    bound = with_cpu_binding(procs, 2, {})
    assert [dict(p.env)["VLLM_CPU_OMP_THREADS_BIND"] for p in bound] == ["0", "1"]
    assert with_cpu_binding(procs, 2, {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}) == procs
    multi = plan_of({"replicas": 1, "parallelism": {"data": 2, "dataLocal": 1}, "worker": {}})
    procs = worker_processes(multi, {"/mnt/models": MODEL}, ports())
    assert with_cpu_binding(procs, 2, {}) == procs
