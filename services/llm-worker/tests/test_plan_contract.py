"""The LLM plan and the worker cannot drift apart: every worker command in the golden plans parses.

The golden plans (`libs/wharf-api/tests/golden/llm/*.yaml`) pin what the controller and
`wharf up` run for each LLMInferenceService manifest of the examples, the seeds and the fixtures.
Each container whose command is Wharf's worker is expanded as the kubelet would expand it in a
LeaderWorkerSet's pods (the leader, index 0, and a worker, index 1) and parsed with the worker's
own parsers, then checked for the role, the model and the served name the plan promised.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_api.llm.worker_cli import (
    GROUP_SIZE_ENV,
    LEADER_ADDRESS_ENV,
    MODEL_DIR,
    WORKER_INDEX_ENV,
    is_worker_command,
)
from wharf_llm_worker.cli import parse_command_line
from wharf_llm_worker.launch import build_launch
from wharf_llm_worker.multinode.ranks import group_plan
from wharf_llm_worker.multinode.settings import parse_settings

GOLDEN = Path(__file__).resolve().parents[3] / "libs/wharf-api/tests/golden/llm"
LEADER_ADDRESS = "svc-kserve-mn-0.svc-kserve-mn.default"
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True)
class Case:
    golden: str
    workload: str
    pod: str  # leader | worker
    index: int  # LWS_WORKER_INDEX
    size: int
    multi_node: bool
    role: str
    model_name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]

    @property
    def id(self) -> str:
        return f"{self.golden}:{self.workload}:{self.pod}"


def _expand(text: str, env: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _cases() -> Iterator[Case]:
    for path in sorted(GOLDEN.glob("*.yaml")):
        document: dict[str, Any] = yaml.safe_load(path.read_text())
        plan = document.get("plan")
        if not isinstance(plan, dict):
            continue  # an invalid manifest's golden file pins its error
        for workload in plan["workloads"]:
            multi = workload["kind"] == "LeaderWorkerSet"
            for pod_name, index in (("leader", 0), ("worker", 1)):
                pod = workload.get(pod_name)
                if pod is None:
                    continue
                for container in pod["containers"]:
                    if not is_worker_command(container["command"]):
                        continue
                    env: dict[str, str] = {}
                    if multi:
                        env = {
                            LEADER_ADDRESS_ENV: LEADER_ADDRESS,
                            GROUP_SIZE_ENV: str(workload["size"]),
                            WORKER_INDEX_ENV: str(index),
                        }
                    for key, value in container["env"]:
                        env[key] = _expand(value, env)
                    argv = [_expand(a, env) for a in (*container["command"], *container["args"])]
                    yield Case(
                        golden=path.stem,
                        workload=workload["name"],
                        pod=pod_name,
                        index=index,
                        size=workload["size"],
                        multi_node=multi,
                        role=workload["role"],
                        model_name=plan["model_name"],
                        argv=tuple(argv),
                        env=env,
                    )


CASES = list(_cases())


def test_the_golden_plans_have_single_and_multi_node_workers() -> None:
    # the contract means nothing if the goldens stop holding worker commands of either kind
    assert any(not c.multi_node for c in CASES)
    assert {c.index for c in CASES if c.multi_node} == {0, 1}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_planned_worker_command_parses_with_the_workers_parser(case: Case) -> None:
    assert not any(_VAR.search(a) for a in case.argv), "an unexpanded $(VAR) reaches the worker"
    if not case.multi_node:
        assert case.argv[1] != "multinode"
        options, dry_run = parse_command_line(case.argv[1:])
        launch = build_launch(options)  # the worker's own validation of every option
        assert not dry_run
        assert (options.role, options.model) == (case.role, MODEL_DIR)
        assert options.served_model_name == case.model_name
        assert launch.env["WHARF_LLM_WORKER_ROLE"] == case.role
        return
    assert case.argv[1] == "multinode", "a multi-node pod must run the group's command"
    settings = parse_settings(case.argv[2:], case.env)
    assert settings.role == case.role
    assert settings.served_model_name == case.model_name
    assert settings.node.node_rank == case.index
    if case.index != 0:
        assert not settings.is_leader and settings.spec is None
        assert settings.node.head_address is not None
        assert settings.node.head_address.startswith(LEADER_ADDRESS)
        return
    assert settings.is_leader and settings.spec is not None
    assert settings.spec.model == MODEL_DIR and settings.spec.nnodes == case.size
    ranks = group_plan(settings.spec, master_addr=LEADER_ADDRESS, ray_address="h:6379")
    serving = ranks[0]
    assert serving.serves_api
    # the worker's decisions reach the serving rank: its name, the role's KV connector
    args = list(serving.args)
    assert args[args.index("--served-model-name") + 1] == case.model_name
    assert dict(serving.env)["WHARF_LLM_WORKER_ROLE"] == case.role
    if case.role != "both":
        assert "--kv-transfer-config" in args
